//! `edgeward user …` and `edgeward auth rotate-key` as operators run them: on a stopped box
//! (the CLI opens the store) and on a running one (through the control socket, since the
//! server holds the store's lock), and the socket refusing a user who is neither root nor the
//! service user.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{edgeward_bin, TestConfig, TestServer, BASE_TOML};

/// A config file whose store is `store`.
fn config_for(dir: &Path, store: &Path) -> PathBuf {
    let path = dir.join("cli.toml");
    std::fs::write(&path, TestConfig::new().store(store).to_string()).unwrap();
    path
}

fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(edgeward_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn user_commands_work_on_a_stopped_box() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &dir.path().join("edgeward.redb"));

    let o = cli(
        &config,
        &["user", "add", "kim", "--role", "admin", "--password-stdin"],
        Some("correct horse battery\n"),
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(
        &config,
        &["user", "add", "lee", "--role", "viewer"],
        Some("another long secret\n"),
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&config, &["user", "add", "kim"], Some("again and again\n"));
    assert!(!o.status.success(), "a second kim must be refused");

    let o = cli(&config, &["user", "list"], None);
    assert!(o.status.success(), "{}", out(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listing.contains("kim") && listing.contains("admin"),
        "{listing}"
    );
    assert!(
        listing.contains("lee") && listing.contains("viewer"),
        "{listing}"
    );
    assert!(
        listing.contains("view_all"),
        "the viewer's default permission shows: {listing}"
    );
    assert!(!listing.contains("correct horse"), "{listing}");

    // The last admin stays an admin and stays.
    let o = cli(&config, &["user", "role", "kim", "viewer"], None);
    assert!(
        !o.status.success(),
        "demoting the last admin must fail: {}",
        out(&o)
    );
    let o = cli(&config, &["user", "delete", "kim"], None);
    assert!(
        !o.status.success(),
        "deleting the last admin must fail: {}",
        out(&o)
    );
    let o = cli(&config, &["user", "role", "lee", "operator"], None);
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&config, &["user", "role", "lee", "emperor"], None);
    assert!(out(&o).contains("unknown role"), "{}", out(&o));
    let o = cli(&config, &["user", "delete", "lee"], None);
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(
        &config,
        &["user", "passwd", "kim"],
        Some("a brand new passphrase\n"),
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&config, &["auth", "rotate-key"], None);
    assert!(o.status.success(), "{}", out(&o));

    let o = cli(&config, &["user", "list"], None);
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listing.contains("kim") && !listing.contains("lee"),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_reach_a_running_server_through_its_socket() {
    let server = TestServer::start(&BASE_TOML).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &server.store_path());
    let socket = edgeward::control::socket_path(&server.store_path());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner may open the socket file");

    // The server holds the store's lock: this can only work through the socket.
    let config2 = config.clone();
    let o = tokio::task::spawn_blocking(move || {
        cli(
            &config2,
            &["user", "add", "park", "--role", "developer"],
            Some("a long enough password\n"),
        )
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let user = server
        .app()
        .auth
        .user_by_name("park")
        .expect("the running server knows the new user");
    assert_eq!(user.role.as_str(), "developer");

    // A user who is neither root nor the service user gets in through neither fence: the file
    // mode keeps them out, and with the mode opened the peer-credential check still does.
    let dirmode = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(server.dir.path(), dirmode).unwrap();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\n\
         try:\n    s.sendall(b'{{\"op\":\"user_list\"}}\\n')\nexcept OSError:\n    pass\n\
         print(s.makefile().readline())",
        socket.display().to_string()
    );
    let as_nobody = |script: String| {
        tokio::task::spawn_blocking(move || {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .args(["/usr/bin/python3", "-c", &script])
                .output()
                .unwrap()
        })
    };
    let o = as_nobody(script.clone()).await.unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PermissionError"),
        "mode 0600 keeps nobody out: {}",
        out(&o)
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody(script).await.unwrap();
    let answer = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        answer.contains("\"ok\":false") && answer.contains("uid 65534 may not"),
        "nobody must be refused by peer credentials: {answer} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!answer.contains("park"), "{answer}");
    server.stop().await;
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}
