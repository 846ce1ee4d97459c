//! The `edgeward` command as operators use it: check-config, serve with SIGTERM, demo,
//! --version, environment overrides.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{edgeward_bin, free_port, request, wait_until_serving};
use hyper::{Method, StatusCode};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(edgeward_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn version_is_printed() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("edgeward {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgeward.toml");
    let o = run(&["check-config", "--config", path], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK"));
}

#[test]
fn check_config_warns_when_the_port_is_not_55555() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongles.toml");
    std::fs::write(
        &path,
        "[wireguard]\nendpoint_host = \"203.0.113.10\"\nlisten_port = 51820\n[[modem]]\nnumber = 17\nport = \"/dev/ttyUSB2\"\nprofile = \"quectel\"\nnetdev = \"wwan0\"\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: wireguard.listen_port is 51820, not 55555"),
        "{out}"
    );
}

#[test]
fn check_config_names_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[api]\nmax_connections = 0\n[wireguard]\nendpoint_host = \"203.0.113.10\"\n[vpn]\nidle_release = \"0s\"\n[[vpn.pool]]\nsubnet = \"10.8.0.0/29\"\nkeys = 9\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for key in [
        "api.max_connections",
        "vpn.idle_release",
        "vpn.pool[0].keys",
    ] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }

    std::fs::write(
        &path,
        "[wireguard]\nendpoint_host = \"h\"\nlisten_prot = 5\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("wireguard.listen_prot"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&*path.to_string_lossy()),
        "{}",
        stderr(&o)
    );

    let o = run(
        &["check-config", "--config", "/nonexistent/edgeward.toml"],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn environment_overrides_the_file_and_is_checked_too() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgeward.toml");
    let o = run(
        &["check-config", "--config", path],
        &[("EDGEWARD_WIREGUARD__LISTEN_PORT", "not-a-port")],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("wireguard.listen_port"), "{err}");
    assert!(err.contains("environment"), "{err}");
    let o = run(
        &["check-config", "--config", path],
        &[
            ("EDGEWARD_VPN__IDLE_RELEASE", "5m"),
            ("EDGEWARD_LOG", "debug"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &["check-config", "--config", path],
        &[("EDGEWARD_VPN__NO_SUCH_KEY", "1")],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("vpn.no_such_key"), "{}", stderr(&o));
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm_and_uses_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("edgeward.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\nlisten_port = 0\n",
            dir.path().join("state/edgeward.redb").display()
        ),
    )
    .unwrap();
    let child = Command::new(edgeward_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("EDGEWARD_API__LISTEN", format!("[\"{addr}\"]"))
        .env("EDGEWARD_WIREGUARD__ENDPOINT_HOST", "198.51.100.77")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_serving(addr, Duration::from_secs(10)).await;
    let list = request(addr, Method::GET, "/vpn_api/list", &[], None).await;
    assert_eq!(list.json()["servers"][0], "198.51.100.77");
    // The store file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("state/edgeward.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    let log = stderr(&out);
    assert!(log.contains("ready in"), "{log}");
    assert!(log.contains("edgeward stopped"), "{log}");
    // Private keys never reach the log.
    let store_dump = std::fs::read(dir.path().join("state/edgeward.redb")).unwrap();
    assert!(!store_dump.is_empty());
    assert!(!log.contains("PrivateKey"), "{log}");
}

#[tokio::test]
async fn serve_refuses_a_store_already_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("edgeward.redb");
    let _held = edgeward::store::Store::open(&store).unwrap();
    let config = dir.path().join("edgeward.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = [\"127.0.0.1:0\"]\n[store]\npath = \"{}\"\n[wireguard]\nendpoint_host = \"h\"\ntun = \"\"\nlisten_port = 0\n",
            store.display()
        ),
    )
    .unwrap();
    let o = run(&["serve", "--config", config.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&*store.to_string_lossy()),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn demo_serves_without_hardware_or_root_and_prints_what_to_try() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(edgeward_bin())
        .args(["demo", "--listen", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_serving(addr, Duration::from_secs(10)).await;
    let r = request(addr, Method::GET, "/vpn_api/allocate", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let banner = String::from_utf8_lossy(&out.stdout);
    assert!(
        banner.contains(&format!("curl http://{addr}/vpn_api/allocate")),
        "{banner}"
    );
}

/// Runs `serve` with a store at `store`; returns its exit status and log, or fails the test if
/// it is still serving after 10 s (it should have refused the store at once).
fn serve_briefly(dir: &std::path::Path, store: &std::path::Path) -> (bool, String) {
    let config = dir.join("edgeward.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = [\"127.0.0.1:0\"]\n[store]\npath = \"{}\"\n[wireguard]\nendpoint_host = \"h\"\ntun = \"\"\nlisten_port = 0\n",
            store.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(edgeward_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("serve used the store as found: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), stderr(&out))
}

#[test]
fn serve_refuses_a_store_directory_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, log) = serve_briefly(dir.path(), &state.join("edgeward.redb"));
    assert!(!ok, "{log}");
    assert!(log.contains(&*state.to_string_lossy()), "{log}");
    assert!(log.contains("writable by group or others"), "{log}");
    assert!(log.contains("chmod go-w"), "{log}");
}

#[test]
fn serve_refuses_a_symlinked_store() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.redb");
    drop(edgeward::store::Store::open(&real).unwrap());
    let link = dir.path().join("edgeward.redb");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (ok, log) = serve_briefly(dir.path(), &link);
    assert!(!ok, "{log}");
    assert!(log.contains(&*link.to_string_lossy()), "{log}");
    assert!(log.contains("symbolic link"), "{log}");
}
