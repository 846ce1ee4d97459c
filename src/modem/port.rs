//! The I/O shell around [`AtCodec`]: one open serial port, one command at a time.
//!
//! Owns the byte stream and nothing else: it writes a command, feeds what comes back into the
//! codec and hands out the final result with its information lines; unsolicited lines are kept
//! for the caller to drain. A read of 0 bytes or a read error means the device went away: the
//! port is closed and every later call says so, so a caller can never spin on EOF.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::at::{AtCodec, AtEvent, FinalResult};

/// Anything that carries AT bytes (a serial port, a PTY, an in-memory pipe in tests).
pub trait AtStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AtStream for T {}

/// Why a command got no final result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the port is gone")]
    Gone,
}

/// A final result and the information lines before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub result: FinalResult,
    pub lines: Vec<String>,
}

/// Opens a serial AT port (115200 8N1, no flow control; USB modems ignore the rate). The
/// underlying library takes an exclusive lock, so a second opener fails instead of stealing
/// bytes.
pub fn open_serial(path: &Path) -> io::Result<Box<dyn AtStream>> {
    let path = path.to_string_lossy();
    let builder = tokio_serial::new(path.as_ref(), 115_200)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None);
    let stream = tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)?;
    Ok(Box::new(stream))
}

/// A deadline for a timeout too large for the clock (see `ladder::later`).
fn far_future(now: Instant) -> Instant {
    Instant::from_std(super::ladder::later(now.into_std(), Duration::MAX))
}

/// Counters of oddities seen on the wire, for operators.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WireStats {
    pub garbage_lines: u64,
    pub stray_results: u64,
    pub dropped_events: u64,
}

pub struct AtPort {
    stream: Option<Box<dyn AtStream>>,
    codec: AtCodec,
    urcs: Vec<String>,
    pub stats: WireStats,
    buf: Box<[u8; 4096]>,
}

impl AtPort {
    pub fn new(stream: Box<dyn AtStream>) -> Self {
        Self {
            stream: Some(stream),
            codec: AtCodec::new(),
            urcs: Vec::new(),
            stats: WireStats::default(),
            buf: Box::new([0; 4096]),
        }
    }

    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Unsolicited lines seen since the last call.
    pub fn take_urcs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.urcs)
    }

    fn close(&mut self) {
        self.stream = None;
        self.codec.reset();
    }

    /// Sends `cmd` and waits up to `timeout` for its final result.
    ///
    /// Cancel-safe in the way a shutdown needs: a call dropped mid-wait leaves its command in
    /// flight, and the next call forgets it first, so its late answer (if the modem sends one
    /// before the next command's) is the only thing that can be misread, never the port state.
    pub async fn command(&mut self, cmd: &str, timeout: Duration) -> Result<Response, PortError> {
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or_else(|| far_future(now));
        if self.codec.in_flight().is_some() {
            self.codec.cancel_command();
        }
        // Anything still buffered belongs to nobody: route it before the new command starts.
        self.drain_events(&mut Vec::new());
        let bytes = self.codec.start_command(cmd);
        let Some(stream) = self.stream.as_mut() else {
            return Err(PortError::Gone);
        };
        let written = tokio::time::timeout_at(deadline, async {
            stream.write_all(&bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.close();
                return Err(PortError::Gone);
            }
            Err(_) => {
                self.codec.cancel_command();
                return Err(PortError::Timeout(timeout));
            }
        }
        let mut lines = Vec::new();
        loop {
            if let Some(result) = self.drain_events(&mut lines) {
                return Ok(Response { result, lines });
            }
            match self.read_until(deadline).await {
                Ok(true) => {}
                Ok(false) => {
                    self.codec.cancel_command();
                    return Err(PortError::Timeout(timeout));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads whatever arrives until `deadline` (URCs while idle). `Err(Gone)` if the port died.
    pub async fn idle_until(&mut self, deadline: Instant) -> Result<(), PortError> {
        loop {
            self.drain_events(&mut Vec::new());
            if !self.read_until(deadline).await? {
                return Ok(());
            }
        }
    }

    /// One read; `Ok(false)` when the deadline passed first.
    async fn read_until(&mut self, deadline: Instant) -> Result<bool, PortError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(PortError::Gone);
        };
        match tokio::time::timeout_at(deadline, stream.read(&mut self.buf[..])).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.close();
                Err(PortError::Gone)
            }
            Ok(Ok(n)) => {
                self.codec.feed(self.buf.get(..n).unwrap_or_default());
                Ok(true)
            }
        }
    }

    /// Routes decoded events; returns the final result of the command in flight, if it came.
    fn drain_events(&mut self, lines: &mut Vec<String>) -> Option<FinalResult> {
        while let Some(event) = self.codec.poll_event() {
            match event {
                AtEvent::Final(result) => return Some(result),
                AtEvent::Info(line) => lines.push(line),
                AtEvent::Urc(line) => self.urcs.push(line),
                AtEvent::Prompt => {}
                AtEvent::Stray(result) => {
                    self.stats.stray_results += 1;
                    log::debug!("stray final result with no command in flight: {result}");
                }
                AtEvent::Garbage(text) => {
                    self.stats.garbage_lines += 1;
                    log::debug!("garbage on the AT port: {text:?}");
                }
                AtEvent::Dropped(n) => self.stats.dropped_events += n as u64,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted modem on the other end of an in-memory pipe.
    async fn modem(mut io: tokio::io::DuplexStream, script: Vec<(&'static str, &'static str)>) {
        let mut buf = [0u8; 256];
        let mut pending = String::new();
        let mut script = script.into_iter();
        loop {
            let n = match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(pos) = pending.find('\r') {
                let cmd: String = pending.drain(..=pos).collect();
                let Some((expect, reply)) = script.next() else {
                    return;
                };
                assert_eq!(cmd.trim(), expect);
                if reply == "<close>" {
                    return;
                }
                io.write_all(reply.as_bytes()).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn commands_collect_lines_and_urcs() {
        let (host, dev) = tokio::io::duplex(1024);
        tokio::spawn(modem(
            dev,
            vec![
                ("AT+CSQ", "\r\n+CEREG: 1\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
                ("AT+FOO", "\r\n+CME ERROR: 4\r\n"),
                ("AT", ""),
                ("AT", "<close>"),
            ],
        ));
        let mut port = AtPort::new(Box::new(host));
        let r = port
            .command("AT+CSQ", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(r.result, FinalResult::Ok);
        assert_eq!(r.lines, vec!["+CSQ: 20,99".to_owned()]);
        assert_eq!(port.take_urcs(), vec!["+CEREG: 1".to_owned()]);
        let r = port
            .command("AT+FOO", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(!r.result.is_ok());
        // silence: a bounded timeout, and the port stays usable
        let e = port
            .command("AT", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e, PortError::Timeout(Duration::from_millis(50)));
        // the device goes away: Gone, and Gone again without touching the stream
        let e = port
            .command("AT", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e, PortError::Gone);
        assert!(!port.is_open());
        assert_eq!(
            port.command("AT", Duration::from_secs(1))
                .await
                .unwrap_err(),
            PortError::Gone
        );
        assert_eq!(
            port.idle_until(Instant::now() + Duration::from_secs(1))
                .await,
            Err(PortError::Gone)
        );
    }
}
