//! A simulated LTE modem on a PTY pair, for integration tests and `edgeward demo`.
//!
//! [`SimModem::start`] creates a PTY, points a symlink at its slave (`/dev/pts/N`) and serves it
//! from a thread, speaking the commands and answer shapes of one vendor profile
//! (`config/modems/*.toml`): port setup, status queries, every ladder rung and redial. The host
//! opens the symlink like a real serial device (raw termios, `TIOCEXCL`, `flock` all work).
//!
//! The modem itself is the pure state machine in `machine.rs`; this file only moves bytes and time
//! between it and the PTY, with std threads and poll(2), so it runs the same under any runtime.
//!
//! What a host sees:
//! - The port answers as soon as the path exists. The simulator keeps the slave open itself, so
//!   bytes it writes before the host opens the port (boot URCs) wait in the tty buffer and are
//!   read on open, unless the host flushes its input.
//! - A reset command (`AT+CFUN=1,1`, and the profile's own: `AT+CRESET`, `AT^RESET`, `AT!RESET`,
//!   `AT+CFUN=15`) is answered `OK`; once the host has read that (or 500 ms passed) the PTY is
//!   closed and the symlink removed: the host's reads return EOF (0 bytes, poll says
//!   `POLLHUP`), its writes fail with EIO, and opening the path fails with ENOENT. After
//!   `reset_downtime` a new PTY (usually another `/dev/pts/N`) appears at the same path, the
//!   modem boots (vendor boot URCs, echo on, `CMEE=0`, URC modes off) and registers after
//!   `registration_delay`. [`SimModem::unplug`] does the same without a command, like pulling
//!   the stick: the modem loses power.
//! - After a boot, generic, Quectel and SIMCom modems bring the default bearer up by themselves
//!   once registered; Huawei, Sierra and Fibocom need their data call redialed (the profiles'
//!   `redial`), as the real ones do.

pub mod hilink;
mod machine;
mod port;
#[cfg(test)]
mod tests;
mod vendor;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags};

use machine::{Modem, Out, Settings};
use port::Port;
use vendor::Vendor;

/// Longest the serving thread sleeps without looking at its clock.
const IDLE: Duration = Duration::from_millis(500);
/// How long a write may wait for the host to make room before the rest is dropped.
const WRITE_PATIENCE: Duration = Duration::from_millis(200);
/// How long a vanishing port waits for the host to read what was written last.
const DRAIN_MAX: Duration = Duration::from_millis(500);
/// Between attempts to recreate the port if that fails.
const RETRY: Duration = Duration::from_millis(100);
/// After an unexpected read error, so a broken port cannot spin the thread.
const BACKOFF: Duration = Duration::from_millis(20);

/// How the simulator ends its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    /// `\r\n`, as V.250 prescribes (S3 S4).
    #[default]
    CrLf,
    Lf,
    Cr,
}

impl LineEnding {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::CrLf => b"\r\n",
            Self::Lf => b"\n",
            Self::Cr => b"\r",
        }
    }
}

/// How the simulated modem behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Which vendor's commands and answer shapes to speak: `generic`, `quectel`, `simcom`,
    /// `huawei`, `sierra` or `fibocom` (the built-in profile names).
    pub profile: String,
    /// Echo at start (`ATE0`/`ATE1` change it; a reboot turns it back on).
    pub echo: bool,
    pub line_ending: LineEnding,
    /// The address the modem holds at start (it starts registered with its data call up).
    pub initial_ip: Ipv4Addr,
    /// From `CFUN=1` (radio back on) or a boot until registration, and on most makes an address.
    pub registration_delay: Duration,
    /// Added before each answer (not before the echo).
    pub reply_delay: Duration,
    /// How long the port is gone after a reset command.
    pub reset_downtime: Duration,
    /// Sprinkle URCs the vendor sends (registration reports, `RING`, `^RSSI:`, `+QIND:` ...) at
    /// random times, including between the lines of an answer.
    pub urc_noise: bool,
    /// Seed for everything random: addresses, URC timing, signal readings.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            profile: "generic".to_string(),
            echo: true,
            line_ending: LineEnding::CrLf,
            initial_ip: Ipv4Addr::new(100, 64, 12, 34),
            registration_delay: Duration::from_secs(2),
            reply_delay: Duration::from_millis(20),
            reset_downtime: Duration::from_secs(3),
            urc_noise: false,
            seed: 1,
        }
    }
}

/// State shared between the handle and the serving thread.
struct Shared {
    modem: Mutex<Modem>,
    stop: AtomicBool,
}

impl Shared {
    fn modem(&self) -> MutexGuard<'_, Modem> {
        // The modem's state stays consistent even if a holder panicked mid-call.
        self.modem.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulated modem; stops (and removes its symlink) on [`SimModem::stop`] or drop.
pub struct SimModem {
    path: PathBuf,
    shared: Arc<Shared>,
    /// Writing a byte here wakes the serving thread.
    wake: File,
    thread: Option<JoinHandle<()>>,
}

impl SimModem {
    /// Creates the PTY, makes `path` a symlink to its slave and starts serving it. `path` may be
    /// a stale symlink (it is replaced) but no other kind of file.
    pub fn start(path: &Path, config: SimConfig) -> io::Result<SimModem> {
        let vendor = Vendor::from_profile(&config.profile).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no simulated modem for profile `{}`", config.profile),
            )
        })?;
        let settings = Settings {
            vendor,
            echo: config.echo,
            line_ending: config.line_ending,
            initial_ip: config.initial_ip,
            registration_delay: config.registration_delay,
            reply_delay: config.reply_delay,
            reset_downtime: config.reset_downtime,
            urc_noise: config.urc_noise,
            seed: config.seed,
        };
        let (wake_rx, wake_tx) = nix::unistd::pipe()?;
        for fd in [&wake_rx, &wake_tx] {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        let port = Port::create(path)?;
        port.publish()?;
        let shared = Arc::new(Shared {
            modem: Mutex::new(Modem::new(settings, Instant::now())),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("modem-sim".to_string())
            .spawn({
                let shared = Arc::clone(&shared);
                let link = path.to_path_buf();
                move || serve(&link, &shared, port, &File::from(wake_rx))
            })?;
        Ok(SimModem {
            path: path.to_path_buf(),
            shared,
            wake: File::from(wake_tx),
            thread: Some(thread),
        })
    }

    /// The symlink the host opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The modem's address; `None` while detached, dialing or rebooting.
    pub fn current_ip(&self) -> Option<Ipv4Addr> {
        self.shared.modem().current_ip()
    }

    /// How many times an address was assigned since start (the initial one not counted), kept
    /// ones included.
    pub fn attach_count(&self) -> u64 {
        self.shared.modem().attach_count()
    }

    /// The radio level `+CFUN` reports: 1 full, 4 RF off, 0 minimum.
    pub fn radio_level(&self) -> u8 {
        self.shared.modem().radio_level()
    }

    /// Whether the data context (the PDP context or vendor data call) is up.
    pub fn data_active(&self) -> bool {
        self.shared.modem().data_active()
    }

    /// The next command starting with `command_prefix` (case-insensitive) is never answered
    /// and has no effect, like a modem still busy with it; later ones are served again.
    pub fn hold_next(&self, command_prefix: &str) {
        self.shared.modem().hold_next(command_prefix);
    }

    /// The command lines received, oldest first (the last 4096), also those swallowed while
    /// silent.
    pub fn commands(&self) -> Vec<String> {
        self.shared.modem().commands()
    }

    /// The next `n` attaches hand back the address the modem had last (carriers do this).
    pub fn keep_ip_on_next_reattaches(&self, n: u32) {
        self.shared.modem().keep_ip(n);
    }

    /// Answers every command starting with `command_prefix` (case-insensitive) with the final
    /// result `reply` (e.g. `+CME ERROR: 148`) and no effect, until [`Self::clear_refusals`].
    pub fn refuse(&self, command_prefix: &str, reply: &str) {
        self.shared.modem().refuse(command_prefix, reply);
    }

    pub fn clear_refusals(&self) {
        self.shared.modem().clear_refusals();
    }

    /// A hung modem: input is swallowed, nothing is answered or echoed, no URCs.
    pub fn set_silent(&self, silent: bool) {
        self.shared.modem().set_silent(silent);
        self.wake();
    }

    /// Writes `bytes` to the host now, silent or not.
    pub fn send_garbage(&self, bytes: &[u8]) {
        self.shared.modem().inject(bytes, Instant::now());
        self.wake();
    }

    /// The port vanishes now and comes back at the same path after `for_how_long`; the modem
    /// boots as after a reset (see the module docs).
    pub fn unplug(&self, for_how_long: Duration) {
        self.shared.modem().unplug(for_how_long, Instant::now());
        self.wake();
    }

    /// Stops serving and removes the symlink (also done on drop).
    pub fn stop(self) {}

    fn wake(&self) {
        // A full pipe already holds a wake-up.
        let _ = (&self.wake).write(&[1]);
    }
}

impl Drop for SimModem {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The serving thread: moves bytes between the PTY and the modem, and time into the modem.
fn serve(link: &Path, shared: &Shared, port: Port, wake: &File) {
    let mut port = Some(port);
    let mut back_at = Instant::now();
    let mut buf = [0u8; 4096];
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let Some(p) = port.as_ref() else {
            // Away (reset or unplug): an unplug meanwhile only lengthens the absence.
            while let Some(out) = shared.modem().poll_output(now) {
                if let Out::Vanish(d) = out {
                    back_at = back_at.max(now + d);
                }
            }
            if now < back_at {
                wait(wake, None, back_at - now);
                continue;
            }
            // Booted before the path appears, so the host's first command is never lost.
            match Port::create(link) {
                Ok(p) => {
                    shared.modem().boot(Instant::now());
                    match p.publish() {
                        Ok(()) => port = Some(p),
                        Err(_) => back_at = now + RETRY,
                    }
                }
                Err(_) => back_at = now + RETRY,
            }
            continue;
        };
        let (outputs, deadline) = {
            let mut modem = shared.modem();
            modem.tick(now);
            let mut outputs = Vec::new();
            while let Some(out) = modem.poll_output(now) {
                let vanish = matches!(out, Out::Vanish(_));
                outputs.push(out);
                if vanish {
                    break;
                }
            }
            (outputs, modem.next_deadline())
        };
        let mut vanish = None;
        for out in outputs {
            match out {
                // A host that does not read loses what does not fit, as with real hardware.
                Out::Bytes(bytes) => {
                    let _ = p.write(&bytes, WRITE_PATIENCE);
                }
                Out::Vanish(d) => vanish = Some(d),
            }
        }
        if let Some(d) = vanish {
            p.drain(DRAIN_MAX);
            port = None;
            back_at = Instant::now() + d;
            continue;
        }
        let timeout = deadline.map_or(IDLE, |d| d.saturating_duration_since(now).min(IDLE));
        if !wait(wake, Some(p), timeout) {
            continue;
        }
        match p.read(&mut buf) {
            Ok(n) if n > 0 => shared
                .modem()
                .feed(buf.get(..n).unwrap_or_default(), Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EOF or EIO: cannot happen while we hold the slave, but must not spin if it does.
            _ => std::thread::sleep(BACKOFF),
        }
    }
}

/// Sleeps until the port has input (returns true), a wake-up, or `timeout`.
fn wait(wake: &File, port: Option<&Port>, timeout: Duration) -> bool {
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    if let Some(p) = port {
        fds.push(PollFd::new(p.master(), PollFlags::POLLIN));
    }
    if poll(&mut fds, port::timeout(timeout)).is_err() {
        // EINTR; the caller's loop comes straight back.
        return false;
    }
    let ready = |fd: Option<&PollFd>| fd.and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
    if ready(fds.first()) {
        let mut sink = [0u8; 64];
        let _ = (&*wake).read(&mut sink);
    }
    ready(fds.get(1))
}
