//! The AT codec takes whatever a modem (or a broken cable) sends: it must never panic, never
//! grow without bound, and keep working for the next command.
#![no_main]

use edgeward::modem::at::{AtCodec, AtEvent};
use libfuzzer_sys::fuzz_target;

const COMMANDS: [&str; 6] = ["AT+CEREG?", "AT+CSQ", "ATI", "AT+CGPADDR=1", "AT+CFUN=1,1", "AT+CMGS=\"1\""];

fuzz_target!(|data: &[u8]| {
    let mut codec = AtCodec::new();
    // The first byte of every chunk steers: start a command, cancel, or feed the next bytes.
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let len = usize::from(op % 64).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        match op >> 6 {
            0 => {
                let _ = codec.start_command(COMMANDS[usize::from(op) % COMMANDS.len()]);
            }
            1 => codec.cancel_command(),
            _ => codec.feed(chunk),
        }
        while let Some(event) = codec.poll_event() {
            if let AtEvent::Info(line) | AtEvent::Urc(line) | AtEvent::Garbage(line) = event {
                assert!(line.len() <= 4 * 4096, "a line grew past the bound");
            }
        }
        assert!(codec.buffered_len() <= 2 * 4096, "the buffer grew past the bound");
        rest = after;
    }
});
