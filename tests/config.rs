//! `edgeward check-config` against hostile and sloppy files, through the real binary: every
//! problem at once with its key, ranges that keep the server alive, pools that make sense, and
//! one duration grammar shared with modem profiles.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::edgeward_bin;

const HEAD: &str = "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n";

struct Checked {
    ok: bool,
    stderr: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

fn check(toml: &str, env: &[(&str, &str)]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgeward.toml");
    std::fs::write(&file, toml).unwrap();
    let out = check_file(&file, env);
    Checked {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
        _dir: dir,
    }
}

fn check_file(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(edgeward_bin());
    cmd.args(["check-config", "--config", file.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The dotted keys the report names, one per `  - key: message` line.
fn named_keys(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .filter_map(|l| l.split_once(": ").map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn a_toggle_timeout_that_would_crash_the_server_is_refused() {
    let c = check(
        &format!("{HEAD}[dongle]\ntoggle_timeout = \"300000000000y\"\n"),
        &[],
    );
    assert!(!c.ok, "accepted: {}", c.stderr);
    assert!(c.stderr.contains("dongle.toggle_timeout"), "{}", c.stderr);
    assert!(c.stderr.contains("between 10s and 1h"), "{}", c.stderr);
}

#[test]
fn four_unknown_keys_are_four_problems() {
    let c = check(
        &format!(
            "{HEAD}listen_prot = 1\n[vpn]\nidle_relase = \"5m\"\n[store]\npaht = \"/x\"\n\
             [[modem]]\nnumber = 17\nport = \"/dev/a\"\nprofile = \"quectel\"\nnetdev = \"w17\"\n\
             [[modem]]\nnumber = 18\nport = \"/dev/b\"\nprofile = \"quectel\"\nnetdev = \"w18\"\n\
             [[modem]]\nnumber = 19\nport = \"/dev/c\"\nprofile = \"quectel\"\nnetdev = \"w19\"\nfoo = 1\n"
        ),
        &[],
    );
    assert!(!c.ok);
    let mut keys = named_keys(&c.stderr);
    keys.sort();
    assert_eq!(
        keys,
        [
            "modem[2].foo",
            "store.paht",
            "vpn.idle_relase",
            "wireguard.listen_prot"
        ],
        "{}",
        c.stderr
    );
    assert!(c.stderr.contains("4 problems"), "{}", c.stderr);
    assert!(
        c.stderr.contains(&*c.file.to_string_lossy()),
        "{}",
        c.stderr
    );
}

#[test]
fn a_type_error_does_not_hide_the_other_problems() {
    let c = check(
        "[api]\nlisten = [\"127.0.0.1:0\"]\nmax_connections = 0\n\
             [wireguard]\nendpoint_host = \"203.0.113.10\"\nlisten_port = \"fifty\"\npersistent_keepalive = 99999\n\
             [vpn]\nidle_release = \"0s\"\n[[vpn.pool]]\nsubnet = \"10.9.0.0/29\"\nkeys = 9\n\
             [dongle]\nmax_parallel_toggles = \"four\"\nheartbeat_timeout = \"1y\"\n\
             [auth]\nadmin_password = \"short\"\nextra = 1\n",
        &[("EDGEWARD_STORE__PATH", "[1, 2]")],
    );
    assert!(!c.ok);
    let mut keys = named_keys(&c.stderr);
    keys.sort();
    assert_eq!(
        keys,
        [
            "api.max_connections",
            "auth.admin_password",
            "auth.extra",
            "dongle.heartbeat_timeout",
            "dongle.max_parallel_toggles",
            "store.path",
            "vpn.idle_release",
            "vpn.pool[0].keys",
            "wireguard.listen_port",
            "wireguard.persistent_keepalive",
        ],
        "{}",
        c.stderr
    );
    // A value from the environment says which variable to fix.
    let store = c.stderr.lines().find(|l| l.contains("store.path")).unwrap();
    assert!(
        store.ends_with("(from environment variable EDGEWARD_STORE__PATH)"),
        "{store}"
    );
    // And one from the file says which file.
    let port = c
        .stderr
        .lines()
        .find(|l| l.contains("wireguard.listen_port"))
        .unwrap();
    assert!(
        port.ends_with(&format!("(in {})", c.file.display())),
        "{port}"
    );
}

#[test]
fn pools_that_make_no_sense_are_refused_with_the_key_named() {
    for (subnet, why) in [
        ("10.8.0.0/31", "too small"),
        ("10.8.0.7/32", "too small"),
        ("0.0.0.0/0", "every IPv4 address"),
        ("127.0.0.0/24", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("169.254.0.0/24", "link-local"),
        ("10.9.0.0/25", "overlaps vpn.pool[0]"),
        (
            "10.8.17.0/24",
            "10.8.17.0/24 overlaps the subnet of dongle 17 ([[modem]] number = 17",
        ),
    ] {
        let c = check(
            &format!(
                "{HEAD}[[vpn.pool]]\nsubnet = \"10.9.0.0/24\"\nkeys = 1\n\
                 [[vpn.pool]]\nsubnet = \"{subnet}\"\nkeys = 1\n\
                 [[modem]]\nnumber = 17\nport = \"/dev/a\"\nprofile = \"generic\"\nnetdev = \"w17\"\n"
            ),
            &[],
        );
        assert!(!c.ok, "{subnet} accepted");
        assert_eq!(
            named_keys(&c.stderr),
            ["vpn.pool[1].subnet"],
            "{subnet}: {}",
            c.stderr
        );
        assert!(c.stderr.contains(why), "{subnet}: {}", c.stderr);
    }
}

#[test]
fn profile_durations_accept_a_bare_number_like_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let generic = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/modems/generic.toml"
    ))
    .unwrap();
    let profile = dir.path().join("mine.toml");
    let text = generic.replace("timeout = \"150s\"", "timeout = 150");
    assert_ne!(text, generic);
    std::fs::write(&profile, text).unwrap();
    let c = check(
        &format!(
            "{HEAD}[dongle]\ntoggle_timeout = 600\n[[modem]]\nnumber = 17\nport = \"/dev/a\"\nprofile = \"{}\"\nnetdev = \"w17\"\n",
            profile.display()
        ),
        &[],
    );
    assert!(c.ok, "{}", c.stderr);
}

#[test]
fn environment_overrides_are_range_checked_too() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgeward.toml");
    let out = check_file(
        Path::new(path),
        &[
            ("EDGEWARD_DONGLE__TOGGLE_TIMEOUT", "300000000000y"),
            ("EDGEWARD_VPN__IDLE_RELEASE", "45"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(named_keys(&err), ["dongle.toggle_timeout"], "{err}");
}

// --- HiLink sticks (issue 9) ---

#[test]
fn check_config_takes_a_hilink_stick_without_a_port_and_names_every_misused_key() {
    let good = check(
        &format!(
            "{HEAD}[[modem]]\nnumber = 18\nprofile = \"hilink\"\nnetdev = \"enx0c5b8f279a64\"\nhilink_password = \"hunter2\"\n"
        ),
        &[],
    );
    assert!(good.ok, "refused: {}", good.stderr);
    assert!(!good.stderr.contains("hunter2"), "{}", good.stderr);
    let bad = check(
        &format!(
            "{HEAD}[[modem]]\nnumber = 18\nprofile = \"hilink\"\nnetdev = \"e1\"\nport = \"/dev/ttyUSB0\"\nhilink_url = \"192.168.8.1\"\n\
             [[modem]]\nnumber = 19\nport = \"/dev/a\"\nprofile = \"quectel\"\nnetdev = \"w\"\nhilink_username = \"admin\"\n"
        ),
        &[],
    );
    assert!(!bad.ok);
    assert_eq!(
        named_keys(&bad.stderr),
        [
            "modem[0].port",
            "modem[0].hilink_url",
            "modem[1].hilink_username"
        ],
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("no AT port"), "{}", bad.stderr);
    assert!(bad.stderr.contains("http://192.168.8.1"), "{}", bad.stderr);
}
// --- end HiLink ---

#[test]
fn the_admin_password_comes_from_the_environment_too() {
    let c = check(HEAD, &[("EDGEWARD_AUTH__ADMIN_PASSWORD", "short")]);
    assert!(!c.ok, "accepted: {}", c.stderr);
    let line = c
        .stderr
        .lines()
        .find(|l| l.contains("auth.admin_password"))
        .unwrap_or_else(|| panic!("{}", c.stderr));
    assert!(line.contains("at least 8 characters"), "{line}");
    let c = check(
        HEAD,
        &[("EDGEWARD_AUTH__ADMIN_PASSWORD", "a long enough one")],
    );
    assert!(c.ok, "{}", c.stderr);
    let c = check(
        &format!("{HEAD}[auth]\nrefresh_grace = \"2m\"\n"),
        &[("EDGEWARD_AUTH__LOCKOUT_AFTER", "0")],
    );
    let mut keys = named_keys(&c.stderr);
    keys.sort();
    assert_eq!(
        keys,
        ["auth.lockout_after", "auth.refresh_grace"],
        "{}",
        c.stderr
    );
}
