//! Server-Sent Events on plain hyper: a response body that turns JSON values from a channel
//! into `data: <json>\n\n` events, with a `: keepalive\n\n` comment whenever nothing was sent
//! for a while (15 s by default), so proxies and browsers keep the stream open.
//!
//! The stream ends when the producer drops its [`Sender`], or when the server shuts down (the
//! connection's graceful drain is not held up by an endless body). When the client goes away
//! hyper drops the body; the producer sees it as [`Sender::closed`] (or a failed `send`), so a
//! producer task that selects on `closed()` ends with its client. hyper notices a vanished
//! client when a write fails: at the next event or keep-alive at the latest.
//!
//! Use:
//! ```ignore
//! let (tx, stream) = sse::channel();
//! tokio::spawn(async move { let _ = tx.send(json!({"status": "running"})).await; });
//! Ok(stream.keepalive(Duration::from_secs(15)).until(state.shutdown.clone()).response())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Sleep};

use super::http::Body;

/// The keep-alive comment's interval unless told otherwise.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Events a producer may be ahead of a slow client before `send` waits.
pub const BUFFER: usize = 64;
/// The keep-alive comment (a line starting with `:` is ignored by `EventSource`).
pub const KEEPALIVE_FRAME: &[u8] = b": keepalive\n\n";

/// Where a producer sends events (a bounded `tokio::sync::mpsc` sender of JSON values).
pub type Sender = mpsc::Sender<Value>;

/// An SSE stream before it becomes a response.
pub struct Stream {
    rx: mpsc::Receiver<Value>,
    keepalive: Duration,
    shutdown: Option<watch::Receiver<bool>>,
}

/// A producer's sender and the stream it feeds.
pub fn channel() -> (Sender, Stream) {
    let (tx, rx) = mpsc::channel(BUFFER);
    (tx, Stream::new(rx))
}

impl Stream {
    /// A stream of what arrives on `rx`.
    pub fn new(rx: mpsc::Receiver<Value>) -> Self {
        Self {
            rx,
            keepalive: KEEPALIVE,
            shutdown: None,
        }
    }

    /// A keep-alive comment after `every` without an event (tests use a short one).
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every.max(Duration::from_millis(1));
        self
    }

    /// Ends the stream when `shutdown` turns true or its sender is gone.
    pub fn until(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The `200 text/event-stream` response.
    pub fn response(self) -> Response<Body> {
        let stopped: Pin<Box<dyn Future<Output = ()> + Send>> = match self.shutdown {
            Some(mut rx) => Box::pin(async move {
                // `wait_for` also ends when the sender is gone (an error): the server stopped.
                let _ = rx.wait_for(|stop| *stop).await;
            }),
            None => Box::pin(std::future::pending()),
        };
        let body = SseBody {
            rx: self.rx,
            every: self.keepalive,
            sleep: Box::pin(tokio::time::sleep(self.keepalive)),
            stopped: Mutex::new(stopped),
            done: false,
        };
        let mut resp = Response::new(body.boxed());
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // nginx would otherwise buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        resp
    }
}

/// One event's bytes: `data: <compact JSON>\n\n` (compact JSON has no raw newline, so it is
/// always one `data:` line).
pub fn event(value: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serialising a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

struct SseBody {
    rx: mpsc::Receiver<Value>,
    every: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Resolves when the server shuts down. In a `Mutex` only so the body is `Sync` (the
    /// router's boxed body must be); it is reached through `get_mut`, never locked.
    stopped: Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>,
    done: bool,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let stopped = this
            .stopped
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stopped.as_mut().poll(cx).is_ready() {
            this.done = true;
            this.rx.close();
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(v)) => {
                this.sleep.as_mut().reset(Instant::now() + this.every);
                return Poll::Ready(Some(Ok(Frame::data(event(&v)))));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.sleep.as_mut().reset(Instant::now() + this.every);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEPALIVE_FRAME)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    async fn next(body: &mut Body) -> Option<String> {
        let frame = body.frame().await?.ok()?;
        frame
            .into_data()
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn events_keepalives_and_the_end() {
        let (tx, stream) = channel();
        let resp = stream.keepalive(Duration::from_millis(50)).response();
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-cache");
        let mut body = resp.into_body();
        tx.send(json!({"status": "running", "text": "a\nb"}))
            .await
            .unwrap();
        assert_eq!(
            next(&mut body).await.unwrap(),
            "data: {\"status\":\"running\",\"text\":\"a\\nb\"}\n\n"
        );
        // Nothing to say: a keep-alive comment.
        let started = std::time::Instant::now();
        assert_eq!(next(&mut body).await.unwrap(), ": keepalive\n\n");
        assert!(started.elapsed() >= Duration::from_millis(40));
        drop(tx);
        assert_eq!(next(&mut body).await, None, "the producer ended it");
    }

    #[tokio::test]
    async fn a_dropped_body_tells_the_producer() {
        let (tx, stream) = channel();
        let body = stream.response().into_body();
        drop(body);
        tokio::time::timeout(Duration::from_secs(1), tx.closed())
            .await
            .expect("closed() fires once the client is gone");
        assert!(tx.send(json!(1)).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream() {
        let (stop, stopped) = watch::channel(false);
        let (tx, stream) = channel();
        let mut body = stream.until(stopped).response().into_body();
        tx.send(json!({"n": 1})).await.unwrap();
        assert!(next(&mut body).await.unwrap().starts_with("data: "));
        stop.send(true).unwrap();
        assert_eq!(next(&mut body).await, None);
        assert!(tx.is_closed(), "the producer learns it too");
    }
}
