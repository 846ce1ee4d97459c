//! A small RFB (VNC) server on loopback for the console tests: it speaks RFB 3.8 through
//! ServerInit (version, security type None, SecurityResult OK, ClientInit, ServerInit: what a
//! client such as noVNC needs before it reports "connect"), then answers the first full
//! framebuffer request with one solid-colour raw rectangle and reads (and counts) every
//! client message after that. It stands in for QEMU's VNC server, which libvirt's test driver
//! does not run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const VERSION: &[u8; 12] = b"RFB 003.008\n";
pub const WIDTH: u16 = 320;
pub const HEIGHT: u16 = 200;
pub const NAME: &str = "edgeward-test-vm";
/// The colour the framebuffer is painted (a teal that shows up in a screenshot).
pub const COLOUR: (u8, u8, u8) = (0x20, 0xa0, 0x90);

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Handshakes completed through ServerInit.
    pub handshakes: AtomicUsize,
    /// Client messages read after the handshake (by type).
    pub messages: Mutex<Vec<u8>>,
    /// The version the client answered with.
    pub client_version: Mutex<Option<String>>,
}

pub struct RfbServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RfbServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RfbServer {
    /// Listens on `127.0.0.1:port` (the port a node-file domain declares).
    pub async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the RFB port");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Seen::default());
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let _ = serve(tcp, &s).await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    pub fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }
}

/// The pixel format a client asked for (ServerInit's until it says otherwise).
#[derive(Debug, Clone, Copy)]
struct PixelFormat {
    bytes_per_pixel: usize,
    big_endian: bool,
    shifts: (u8, u8, u8),
    maxes: (u16, u16, u16),
}

const SERVER_FORMAT: [u8; 16] = [
    32, 24, 0, 1, // bpp, depth, big-endian, true-colour
    0, 255, 0, 255, 0, 255, // red, green, blue max
    16, 8, 0, // shifts
    0, 0, 0, // padding
];

impl PixelFormat {
    fn parse(pf: &[u8; 16]) -> Self {
        Self {
            bytes_per_pixel: usize::from(pf[0] / 8).max(1),
            big_endian: pf[2] != 0,
            maxes: (
                u16::from_be_bytes([pf[4], pf[5]]),
                u16::from_be_bytes([pf[6], pf[7]]),
                u16::from_be_bytes([pf[8], pf[9]]),
            ),
            shifts: (pf[10], pf[11], pf[12]),
        }
    }

    fn pixel(&self, (r, g, b): (u8, u8, u8)) -> Vec<u8> {
        let scale = |c: u8, max: u16| u32::from(c) * u32::from(max) / 255;
        let v = (scale(r, self.maxes.0) << self.shifts.0)
            | (scale(g, self.maxes.1) << self.shifts.1)
            | (scale(b, self.maxes.2) << self.shifts.2);
        let bytes = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        if self.big_endian {
            bytes[4 - self.bytes_per_pixel..].to_vec()
        } else {
            bytes[..self.bytes_per_pixel].to_vec()
        }
    }
}

async fn serve(mut tcp: TcpStream, seen: &Seen) -> std::io::Result<()> {
    tcp.write_all(VERSION).await?;
    let mut version = [0u8; 12];
    tcp.read_exact(&mut version).await?;
    *seen.client_version.lock().expect("not poisoned") =
        Some(String::from_utf8_lossy(&version).into_owned());
    // Security: one type, None (1).
    tcp.write_all(&[1, 1]).await?;
    let mut chosen = [0u8; 1];
    tcp.read_exact(&mut chosen).await?;
    if chosen[0] != 1 {
        return Ok(());
    }
    tcp.write_all(&0u32.to_be_bytes()).await?;
    let mut shared = [0u8; 1];
    tcp.read_exact(&mut shared).await?;
    let mut init = Vec::new();
    init.extend_from_slice(&WIDTH.to_be_bytes());
    init.extend_from_slice(&HEIGHT.to_be_bytes());
    init.extend_from_slice(&SERVER_FORMAT);
    init.extend_from_slice(&(NAME.len() as u32).to_be_bytes());
    init.extend_from_slice(NAME.as_bytes());
    tcp.write_all(&init).await?;
    seen.handshakes.fetch_add(1, Ordering::SeqCst);

    let mut format = PixelFormat::parse(&SERVER_FORMAT);
    let mut painted = false;
    loop {
        let mut kind = [0u8; 1];
        tcp.read_exact(&mut kind).await?;
        seen.messages.lock().expect("not poisoned").push(kind[0]);
        match kind[0] {
            // SetPixelFormat: 3 padding, 16 format.
            0 => {
                let mut rest = [0u8; 19];
                tcp.read_exact(&mut rest).await?;
                let mut pf = [0u8; 16];
                pf.copy_from_slice(&rest[3..]);
                format = PixelFormat::parse(&pf);
            }
            // SetEncodings: 1 padding, count, count x i32.
            2 => {
                let mut head = [0u8; 3];
                tcp.read_exact(&mut head).await?;
                let n = usize::from(u16::from_be_bytes([head[1], head[2]]));
                let mut encodings = vec![0u8; 4 * n];
                tcp.read_exact(&mut encodings).await?;
            }
            // FramebufferUpdateRequest: incremental, x, y, w, h.
            3 => {
                let mut req = [0u8; 9];
                tcp.read_exact(&mut req).await?;
                if !painted {
                    painted = true;
                    paint(&mut tcp, format).await?;
                }
            }
            // KeyEvent, PointerEvent.
            4 => tcp.read_exact(&mut [0u8; 7]).await.map(drop)?,
            5 => tcp.read_exact(&mut [0u8; 5]).await.map(drop)?,
            // ClientCutText: 3 padding, length, text.
            6 => {
                let mut head = [0u8; 7];
                tcp.read_exact(&mut head).await?;
                let n = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
                let mut text = vec![0u8; n.min(1 << 20)];
                tcp.read_exact(&mut text).await?;
            }
            _ => return Ok(()),
        }
    }
}

/// One FramebufferUpdate: the whole screen, raw encoding, one colour.
async fn paint(tcp: &mut TcpStream, format: PixelFormat) -> std::io::Result<()> {
    let mut msg = vec![0u8, 0];
    msg.extend_from_slice(&1u16.to_be_bytes());
    for v in [0u16, 0, WIDTH, HEIGHT] {
        msg.extend_from_slice(&v.to_be_bytes());
    }
    msg.extend_from_slice(&0i32.to_be_bytes());
    let pixel = format.pixel(COLOUR);
    for _ in 0..usize::from(WIDTH) * usize::from(HEIGHT) {
        msg.extend_from_slice(&pixel);
    }
    tcp.write_all(&msg).await
}
