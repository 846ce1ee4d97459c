//! A Server-Sent-Events client for the seed-003 streams: a real HTTP/1.1 client (hyper)
//! reading the body frame by frame.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A Server-Sent-Events client: a real HTTP/1.1 client reading the body frame by frame.
pub struct Sse {
    body: Incoming,
    buf: String,
}

impl Sse {
    /// `GET path` on `addr` with `cookie`; the head, and the body to read events from.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        cookie: &str,
    ) -> (hyper::http::response::Parts, Self) {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("an HTTP/1.1 handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", addr.to_string())
            .header("accept", "text/event-stream")
            .header("cookie", cookie)
            .body(Empty::<Bytes>::new())
            .expect("a well-formed request");
        let resp = sender.send_request(req).await.expect("an answer");
        let (parts, body) = resp.into_parts();
        // Keep the sender (and so the connection) alive as long as the body.
        std::mem::forget(sender);
        (
            parts,
            Self {
                body,
                buf: String::new(),
            },
        )
    }

    /// The next message (`data: …` or a `:` comment) within `within`; `None` at the end.
    pub async fn next(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let msg = self.buf[..at].to_owned();
                self.buf.drain(..at + 2);
                return Some(msg);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("a message in time")?
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf
                    .push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
            }
        }
    }

    /// The next `data:` event as JSON, skipping keep-alive comments.
    pub async fn event(&mut self, within: Duration) -> Value {
        loop {
            let msg = self.next(within).await.expect("the stream is open");
            if let Some(data) = msg.strip_prefix("data: ") {
                return serde_json::from_str(data).expect("JSON data");
            }
            assert_eq!(msg, ": keepalive");
        }
    }
}
