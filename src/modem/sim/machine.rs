//! The simulated modem as a pure state machine: bytes from the host go in with [`Modem::feed`],
//! time moves with [`Modem::tick`], and what to write to the host (or "vanish now", for a reboot
//! or an unplug) comes out of [`Modem::poll_output`], each item stamped with when it is due.
//! No port, no clock, no thread: `sim.rs` owns those.
//!
//! State: radio level (`+CFUN`), registration `<stat>` (0 off, 2 searching, 1 home), the one PDP
//! context (cid 1) and its address. An address is handed out only by an attach: the context
//! being activated (27.007 `+CGACT`, or the vendor's data call) or, on makes that do not need a
//! redial, registration completing after `CFUN=1` or a boot. Deactivating, radio off and
//! rebooting take it away. A new address always differs from the last one, unless
//! [`Modem::keep_ip`] asked for the same one back.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::vendor::Vendor;
use super::LineEnding;

use commands::Answer;

mod commands;
#[cfg(test)]
mod tests;

/// Longest command line kept; the rest of a longer line is dropped.
const MAX_COMMAND: usize = 1024;
/// Command lines remembered for [`Modem::commands`] (oldest dropped first).
const MAX_LOGGED: usize = 4096;
/// Background URCs come this often, give or take (see [`Modem::tick`]).
const NOISE_MIN_MS: u64 = 40;
const NOISE_SPREAD_MS: u64 = 400;
/// One in this many gaps of an answer gets a URC when noise is on.
const NOISE_IN_ANSWER: u64 = 4;

/// Fixed behaviour, from `SimConfig`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub vendor: Vendor,
    pub echo: bool,
    pub line_ending: LineEnding,
    pub initial_ip: Ipv4Addr,
    pub registration_delay: Duration,
    pub reply_delay: Duration,
    pub reset_downtime: Duration,
    pub urc_noise: bool,
    pub seed: u64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    /// Write these bytes to the host.
    Bytes(Vec<u8>),
    /// Close the port and remove its path; call [`Modem::boot`] when it is back, after this long.
    Vanish(Duration),
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    out: Out,
    /// Written even while silent (injected garbage, vanishing).
    forced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    On,
    /// A reset was answered; the port goes away once the answer is out. Input is ignored.
    Rebooting,
    /// The port is gone until [`Modem::boot`].
    Off,
}

/// The registration reports, by index into `Modem::reg_mode`.
const REG_TAGS: [&str; 4] = ["+CREG", "+CGREG", "+CEREG", "+C5GREG"];

/// splitmix64: small, seedable, good enough to pick addresses and URC timing.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug)]
pub(crate) struct Modem {
    s: Settings,
    power: Power,
    echo: bool,
    cmee: u8,
    cfun: u8,
    /// 27.007 `<stat>`: 0 not registered, 1 home, 2 searching.
    stat: u8,
    reg_due: Option<Instant>,
    /// `<n>` of `+CREG`, `+CGREG`, `+CEREG`, `+C5GREG`.
    reg_mode: [u8; 4],
    active: bool,
    ip: Option<Ipv4Addr>,
    last_ip: Ipv4Addr,
    keep: u32,
    attaches: u64,
    silent: bool,
    refusals: Vec<(String, String)>,
    /// Prefixes of commands to swallow once each (see [`Modem::hold_next`]).
    holds: Vec<String>,
    commands: VecDeque<String>,
    line: Vec<u8>,
    rng: Rng,
    next_noise: Option<Instant>,
    /// The command whose answer is not out yet, and when it will be: URCs its answer would
    /// claim as its own (`+CEREG: ...` during `AT+CEREG?`) are not sent meanwhile.
    busy: Option<(String, Instant)>,
    queue: Vec<Scheduled>,
    seq: u64,
}

impl Modem {
    /// A modem that is up, registered, with its context active on `initial_ip`.
    pub(crate) fn new(s: Settings, now: Instant) -> Self {
        let mut modem = Self {
            power: Power::On,
            echo: s.echo,
            cmee: 0,
            cfun: 1,
            stat: 1,
            reg_due: None,
            reg_mode: [0; 4],
            active: true,
            ip: Some(s.initial_ip),
            last_ip: s.initial_ip,
            keep: 0,
            attaches: 0,
            silent: false,
            refusals: Vec::new(),
            holds: Vec::new(),
            commands: VecDeque::new(),
            line: Vec::new(),
            rng: Rng(s.seed),
            next_noise: None,
            busy: None,
            queue: Vec::new(),
            seq: 0,
            s,
        };
        modem.schedule_noise(now);
        modem
    }

    // ---- knobs and observations (SimModem's API) ----

    pub(crate) fn current_ip(&self) -> Option<Ipv4Addr> {
        self.ip
    }

    pub(crate) fn attach_count(&self) -> u64 {
        self.attaches
    }

    pub(crate) fn radio_level(&self) -> u8 {
        self.cfun
    }

    pub(crate) fn data_active(&self) -> bool {
        self.power == Power::On && self.active
    }

    /// The next command starting with `prefix` (case-insensitive) is swallowed: echoed, but
    /// never answered and without effect, like a modem still busy with it (`AT+QIACT` may take
    /// 150 s). Later ones are served again.
    pub(crate) fn hold_next(&mut self, prefix: &str) {
        self.holds.push(prefix.trim().to_ascii_uppercase());
    }

    pub(crate) fn commands(&self) -> Vec<String> {
        self.commands.iter().cloned().collect()
    }

    pub(crate) fn keep_ip(&mut self, n: u32) {
        self.keep = n;
    }

    pub(crate) fn refuse(&mut self, prefix: &str, reply: &str) {
        self.refusals
            .push((prefix.trim().to_ascii_uppercase(), reply.to_string()));
    }

    pub(crate) fn clear_refusals(&mut self) {
        self.refusals.clear();
    }

    pub(crate) fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    pub(crate) fn inject(&mut self, bytes: &[u8], now: Instant) {
        self.push(now, Out::Bytes(bytes.to_vec()), true);
    }

    /// The port goes away now for `downtime`; the modem loses power (see [`Self::boot`]).
    pub(crate) fn unplug(&mut self, downtime: Duration, now: Instant) {
        self.power_off();
        self.push(now, Out::Vanish(downtime), true);
    }

    // ---- driving ----

    /// Power back on after a vanish: echo on and `CMEE`/URC modes at their defaults as after a
    /// real reboot, boot URCs, registration after the configured delay. The data call is down.
    pub(crate) fn boot(&mut self, now: Instant) {
        self.power_off();
        self.power = Power::On;
        self.echo = true;
        self.cmee = 0;
        self.cfun = 1;
        self.reg_mode = [0; 4];
        self.stat = 2;
        self.reg_due = Some(now + self.s.registration_delay);
        let boot: Vec<String> = self
            .s
            .vendor
            .boot_urcs()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bytes = self.frame(&boot);
        self.push(now, Out::Bytes(bytes), false);
        self.schedule_noise(now);
    }

    /// Bytes the host wrote.
    pub(crate) fn feed(&mut self, bytes: &[u8], now: Instant) {
        if self.power != Power::On {
            return;
        }
        let mut echo = Vec::new();
        for &b in bytes {
            if self.echo && !self.silent {
                echo.push(b);
            }
            match b {
                b'\r' | b'\n' => {
                    if !echo.is_empty() {
                        self.push(now, Out::Bytes(std::mem::take(&mut echo)), false);
                    }
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line, now);
                    if self.power != Power::On {
                        return;
                    }
                }
                // Backspace and DEL edit the line, as on a real command interpreter.
                0x08 | 0x7f => {
                    self.line.pop();
                }
                _ if self.line.len() < MAX_COMMAND => self.line.push(b),
                _ => {}
            }
        }
        if !echo.is_empty() {
            self.push(now, Out::Bytes(echo), false);
        }
    }

    /// Moves time: registration completing, background URCs.
    pub(crate) fn tick(&mut self, now: Instant) {
        let on = self.power == Power::On;
        if on && self.reg_due.is_some_and(|due| due <= now) {
            self.reg_due = None;
            let urcs = self.set_stat(1);
            // After an answer still on its way, which could otherwise claim them (see `busy`).
            let at = match &self.busy {
                Some((_, until)) if *until > now => *until,
                _ => now,
            };
            self.push_lines(at, &urcs);
            if !self.s.vendor.redials() && !self.active {
                self.attach();
            }
        }
        // Rescheduled even while off, so a past deadline never makes the shell spin.
        if self.next_noise.is_some_and(|due| due <= now) {
            if on && !self.silent {
                let busy = match &self.busy {
                    Some((name, until)) if *until > now => name.clone(),
                    _ => String::new(),
                };
                if let Some(urc) = self.noise_line(&busy) {
                    self.push_lines(now, &[urc]);
                }
            }
            self.schedule_noise(now);
        }
    }

    /// When [`Self::tick`] or [`Self::poll_output`] next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let queued = self.queue.iter().map(|s| s.at).min();
        [queued, self.reg_due, self.next_noise]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next output due at `now`. A vanish also powers the modem off.
    pub(crate) fn poll_output(&mut self, now: Instant) -> Option<Out> {
        loop {
            let idx = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, s)| s.at <= now)
                .min_by_key(|(_, s)| (s.at, s.seq))
                .map(|(i, _)| i)?;
            let item = self.queue.remove(idx);
            if let Out::Vanish(_) = item.out {
                self.power_off();
                return Some(item.out);
            }
            if item.forced || !self.silent {
                return Some(item.out);
            }
        }
    }

    // ---- internals ----

    fn push(&mut self, at: Instant, out: Out, forced: bool) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            out,
            forced,
        });
    }

    fn push_lines(&mut self, at: Instant, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let bytes = self.frame(lines);
        self.push(at, Out::Bytes(bytes), false);
    }

    /// V.250 verbose framing: every line between two line endings.
    fn frame(&self, lines: &[String]) -> Vec<u8> {
        let eol = self.s.line_ending.as_bytes();
        let mut out = Vec::new();
        for line in lines {
            out.extend_from_slice(eol);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        out
    }

    fn power_off(&mut self) {
        self.power = Power::Off;
        self.stat = 0;
        self.reg_due = None;
        self.active = false;
        self.ip = None;
        self.line.clear();
        self.busy = None;
        self.queue.clear();
    }

    fn schedule_noise(&mut self, now: Instant) {
        self.next_noise = self
            .s
            .urc_noise
            .then(|| now + Duration::from_millis(NOISE_MIN_MS + self.rng.below(NOISE_SPREAD_MS)));
    }

    /// A background URC that the answer of `busy` (a command name) would not claim.
    fn noise_line(&mut self, busy: &str) -> Option<String> {
        let mut candidates: Vec<String> = self
            .s
            .vendor
            .noise()
            .iter()
            .map(|s| s.to_string())
            .collect();
        candidates.extend(self.reg_urcs());
        candidates.retain(|urc| {
            let tag = urc.split(':').next().unwrap_or("");
            !(urc.contains(':') && busy.starts_with(tag))
        });
        let pick = self.rng.below(candidates.len() as u64);
        candidates.into_iter().nth(usize::try_from(pick).ok()?)
    }

    fn attach(&mut self) {
        let ip = if self.keep > 0 {
            self.keep -= 1;
            self.last_ip
        } else {
            self.fresh_ip()
        };
        self.last_ip = ip;
        self.ip = Some(ip);
        self.active = true;
        self.attaches += 1;
    }

    fn deactivate(&mut self) {
        self.active = false;
        self.ip = None;
    }

    /// A carrier-NAT address (100.64.0.0/10 or 10.0.0.0/8) other than the last one.
    fn fresh_ip(&mut self) -> Ipv4Addr {
        loop {
            let r = self.rng.next();
            let b = |shift: u32| u8::try_from((r >> shift) & 0xff).unwrap_or(0);
            let host = 1 + (b(24) % 254);
            let ip = if r & 1 == 0 {
                Ipv4Addr::new(100, 64 | (b(8) & 0x3f), b(16), host)
            } else {
                Ipv4Addr::new(10, b(8), b(16), host)
            };
            if ip != self.last_ip {
                return ip;
            }
        }
    }

    /// Changes `<stat>`; returns the URCs for the reports the host enabled.
    fn set_stat(&mut self, stat: u8) -> Vec<String> {
        if self.stat == stat {
            return Vec::new();
        }
        self.stat = stat;
        self.reg_urcs()
    }

    fn reg_supported(&self, idx: usize) -> bool {
        idx != 3 || self.s.vendor.has_5g()
    }

    /// `<stat>[,<tac>,<ci>,<AcT>]`, the location only with `<n>` 2 and a registration.
    fn reg_fields(&self, idx: usize) -> String {
        let mode = self.reg_mode.get(idx).copied().unwrap_or(0);
        if mode < 2 || self.stat != 1 {
            return self.stat.to_string();
        }
        if idx == 3 {
            format!("{},\"00A1B2\",\"0001A2B3C\",11", self.stat)
        } else {
            format!("{},\"1A2B\",\"01A2B3C4\",7", self.stat)
        }
    }

    fn reg_urcs(&self) -> Vec<String> {
        (0..REG_TAGS.len())
            .filter(|&i| self.reg_supported(i) && self.reg_mode.get(i).is_some_and(|n| *n > 0))
            .map(|i| format!("{}: {}", REG_TAGS[i], self.reg_fields(i)))
            .collect()
    }

    fn registered(&self) -> bool {
        self.power == Power::On && self.stat == 1
    }

    fn cme(&self, code: u16) -> String {
        let text = match code {
            3 => "operation not allowed",
            4 => "operation not supported",
            30 => "no network service",
            50 => "Incorrect parameters",
            _ => "unknown",
        };
        match self.cmee {
            0 => "ERROR".to_string(),
            1 => format!("+CME ERROR: {code}"),
            _ => format!("+CME ERROR: {text}"),
        }
    }

    fn on_line(&mut self, raw: &[u8], now: Instant) {
        let text = String::from_utf8_lossy(raw).trim().to_string();
        if text.is_empty() {
            return;
        }
        if self.commands.len() >= MAX_LOGGED {
            self.commands.pop_front();
        }
        self.commands.push_back(text.clone());
        if self.silent {
            return;
        }
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self
            .holds
            .iter()
            .position(|p| upper.starts_with(p.as_str()))
        {
            self.holds.remove(i);
            return;
        }
        // A command interpreter waits for "AT"; anything else on the line is noise to it.
        let Some(body) = upper.strip_prefix("AT") else {
            return;
        };
        let at = now + self.s.reply_delay;
        let name_len = body.find(['=', '?']).unwrap_or(body.len());
        let (name, tail) = body.split_at(name_len);
        self.busy = Some((name.to_string(), at));
        let refused = self
            .refusals
            .iter()
            .rev()
            .find(|(prefix, _)| upper.starts_with(prefix.as_str()))
            .map(|(_, reply)| reply.clone());
        let answer = match refused {
            Some(reply) => Answer::result(reply),
            None => self.answer(name, tail, now),
        };
        self.reply(name, answer, at);
    }

    fn reply(&mut self, name: &str, answer: Answer, at: Instant) {
        let mut lines = Vec::new();
        for line in answer.info.into_iter().chain([answer.result]) {
            if self.s.urc_noise && self.rng.below(NOISE_IN_ANSWER) == 0 {
                lines.extend(self.noise_line(name));
            }
            lines.push(line);
        }
        self.push_lines(at, &lines);
        self.push_lines(at, &answer.after);
        if answer.reboot {
            self.power = Power::Rebooting;
            self.reg_due = None;
            self.push(at, Out::Vanish(self.s.reset_downtime), true);
        }
    }
}
