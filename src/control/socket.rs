//! The control socket's I/O shell: a Unix socket that only root and the service's own user may
//! use (checked by the peer's credentials, `SO_PEERCRED`, on every connection — the file mode
//! and the state directory's 0700 are a second fence, not the only one), one JSON request per
//! line and one JSON reply per line.
//!
//! A connection is bounded: a request line longer than [`MAX_LINE`] or a client silent for
//! [`IDLE`] ends it, so a local process cannot pin the server's memory or tasks.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::protocol::{Reply, Request};
use super::Commands;

/// Longest request line accepted (a password and a few names fit many times over).
pub const MAX_LINE: usize = 16 * 1024;
/// A connection silent this long is closed.
pub const IDLE: Duration = Duration::from_secs(30);

/// Who may talk to the control socket: root and the user the server runs as.
pub fn peer_allowed(peer_uid: u32, server_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == server_uid
}

/// The running control socket; dropping it does not stop it, [`ControlSocket::join`] after
/// shutdown does (and removes the socket file).
pub struct ControlSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlSocket {
    /// Binds `path` (replacing a stale socket file left by a killed server, never a regular
    /// file), mode 0600, and serves `commands` until `shutdown` turns true.
    pub fn bind(
        path: &Path,
        commands: Arc<dyn Commands>,
        mut shutdown: watch::Receiver<bool>,
    ) -> io::Result<Self> {
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let server_uid = nix::unistd::geteuid().as_raw();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let commands = Arc::clone(&commands);
                            tokio::spawn(serve(stream, commands, server_uid));
                        }
                        Err(e) => {
                            log::warn!("control socket: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok(Self {
            path: path.to_owned(),
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the accept loop to end (after shutdown) and removes the socket file.
    pub async fn join(self) {
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A socket file left by a server that did not exit cleanly is replaced; anything else at the
/// path is an error (edgeward never deletes a file it did not make).
fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by a running edgeward (only one server per store)",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; move it away or set another control socket path",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

async fn serve(stream: UnixStream, commands: Arc<dyn Commands>, server_uid: u32) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            log::warn!("control socket: cannot read the peer's credentials ({e}); closed");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    if !peer_allowed(uid, server_uid) {
        log::warn!("control socket: uid {uid} refused (only root and uid {server_uid} may use it)");
        let reply = Reply::error(format!(
            "uid {uid} may not use the control socket (only root and the edgeward service user)"
        ));
        let _ = write_reply(&mut write, &reply).await;
        return;
    }
    let mut lines = BufReader::new(read).take(MAX_LINE as u64 + 1);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match tokio::time::timeout(IDLE, lines.read_line(&mut line)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if line.len() > MAX_LINE || !line.ends_with('\n') {
            let _ = write_reply(
                &mut write,
                &Reply::error(format!("request longer than {MAX_LINE} bytes")),
            )
            .await;
            return;
        }
        // Each request gets its own budget of MAX_LINE bytes.
        lines.set_limit(MAX_LINE as u64 + 1);
        let reply = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(request) => commands.run(request, uid).await,
            Err(e) => Reply::error(format!("not a control request: {e}")),
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn write_reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// The client side: one request, one reply. `Ok(None)` when nothing listens at `path` (no
/// server running: the caller may open the store itself).
pub async fn call(path: &Path, request: &Request) -> io::Result<Option<Reply>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(4 * 1024 * 1024);
    tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the server did not answer"))??;
    serde_json::from_str(line.trim_end())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// Answers every request with its own description: what reached the server.
    struct Echo;

    impl Commands for Echo {
        fn run(
            &self,
            request: Request,
            uid: u32,
        ) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
            Box::pin(async move { Reply::done(format!("{request} as {uid}")) })
        }
    }

    async fn serving(dir: &Path) -> (ControlSocket, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let sock = ControlSocket::bind(&dir.join("c.sock"), Arc::new(Echo), rx).unwrap();
        (sock, tx)
    }

    #[test]
    fn root_and_the_service_user_only() {
        assert!(peer_allowed(0, 998));
        assert!(peer_allowed(998, 998));
        assert!(!peer_allowed(1000, 998));
        assert!(!peer_allowed(65534, 0));
    }

    #[tokio::test]
    async fn a_request_reaches_the_commands_with_the_callers_uid() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, stop) = serving(dir.path()).await;
        let mode = std::fs::metadata(sock.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let reply = call(sock.path(), &Request::UserList)
            .await
            .unwrap()
            .unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(reply, Reply::done(format!("user list as {me}")));
        let _ = stop.send(true);
        let path = sock.path().to_owned();
        sock.join().await;
        assert!(!path.exists(), "the socket file is removed at shutdown");
        // Nothing listens any more: the CLI learns it may open the store itself.
        assert_eq!(call(&path, &Request::UserList).await.unwrap(), None);
    }

    #[tokio::test]
    async fn garbage_and_oversized_lines_get_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, _stop) = serving(dir.path()).await;
        let mut stream = UnixStream::connect(sock.path()).await.unwrap();
        stream
            .write_all(b"{\"op\":\"format_disk\"}\n")
            .await
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert!(!reply.ok);
        assert!(
            reply.message.contains("not a control request"),
            "{}",
            reply.message
        );

        let mut stream = UnixStream::connect(sock.path()).await.unwrap();
        let huge = vec![b'x'; MAX_LINE + 10];
        stream.write_all(&huge).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert!(!reply.ok);
        assert!(reply.message.contains("longer than"), "{}", reply.message);
    }

    #[tokio::test]
    async fn a_live_socket_is_never_taken_over_and_a_file_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (_sock, _stop) = serving(dir.path()).await;
        let (_tx, rx) = watch::channel(false);
        let err = ControlSocket::bind(&dir.path().join("c.sock"), Arc::new(Echo), rx)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        let file = dir.path().join("plain");
        std::fs::write(&file, b"keep me").unwrap();
        let (_tx, rx) = watch::channel(false);
        assert!(ControlSocket::bind(&file, Arc::new(Echo), rx).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn a_stale_socket_from_a_killed_server_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (_tx, rx) = watch::channel(false);
        let sock = ControlSocket::bind(&path, Arc::new(Echo), rx).unwrap();
        assert!(
            call(sock.path(), &Request::UserList)
                .await
                .unwrap()
                .unwrap()
                .ok
        );
    }
}
