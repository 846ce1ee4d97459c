//! Sans-IO AT codec: bytes from the modem go in with [`AtCodec::feed`], [`AtEvent`]s come out of
//! [`AtCodec::poll_event`]; a command goes in with [`AtCodec::start_command`] and the bytes to
//! write come out. The codec owns line framing, echo suppression, final-result detection and the
//! split between a command's information lines and unsolicited result codes (URCs).
//!
//! It must not touch a port or a clock. Command timeouts belong to the shell, which calls
//! [`AtCodec::cancel_command`] when one fires; anything that arrives later for that command is
//! then reported as [`AtEvent::Urc`] or [`AtEvent::Stray`].
//!
//! # Framing
//! `\r`, `\n` and `\r\n` all end a line and blank lines are skipped, so every mix of line endings
//! modems produce (including Huawei's `\r\r\n`) frames the same way. Bytes that are not UTF-8 are
//! replaced lossily. A line longer than [`MAX_LINE`] bytes is reported once as
//! [`AtEvent::Garbage`] (its first `MAX_LINE` bytes) and the rest of it is dropped, so the codec's
//! memory stays bounded whatever the modem sends. The SMS prompt `> ` has no line ending and is
//! recognised while a command is in flight.
//!
//! # Solicited or unsolicited?
//! With no command in flight every line is a URC, except a final result code, which is reported as
//! [`AtEvent::Stray`] (typically the late answer to a command that timed out). With a command in
//! flight:
//! 1. the first line equal to the command text is its echo and is swallowed (echo on or off both
//!    work, with or without the echo's own `\r`);
//! 2. a final result code ends the command;
//! 3. a line starting with a known URC prefix (`+CEREG:`, `RING`, `^RSSI:`, `+QIND:` ...) is a URC
//!    unless the command in flight *owns* that prefix: the command is a read, test or action
//!    command (not a set command `AT+X=...`) whose name starts with the prefix's name. So
//!    `+CEREG: 0,1` during `AT+CEREG?` is the answer, while `+CEREG: 1,"1A2B","01A2B3C4",7`
//!    during `AT+CGPADDR=1`, or `+CPIN: READY` after `AT+CFUN=1`, is a URC. A registration line
//!    with a single field (`+CEREG: 1`) is always a URC: the read answer carries `<n>,<stat>`;
//! 4. anything else is an information line of the command.
//!
//! An unknown vendor URC that arrives in the middle of a response is therefore reported as an
//! information line; parsers look for their own tag, so such a line is ignored, not misread.

mod classify;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use classify::{ErrorCode, FinalResult};

/// Longest line kept, in bytes; a longer one becomes [`AtEvent::Garbage`].
pub const MAX_LINE: usize = 4096;

/// Most events held between polls. Feed a few KiB at a time and drain with
/// [`AtCodec::poll_event`]; past this bound events are dropped and counted in
/// [`AtEvent::Dropped`], so a caller that never polls cannot grow the codec without limit.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// What the codec made of the bytes fed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtEvent {
    /// The final result of the command in flight; the codec is idle again.
    Final(FinalResult),
    /// An information line belonging to the command in flight.
    Info(String),
    /// An unsolicited result code.
    Urc(String),
    /// The `> ` prompt (SMS text entry) of the command in flight.
    Prompt,
    /// A final result code that arrived with no command in flight.
    Stray(FinalResult),
    /// The first [`MAX_LINE`] bytes of a line that was too long; the rest was dropped.
    Garbage(String),
    /// This many events were dropped because nobody polled (see [`MAX_QUEUED_EVENTS`]).
    Dropped(usize),
}

/// The command whose response is being collected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    /// The command as written (without `\r`), for echo matching.
    text: String,
    /// Upper-cased command name after `AT`: `+CEREG` for `AT+CEREG?`.
    name: String,
    /// `AT+X=...` (but not `AT+X=?`): set commands never own URC-prefixed lines.
    is_set: bool,
    echo_pending: bool,
}

impl InFlight {
    fn new(text: String) -> Self {
        let rest = text.get(2..).unwrap_or("");
        let name_len = rest.find(['=', '?', ';']).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(name_len);
        let is_set = tail.starts_with('=') && !tail.starts_with("=?");
        Self {
            name: name.to_ascii_uppercase(),
            text,
            is_set,
            echo_pending: true,
        }
    }
}

/// A sans-IO AT command codec for one port. See the module docs for the rules it applies.
#[derive(Debug, Default)]
pub struct AtCodec {
    line: Vec<u8>,
    /// Dropping the tail of an over-long line until its terminator.
    discarding: bool,
    in_flight: Option<InFlight>,
    events: VecDeque<AtEvent>,
    dropped: usize,
}

impl AtCodec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `cmd` as in flight and returns the bytes to write (`AT...\r`). `cmd` may be given
    /// with or without its `AT` prefix; line breaks inside it are removed so one call can never
    /// send two commands. A command already in flight is forgotten (the shell sends one at a time).
    pub fn start_command(&mut self, cmd: &str) -> Vec<u8> {
        let clean: String = cmd.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        let clean = clean.trim();
        let text = if classify::starts_with_ci(clean, "AT") {
            clean.to_string()
        } else {
            format!("AT{clean}")
        };
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\r');
        self.in_flight = Some(InFlight::new(text));
        bytes
    }

    /// Forgets the command in flight (its timeout fired in the shell).
    pub fn cancel_command(&mut self) {
        self.in_flight = None;
    }

    /// The command in flight, as written.
    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.as_ref().map(|c| c.text.as_str())
    }

    /// Drops all state; call when the port is reopened.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Bytes buffered for the current, unfinished line (never more than [`MAX_LINE`]).
    pub fn buffered_len(&self) -> usize {
        self.line.len()
    }

    /// Consumes bytes read from the port. Events become available through [`Self::poll_event`].
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                self.end_line();
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.line.len() >= MAX_LINE {
                let text = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.discarding = true;
                self.push(AtEvent::Garbage(text));
                continue;
            }
            self.line.push(b);
            // The prompt never gets a line ending, so it has to be caught byte by byte.
            if self.in_flight.is_some() && self.line == b"> " {
                self.line.clear();
                self.push(AtEvent::Prompt);
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<AtEvent> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            return Some(AtEvent::Dropped(n));
        }
        None
    }

    fn push(&mut self, event: AtEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.dropped = self.dropped.saturating_add(1);
        } else {
            self.events.push_back(event);
        }
    }

    fn end_line(&mut self) {
        if std::mem::take(&mut self.discarding) {
            self.line.clear();
            return;
        }
        if self.line.is_empty() {
            return;
        }
        let raw = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim();
        if line.is_empty() {
            return;
        }
        let line = line.to_string();
        self.classify(line);
    }

    fn classify(&mut self, line: String) {
        let final_result = classify::final_result(&line);
        let Some(cmd) = self.in_flight.as_mut() else {
            let event = match final_result {
                Some(result) if result.is_response_only() => AtEvent::Stray(result),
                _ => AtEvent::Urc(line),
            };
            self.push(event);
            return;
        };
        if cmd.echo_pending && line.eq_ignore_ascii_case(&cmd.text) {
            cmd.echo_pending = false;
            return;
        }
        if let Some(result) = final_result {
            self.in_flight = None;
            self.push(AtEvent::Final(result));
            return;
        }
        let event = if classify::is_urc(&line, &cmd.name, cmd.is_set) {
            AtEvent::Urc(line)
        } else {
            AtEvent::Info(line)
        };
        self.push(event);
    }
}
