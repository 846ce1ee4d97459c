//! Seed 003's monitoring API and live server status against libvirt's test driver (a node file
//! of our own, `tests/common/vm.rs`): the metrics sampler at `[vm] sample_every = "1s"`, the
//! Grafana shapes exactly as the seed shows them, 400s naming the parameter, who sees which
//! server, a stopped VM's history; and `/api/servers/status/stream` read by a real HTTP client
//! frame by frame: the state on connect, a change made through the API, the keep-alive comment,
//! visibility, and the stream ending when the server stops.
#![cfg(feature = "vm")]

mod common;

use std::time::{Duration, Instant};

use common::accounts::{create_user, session_login, USER_PASSWORD};
use common::sse::Sse;
use common::vm::{self, VmBox};
use common::{request, text, Reply};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> VmBox {
    vm::start(&[("vm", "sample_every", text("1s"))]).await
}

fn cookie(session: &str) -> String {
    format!("session={session}")
}

async fn get(b: &VmBox, session: &str, path: &str) -> Reply {
    let c = cookie(session);
    request(b.server.addr, Method::GET, path, &[("cookie", &c)], None).await
}

/// The seed's error envelope with this code; its message.
fn envelope(r: &Reply, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    let keys: Vec<&str> = j
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["success", "error", "code"], "{j}");
    assert_eq!(j["success"], false);
    assert_eq!(j["code"], code, "{j}");
    j["error"].as_str().expect("a string").to_owned()
}

/// `values` of the one frame, checked to be the seed's exact nesting.
fn frame_values(r: &Reply) -> Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let keys: Vec<&str> = j
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["success", "data"], "{j}");
    assert_eq!(j["success"], true);
    let data = j["data"].as_object().expect("an object");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["results"]);
    let results = data["results"].as_array().expect("an array");
    assert_eq!(results.len(), 1);
    let frames = results[0].as_object().expect("an object");
    assert_eq!(frames.keys().collect::<Vec<_>>(), ["frames"]);
    let frames = frames["frames"].as_array().expect("an array");
    assert_eq!(frames.len(), 1);
    let frame = frames[0].as_object().expect("an object");
    assert_eq!(frame.keys().collect::<Vec<_>>(), ["data"]);
    let fd = frame["data"].as_object().expect("an object");
    assert_eq!(fd.keys().collect::<Vec<_>>(), ["values"]);
    let values = fd["values"].as_array().expect("an array").clone();
    // Timestamps: ISO-8601 UTC with Z, never going back; every column as long as the times.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = values[0]
        .as_array()
        .expect("an array")
        .iter()
        .map(|t| {
            let t = t.as_str().expect("a timestamp string");
            assert!(t.ends_with('Z') && t.len() == 20, "{t}");
            chrono::DateTime::parse_from_rfc3339(t).expect("ISO-8601")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for col in &values[1..] {
        let col = col.as_array().expect("an array");
        assert_eq!(col.len(), times.len());
        assert!(
            col.iter().all(|v| v.as_f64().is_some_and(|v| v >= 0.0)),
            "{col:?}"
        );
    }
    values
}

/// Waits until the sampler has at least `n` CPU points of `vm` (samples every second).
async fn wait_for_points(b: &VmBox, session: &str, vm: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(
            b,
            session,
            &format!("/api/metrics/grafana/vm/{vm}?metric=cpu&time_range=5m"),
        )
        .await;
        let values = frame_values(&r);
        if values[0].as_array().expect("an array").len() >= n {
            return values;
        }
        assert!(Instant::now() < deadline, "no {n} points of {vm} in 15 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn column(values: &[Value], i: usize) -> Vec<f64> {
    values[i]
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

#[tokio::test]
async fn the_seeds_shapes_from_real_samples() {
    let b = start().await;
    let alice = session_login(&b.server, "alice", USER_PASSWORD).await;
    let running = b.running.name.clone();

    let values = wait_for_points(&b, &alice, &running, 2).await;
    assert_eq!(values.len(), 2, "time and one CPU column");
    // The test driver's CPU time advances ~1 s per second on 2 vCPUs: 50 % of the VM.
    for cpu in column(&values, 1) {
        assert!((40.0..=60.0).contains(&cpu), "cpu {cpu}");
    }

    // Memory from the balloon, disk and network as two columns of byte rates each.
    let q =
        |m: &str, r: &str| format!("/api/metrics/grafana/vm/{running}?metric={m}&time_range={r}");
    let mem = frame_values(&get(&b, &alice, &q("memory", "1h")).await);
    assert_eq!(mem.len(), 2);
    assert!(!column(&mem, 1).is_empty());
    assert!(column(&mem, 1).iter().all(|m| *m <= 100.0), "{mem:?}");
    for metric in ["disk", "network"] {
        let v = frame_values(&get(&b, &alice, &q(metric, "5m")).await);
        assert_eq!(v.len(), 3, "{metric}: time, then two columns");
        assert!(
            !v[0].as_array().expect("an array").is_empty(),
            "{metric}: {v:?}"
        );
    }
    // Beyond an hour: 5-minute averages; the bucket still filling already shows.
    for range in ["6h", "24h", "7d"] {
        let v = frame_values(&get(&b, &alice, &q("cpu", range)).await);
        let avg = column(&v, 1);
        assert_eq!(avg.len(), 1, "{range}: {v:?}");
        assert!((40.0..=60.0).contains(&avg[0]), "{range}: {avg:?}");
    }
    // Defaults: cpu over 1 h.
    let d = frame_values(&get(&b, &alice, &format!("/api/metrics/grafana/vm/{running}")).await);
    assert_eq!(d.len(), 2);
    assert!(d[0].as_array().expect("an array").len() >= 2);

    // The overview: alice's two servers, in the seed's keys.
    let r = get(&b, &alice, "/api/metrics/grafana/overview").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    let rows = j["overview"].as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{j}");
    for row in rows {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["vm_name", "role", "status", "cpu_percent", "memory_percent"]
        );
        assert!(
            row["cpu_percent"].is_f64() && row["memory_percent"].is_f64(),
            "{row}"
        );
    }
    let row = |name: &str| rows.iter().find(|r| r["vm_name"] == name).unwrap().clone();
    let on = row(&running);
    assert_eq!(on["status"], "running");
    assert!(
        (40.0..=60.0).contains(&on["cpu_percent"].as_f64().expect("a number")),
        "{on}"
    );
    let off = row(&b.stopped.name);
    assert_eq!(off["status"], "stopped");
    assert_eq!(
        (off["cpu_percent"].as_f64(), off["memory_percent"].as_f64()),
        (Some(0.0), Some(0.0))
    );
    // A server that never ran has no history: the frame is there, empty.
    let never = frame_values(
        &get(
            &b,
            &alice,
            &format!("/api/metrics/grafana/vm/{}", b.stopped.name),
        )
        .await,
    );
    assert_eq!(never, [json!([]), json!([])]);
    b.server.stop().await;
}

#[tokio::test]
async fn bad_parameters_visibility_and_a_stopped_vm() {
    let b = start().await;
    let alice = session_login(&b.server, "alice", USER_PASSWORD).await;
    let bob = session_login(&b.server, "bob", USER_PASSWORD).await;
    let base = format!("/api/metrics/grafana/vm/{}", b.running.name);

    for (query, param) in [
        ("metric=gpu", "metric"),
        ("metric=", "metric"),
        ("metric=CPU", "metric"),
        ("time_range=2h", "time_range"),
        ("metric=cpu&time_range=1y", "time_range"),
    ] {
        let r = get(&b, &alice, &format!("{base}?{query}")).await;
        let msg = envelope(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert!(msg.starts_with(param), "{query}: {msg}");
    }
    // Someone else's server is exactly as unknown as one that does not exist.
    let theirs = get(
        &b,
        &alice,
        &format!("/api/metrics/grafana/vm/{}", b.bobs.name),
    )
    .await;
    envelope(&theirs, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let none = get(&b, &alice, "/api/metrics/grafana/vm/no-such-server").await;
    envelope(&none, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    let anon = request(
        b.server.addr,
        Method::GET,
        "/api/metrics/grafana/overview",
        &[],
        None,
    )
    .await;
    envelope(&anon, StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED");

    // Bob sees his own server only; an admin and a view_all holder see all three.
    let names = |r: &Reply| -> Vec<String> {
        let mut n: Vec<String> = r.json()["overview"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["vm_name"].as_str().expect("a string").to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&get(&b, &bob, "/api/metrics/grafana/overview").await),
        std::slice::from_ref(&b.bobs.name)
    );
    create_user(&b.server, &b.admin, "vic", "viewer").await;
    let vic = session_login(&b.server, "vic", USER_PASSWORD).await;
    let admin = session_login(&b.server, "admin", common::accounts::ADMIN_PASSWORD).await;
    let mut all = vec![
        b.running.name.clone(),
        b.stopped.name.clone(),
        b.bobs.name.clone(),
    ];
    all.sort();
    assert_eq!(
        names(&get(&b, &vic, "/api/metrics/grafana/overview").await),
        all
    );
    assert_eq!(
        names(&get(&b, &admin, "/api/metrics/grafana/overview").await),
        all
    );
    let bobs = get(
        &b,
        &vic,
        &format!("/api/metrics/grafana/vm/{}", b.bobs.name),
    )
    .await;
    frame_values(&bobs);

    // A stopped VM keeps its history and gets no new points.
    wait_for_points(&b, &alice, &b.running.name, 2).await;
    let r = common::accounts::call(
        &b.server,
        Method::POST,
        &format!("/api/vms/{}/action", b.running.id),
        &b.alice.bearer(),
        Some(r#"{"action":"stop"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let q = format!("{base}?metric=cpu&time_range=5m");
    let before = frame_values(&get(&b, &alice, &q).await)[0]
        .as_array()
        .unwrap()
        .len();
    assert!(before >= 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = frame_values(&get(&b, &alice, &q).await)[0]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "no points while stopped, the old ones kept");
    let r = get(&b, &alice, "/api/metrics/grafana/overview").await;
    let row = r.json()["overview"]
        .as_array()
        .expect("an array")
        .iter()
        .find(|r| r["vm_name"] == b.running.name.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "stopped");
    assert_eq!(row["cpu_percent"], 0.0);
    b.server.stop().await;
}

async fn action(b: &VmBox, who: &common::accounts::Limen, id: u64, what: &str) {
    let r = common::accounts::call(
        &b.server,
        Method::POST,
        &format!("/api/vms/{id}/action"),
        &who.bearer(),
        Some(&json!({ "action": what }).to_string()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
}

#[tokio::test]
async fn the_status_stream_snapshot_changes_keepalive_visibility() {
    let b = start().await;
    let alice = session_login(&b.server, "alice", USER_PASSWORD).await;
    let admin = session_login(&b.server, "admin", common::accounts::ADMIN_PASSWORD).await;
    let (head, mut hers) =
        Sse::open(b.server.addr, "/api/servers/status/stream", &cookie(&alice)).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "text/event-stream");
    assert_eq!(head.headers["cache-control"], "no-cache");
    let (_, mut all) =
        Sse::open(b.server.addr, "/api/servers/status/stream", &cookie(&admin)).await;

    // On connect: one snapshot per server she may see (her two), nothing of bob's.
    let wait = Duration::from_secs(5);
    let mut first = vec![hers.event(wait).await, hers.event(wait).await];
    first.sort_by_key(|e| e["name"].as_str().expect("a string").to_owned());
    let mut want = vec![
        json!({"name": b.running.name, "vmid": first.iter().find(|e| e["name"] == b.running.name.as_str()).unwrap()["vmid"], "status": "running", "event": "snapshot"}),
        json!({"name": b.stopped.name, "vmid": first.iter().find(|e| e["name"] == b.stopped.name.as_str()).unwrap()["vmid"], "status": "stopped", "event": "snapshot"}),
    ];
    want.sort_by_key(|e| e["name"].as_str().expect("a string").to_owned());
    assert_eq!(first, want);
    assert!(first
        .iter()
        .all(|e| e["vmid"].as_u64().is_some_and(|v| v >= 100)));
    let mut admins: Vec<String> = Vec::new();
    for _ in 0..3 {
        let e = all.event(wait).await;
        assert_eq!(e["event"], "snapshot");
        admins.push(e["name"].as_str().expect("a string").to_owned());
    }
    admins.sort();
    let mut names = vec![
        b.running.name.clone(),
        b.stopped.name.clone(),
        b.bobs.name.clone(),
    ];
    names.sort();
    assert_eq!(admins, names);

    // Nothing happens: a keep-alive comment (1 s in tests).
    assert_eq!(
        hers.next(Duration::from_secs(3)).await.unwrap(),
        ": keepalive"
    );

    // Bob stops his server: the admin hears of it, alice does not.
    action(&b, &b.bob, b.bobs.id, "stop").await;
    let e = all.event(wait).await;
    assert_eq!(
        (
            e["name"].as_str().expect("a string"),
            &e["status"],
            &e["event"]
        ),
        (b.bobs.name.as_str(), &json!("stopped"), &json!("stopped"))
    );
    // Alice starts her stopped one: that is the next thing she hears (bob's stop was not).
    action(&b, &b.alice, b.stopped.id, "start").await;
    let e = hers.event(wait).await;
    assert_eq!(
        (
            e["name"].as_str().expect("a string"),
            &e["status"],
            &e["event"]
        ),
        (
            b.stopped.name.as_str(),
            &json!("running"),
            &json!("started")
        )
    );

    // The stream ends when the server stops, without holding up its shutdown.
    let stopping = Instant::now();
    b.server.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    loop {
        match hers.next(Duration::from_secs(5)).await {
            None => break,
            Some(m) => assert!(m.starts_with("data: ") || m == ": keepalive", "{m}"),
        }
    }
}
