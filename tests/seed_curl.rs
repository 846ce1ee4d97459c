//! Seed 002's cURL examples, read from the seed itself and run with the real `curl` against a
//! real edgeward (libvirt's test driver on an empty node file), as written — the host is
//! edgeward's, and an `Authorization: Bearer` header is added (the seed's examples predate its
//! own auth). Seed 002's own rule, resources change only while stopped, needs a stop before
//! its update example; the stop is the seed's start example with `stop` for `start`.
#![cfg(feature = "vm")]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SEED: &str = "../shared/seeds/002_2cefc8cfb8d0e552.txt";

/// The shell commands of the seed's "cURL 예제" section, continuation lines joined.
fn seed_examples() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (shared/ must sit beside the repository)",
            path.display()
        )
    });
    let section = text
        .split("### cURL 예제")
        .nth(1)
        .expect("the seed's cURL section")
        .split("\n---")
        .next()
        .expect("the section");
    section
        .split("```bash")
        .skip(1)
        .map(|block| {
            block
                .split("```")
                .next()
                .expect("a closed block")
                .replace("\\\n", " ")
                .trim()
                .to_owned()
        })
        .collect()
}

/// Runs one example against `base` with the token; the status and the JSON body.
fn run(example: &str, base: &str, token: &str) -> (u16, Value) {
    let command = example.replacen(
        "curl ",
        &format!(
            "curl -sS --max-time 120 -w '\\n%{{http_code}}' -H \"Authorization: Bearer {token}\" "
        ),
        1,
    );
    let command = command.replace("http://localhost:8080", base);
    let out = Command::new("bash")
        .args(["-c", &command])
        .output()
        .expect("run bash and curl");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').expect("curl printed the status");
    let json =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {body}"));
    (code.trim().parse().expect("a status code"), json)
}

// curl runs as a blocking child process: the server needs threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_curl_examples_work_as_written() {
    let examples = seed_examples();
    assert_eq!(
        examples.len(),
        4,
        "list, create, start, update: {examples:?}"
    );
    let (list, create, start, update) = (&examples[0], &examples[1], &examples[2], &examples[3]);
    assert!(start.contains(r#""action": "start""#));

    let tmp = tempfile::tempdir().expect("temp dir");
    let node = tmp.path().join("node.xml");
    std::fs::write(
        &node,
        "<node><cpu><mhz>2400</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>\
         <cores>4</cores><threads>1</threads><active>4</active></cpu>\
         <memory>16777216</memory></node>",
    )
    .expect("node file");
    let toml = common::vm::vm_config(
        &format!("test://{}", node.display()),
        &tmp.path().join("images"),
        &[],
    );
    let server = common::TestServer::start(&toml).await;
    let admin = common::accounts::admin(&server).await;
    let base = format!("http://{}", server.addr);
    let token = admin.access.as_str();

    let (status, vms) = run(list, &base, token);
    assert_eq!(status, 200, "{vms}");
    assert_eq!(vms, serde_json::json!([]));

    let (status, vm) = run(create, &base, token);
    assert_eq!(status, 201, "{vm}");
    assert_eq!(vm["id"], 1, "the seed's examples name VM 1");
    assert_eq!(vm["name"], "test-vm");
    assert_eq!(vm["cpu"], 2);
    assert_eq!(vm["memory"], 2048);
    assert_eq!(vm["os_type"], "ubuntu-desktop");
    assert_eq!(vm["status"], "Running");

    let (status, vm) = run(start, &base, token);
    assert_eq!(status, 200, "{vm}");
    assert_eq!(vm["status"], "Running");

    // Seed 002: resources change only while stopped; the update while running is refused...
    let (status, refused) = run(update, &base, token);
    assert_eq!(status, 409, "{refused}");
    // ...so stop first (the seed's start example, action stop), then its update works.
    let stop = start.replace(r#""action": "start""#, r#""action": "stop""#);
    let (status, vm) = run(&stop, &base, token);
    assert_eq!(status, 200, "{vm}");
    assert_eq!(vm["status"], "Stopped");
    let (status, vm) = run(update, &base, token);
    assert_eq!(status, 200, "{vm}");
    assert_eq!(vm["cpu"], 4);
    assert_eq!(vm["memory"], 4096);

    let (status, vms) = run(list, &base, token);
    assert_eq!(status, 200);
    assert_eq!(vms[0]["cpu"], 4);
    assert_eq!(vms[0]["memory"], 4096);
    assert_eq!(vms[0]["status"], "Stopped");
}
