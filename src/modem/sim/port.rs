//! One PTY pair published at a path: the master for the simulator, the slave behind a symlink
//! for the host. Dropping it closes both ends (the host's reads then hit EOF, its writes EIO) and
//! removes the symlink if it still points here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

pub(crate) struct Port {
    master: PtyMaster,
    /// Held open by the simulator itself: while it is, reading the master never fails with EIO
    /// (no slave open), output written before the host opens the port waits for it, and the raw
    /// settings survive the host closing and reopening.
    slave: File,
    pts: PathBuf,
    link: PathBuf,
}

impl Port {
    /// A new PTY in raw mode, to be published as `link` by [`Self::publish`].
    pub(crate) fn create(link: &Path) -> io::Result<Self> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let pts = PathBuf::from(ptsname_r(&master)?);
        // std opens with O_CLOEXEC; O_NOCTTY keeps a session leader from acquiring it.
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(&pts)?;
        // Raw: the kernel must neither echo the host's bytes nor translate line endings.
        let mut termios = tcgetattr(&slave)?;
        cfmakeraw(&mut termios);
        tcsetattr(&slave, SetArg::TCSANOW, &termios)?;
        fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Self {
            master,
            slave,
            pts,
            link: link.to_path_buf(),
        })
    }

    /// Points the link at the slave. A stale symlink there is replaced; any other file there is
    /// an error.
    pub(crate) fn publish(&self) -> io::Result<()> {
        publish(&self.link, &self.pts)
    }

    pub(crate) fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// What the host wrote; `WouldBlock` when nothing is there.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.master).read(buf)
    }

    /// Writes `bytes` to the host, waiting at most `patience` for room; what does not fit in
    /// time is dropped, as a modem without flow control drops it.
    pub(crate) fn write(&self, bytes: &[u8], patience: Duration) -> io::Result<()> {
        let give_up = Instant::now() + patience;
        let mut rest = bytes;
        while !rest.is_empty() {
            match (&self.master).write(rest) {
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = give_up.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    let mut fds = [PollFd::new(self.master(), PollFlags::POLLOUT)];
                    poll(&mut fds, timeout(left))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits (at most `max`) until the host has read everything written to it, so that an answer
    /// sent just before the port vanishes is not lost with it.
    pub(crate) fn drain(&self, max: Duration) {
        let give_up = Instant::now() + max;
        loop {
            let mut fds = [PollFd::new(self.slave.as_fd(), PollFlags::POLLIN)];
            let pending = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0);
            let left = give_up.saturating_duration_since(Instant::now());
            if !pending || left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(2)));
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Only our own link: a new simulator may already own the path.
        if std::fs::read_link(&self.link).is_ok_and(|target| target == self.pts) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// A poll(2) timeout for `d`, saturating at the largest one poll takes.
pub(crate) fn timeout(d: Duration) -> PollTimeout {
    // Round up, so a deadline 0.4 ms away does not become a busy loop of zero timeouts.
    let ms = d.as_micros().div_ceil(1000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// Points `link` at `target`, atomically replacing a symlink already there.
fn publish(link: &Path, target: &Path) -> io::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a symlink", link.display()),
            ));
        }
    }
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = link.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
