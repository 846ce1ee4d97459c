//! The I/O shell: hands a script to `nft -f -` (one transaction: all of it or none of it),
//! checks one with `nft -c -f -`, and probes what the kernel's bridge family can do.

use std::io::Write;
use std::process::{Command, Stdio};

use super::render::Features;

/// Loads `script` atomically; a refused script leaves the previous ruleset in place.
pub fn load(script: &str) -> Result<(), String> {
    run(&["-f", "-"], script)
}

/// Checks `script` against the kernel without committing anything.
pub fn check(script: &str) -> Result<(), String> {
    run(&["-c", "-f", "-"], script)
}

/// What the bridge family supports here, found with `nft -c` (nothing is loaded).
pub fn probe() -> Features {
    let probe = |stmt: &str| {
        check(&format!(
            "table bridge edgeward_probe {{\n\tchain c {{\n\t\ttype filter hook forward priority 0; policy accept;\n\t\t{stmt}\n\t}}\n}}\n"
        ))
        .is_ok()
    };
    Features {
        conntrack: probe("ct state established,related accept"),
        reject: probe("meta l4proto tcp reject with tcp reset"),
    }
}

fn run(args: &[&str], script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (the nftables package): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
