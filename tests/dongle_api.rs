//! Seed 001 §1–3 (dongle leases) against the real server: real redb, the real modem actors on
//! PTYs served by the modem simulator, and a manual clock for heartbeat time. Every message of
//! the seed, renewal, heartbeat expiry (and what does not count), release reports stored and
//! returned by the history view, races for the last dongle, restarts, and the operator views.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::{request, TestConfig, TestServer};
use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

const SCALE: f64 = 0.05;

const SEED_REPORT: &str = r#"{
  "agent_id": "U22-01-01",
  "session_duration_ms": 20894000,
  "toggle_count": 416,
  "toggle_reasons": {"BLOCKED": 0, "PREVENTIVE": 409, "NO_WORK": 0, "IP_CHECK_FAILED": 7, "MANUAL": 0},
  "connect_attempts": 432,
  "connect_successes": 416,
  "avg_connect_time_ms": 3029,
  "release_reason": "세션 종료"
}"#;

struct Rig {
    server: TestServer,
    sims: Vec<(u8, SimModem)>,
    _dir: tempfile::TempDir,
}

fn sim_config(seed: u64) -> SimConfig {
    SimConfig {
        profile: "quectel".to_owned(),
        echo: true,
        line_ending: LineEnding::CrLf,
        initial_ip: Ipv4Addr::new(100, 64, 0, (seed % 200) as u8 + 1),
        registration_delay: Duration::from_millis(30),
        reply_delay: Duration::from_millis(1),
        reset_downtime: Duration::from_millis(300),
        urc_noise: false,
        seed,
    }
}

impl Rig {
    async fn new(numbers: &[u8]) -> Self {
        Self::with(numbers, |c| c).await
    }

    async fn with(numbers: &[u8], tweak: impl FnOnce(TestConfig) -> TestConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TestConfig::new();
        let mut sims = Vec::new();
        for &n in numbers {
            let path = dir.path().join(format!("tty-dongle{n}"));
            sims.push((n, SimModem::start(&path, sim_config(u64::from(n))).unwrap()));
            config = config.modem(
                u32::from(n),
                &path,
                "quectel",
                &format!("wwan{n}"),
                &[("apn", common::text("internet"))],
            );
        }
        let server = TestServer::start_scaled(&tweak(config).to_string(), SCALE).await;
        let rig = Self {
            server,
            sims,
            _dir: dir,
        };
        for &n in numbers {
            rig.healthy(n, true).await;
        }
        rig
    }

    fn sim(&self, n: u8) -> &SimModem {
        &self.sims.iter().find(|(m, _)| *m == n).unwrap().1
    }

    async fn dongles(&self) -> Vec<Value> {
        let r = self.server.get("/api/dongles").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["dongles"].as_array().unwrap().clone()
    }

    async fn dongle(&self, n: u8) -> Value {
        self.dongles()
            .await
            .into_iter()
            .find(|d| d["dongle"] == n)
            .unwrap()
    }

    /// Waits until `/api/dongles` says dongle `n` is (or is not) healthy.
    async fn healthy(&self, n: u8, want: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let d = self.dongle(n).await;
            if d["healthy"] == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dongle {n} never became healthy={want}: {d}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn allocate(&self, agent: &str) -> common::Reply {
        self.server
            .post_json(
                "/dongle/allocate",
                &json!({ "agent_id": agent }).to_string(),
            )
            .await
    }

    /// Allocates for `agent`, which must succeed; returns the `dongle` object.
    async fn lease(&self, agent: &str) -> Value {
        let r = self.allocate(agent).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["dongle"].clone()
    }

    async fn post(&self, path: &str, body: &[u8]) -> common::Reply {
        request(
            self.server.addr,
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Some(body.to_vec()),
        )
        .await
    }

    async fn sessions(&self, query: &str) -> Value {
        let r = self
            .server
            .get(&format!("/api/dongles/sessions{query}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    /// Waits (real time) until the sweeper has ended lease `id`.
    async fn wait_ended(&self, id: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.sessions("").await;
            let found = s["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == id)
                .cloned();
            if let Some(x) = found.filter(|x| x["live"] == false) {
                return x;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lease {id} never ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the data plane has `want` peers (`/metrics`, refreshed on the plane's tick).
    async fn peers(&self, want: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.server.get("/metrics").await.text();
            let now: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("edgeward_wg_peers "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the data plane has {now} peers, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn allocate_answers_the_seed_shape_with_the_config_and_port() {
    let rig = Rig::new(&[17]).await;
    let r = rig.allocate("U22-01-01").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["renewed"], false);
    let d = &v["dongle"];
    assert!(d["id"].is_u64());
    assert_eq!(d["dongle"], 17);
    assert_eq!(d["server_ip"], "203.0.113.10");
    let exit_key = rig.dongle(17).await["exit_public_key"].clone();
    assert_eq!(d["public_key"], exit_key, "the dongle exit's server key");
    assert_ne!(d["private_key"], d["public_key"]);
    let port = rig.server.app().wg.port();
    assert_eq!(d["server_port"], port);
    let expected = format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.8.17.0/24\n\n[Peer]\nPublicKey = {}\nEndpoint = 203.0.113.10:{port}\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n",
        d["private_key"].as_str().unwrap(),
        d["public_key"].as_str().unwrap()
    );
    assert_eq!(d["config"], expected.as_str());
    // The key order of the seed's object.
    let text = r.text();
    let order: Vec<usize> = [
        "\"id\"",
        "\"server_ip\"",
        "\"dongle\":17",
        "\"private_key\"",
        "\"public_key\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // The lease is a data-plane peer on the dongle's exit.
    rig.peers(1).await;
    rig.server.stop().await;
}

#[tokio::test]
async fn renew_returns_the_same_lease_and_keys() {
    let rig = Rig::new(&[17, 18]).await;
    let first = rig.lease("A").await;
    let r = rig.allocate("A").await;
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["renewed"], true);
    assert_eq!(v["dongle"], first);
    rig.peers(1).await;
    rig.server.stop().await;
}

#[tokio::test]
async fn no_free_dongle_is_503_with_the_seed_message() {
    let rig = Rig::new(&[17]).await;
    rig.lease("A").await;
    let r = rig.allocate("B").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"success": false, "message": "No available dongle"})
    );
    rig.server.stop().await;
}

#[tokio::test]
async fn heartbeat_get_and_post_and_404_for_unknown_or_ended() {
    let rig = Rig::new(&[17]).await;
    let id = rig.lease("A").await["id"].as_u64().unwrap();
    let ok = json!({"success": true, "message": "Heartbeat received"});
    let r = rig.server.get(&format!("/dongle/heartbeat/{id}")).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, ok.to_string()));
    let r = rig
        .post(&format!("/dongle/heartbeat/{id}"), b"whatever")
        .await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, ok.clone()));
    let gone = json!({"success": false, "message": "Dongle not found"});
    let r = rig
        .server
        .get(&format!("/dongle/heartbeat/{}", id + 1000))
        .await;
    assert_eq!((r.status, r.json()), (StatusCode::NOT_FOUND, gone.clone()));
    rig.server.get(&format!("/dongle/release/{id}")).await;
    let r = rig.server.get(&format!("/dongle/heartbeat/{id}")).await;
    assert_eq!((r.status, r.json()), (StatusCode::NOT_FOUND, gone));
    rig.server.stop().await;
}

#[tokio::test]
async fn release_with_the_seed_body_is_stored_and_returned_by_sessions() {
    let rig = Rig::new(&[17]).await;
    let id = rig.lease("U22-01-01").await["id"].as_u64().unwrap();
    // the seed's example claims a 5.8 h session: let that much time pass
    rig.server.clock.advance(Duration::from_secs(6 * 3600));
    rig.server.get(&format!("/dongle/heartbeat/{id}")).await;
    let r = rig
        .post(&format!("/dongle/release/{id}"), SEED_REPORT.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text(),
        r#"{"success":true,"message":"Dongle released successfully"}"#
    );
    rig.peers(0).await;
    let again = rig.post(&format!("/dongle/release/{id}"), b"{}").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        again.json(),
        json!({"success": false, "message": "Dongle not found or already released"})
    );
    let s = rig.sessions("?agent_id=U22-01-01").await;
    let session = &s["sessions"][0];
    assert_eq!(session["id"], id);
    assert_eq!(session["live"], false);
    assert_eq!(session["end_reason"], "released");
    assert_eq!(session["report_raw"], SEED_REPORT, "kept verbatim");
    assert_eq!(session["report"]["toggle_reasons"]["PREVENTIVE"], 409);
    assert_eq!(session["report_invalid"], false);
    let agent = &s["aggregates"]["agents"][0];
    assert_eq!(agent["agent_id"], "U22-01-01");
    assert_eq!(agent["vpn_connect"]["attempts"], 432);
    assert_eq!(agent["vpn_connect"]["avg_connect_ms"], 3029.0);
    assert_eq!(s["aggregates"]["dongles"][0]["dongle"], 17);
    // and it survives a restart (it is in the store)
    let mut rig = rig;
    rig.server.restart().await;
    let s = rig.sessions("?dongle=17").await;
    assert_eq!(s["sessions"][0]["report_raw"], SEED_REPORT);
    rig.server.stop().await;
}

#[tokio::test]
async fn release_with_a_bare_get_or_post_and_non_json_is_400_releasing_nothing() {
    let rig = Rig::new(&[17, 18]).await;
    let a = rig.lease("A").await["id"].as_u64().unwrap();
    let b = rig.lease("B").await["id"].as_u64().unwrap();
    for body in [&b"not json"[..], b"[1,2]", b"\"x\"", b"{\"agent_id\":"] {
        let r = rig.post(&format!("/dongle/release/{a}"), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(r.json()["success"], false);
        assert!(r.json()["message"].as_str().unwrap().contains("JSON"));
    }
    // still held: a renewal says so
    assert_eq!(rig.allocate("A").await.json()["renewed"], true);
    let ok = r#"{"success":true,"message":"Dongle released successfully"}"#;
    let r = rig.server.get(&format!("/dongle/release/{a}")).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, ok));
    let r = rig.post(&format!("/dongle/release/{b}"), b"").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, ok));
    let s = rig.sessions("").await;
    assert!(s["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["report"].is_null()));
    rig.server.stop().await;
}

#[tokio::test]
async fn implausible_report_releases_and_is_flagged() {
    let rig = Rig::new(&[17]).await;
    let id = rig.lease("A").await["id"].as_u64().unwrap();
    let body =
        br#"{"agent_id":"A","session_duration_ms":-5,"connect_attempts":3,"connect_successes":9}"#;
    let r = rig.post(&format!("/dongle/release/{id}"), body).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["message"], "Dongle released successfully");
    assert_eq!(v["report_invalid"], true);
    let problems = v["report_problems"].to_string();
    assert!(problems.contains("session_duration_ms") && problems.contains("connect_successes"));
    // released: another agent gets the dongle
    assert_eq!(rig.lease("B").await["dongle"], 17);
    let s = rig.sessions("?agent_id=A").await;
    assert_eq!(s["sessions"][0]["report_invalid"], true);
    assert_eq!(
        s["sessions"][0]["report_raw"],
        std::str::from_utf8(body).unwrap()
    );
    let agent = &s["aggregates"]["agents"][0];
    assert_eq!(agent["invalid_reports"], 1);
    assert_eq!(
        agent["vpn_connect"]["attempts"], 0,
        "invalid reports are not aggregated"
    );
    rig.server.stop().await;
}

#[tokio::test]
async fn bad_agent_ids_and_ids_are_4xx_and_change_nothing() {
    let rig = Rig::new(&[17]).await;
    for (body, expect) in [
        (&b"nope"[..], "not JSON"),
        (b"", "empty"),
        (b"[]", "JSON object"),
        (b"{}", "agent_id is missing"),
        (br#"{"agent_id":""}"#, "agent_id is empty"),
        (br#"{"agent_id":42}"#, "agent_id must be a string"),
    ] {
        let r = rig.post("/dongle/allocate", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}");
        let v = r.json();
        assert_eq!(v["success"], false);
        assert!(v["message"].as_str().unwrap().contains(expect), "{v}");
    }
    for bad in ["abc", "-1", "+1", "01", "1.5"] {
        for path in ["/dongle/heartbeat/", "/dongle/release/"] {
            let r = rig.server.get(&format!("{path}{bad}")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}{bad}");
            assert!(r.json()["message"].as_str().unwrap().contains("dongle id"));
        }
    }
    let r = rig.server.get("/dongle/allocate").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        rig.dongle(17).await["leased"] == false,
        "nothing was allocated"
    );
    rig.peers(0).await;
    rig.server.stop().await;
}

#[tokio::test]
async fn vpn_lease_ids_are_not_dongle_ids() {
    let rig = Rig::new(&[17]).await;
    let vpn = rig.server.get("/vpn_api/allocate").await.json();
    let d = rig.lease("A").await;
    let dongle_id = d["id"].as_u64().unwrap();
    // one id sequence: the VPN lease took id 1
    assert_eq!(dongle_id, 2);
    for path in ["/dongle/heartbeat/1", "/dongle/release/1"] {
        let r = rig.server.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    // the VPN lease is still there, and seed 000's release cannot end the dongle lease
    let client = edgeward::keys::PrivateKey::from_base64(d["private_key"].as_str().unwrap())
        .unwrap()
        .public_key()
        .to_base64();
    let r = rig.server.release(&client).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let pk = vpn["public_key"].as_str().unwrap();
    assert_eq!(rig.server.release(pk).await.status, StatusCode::OK);
    assert_eq!(rig.allocate("A").await.json()["renewed"], true);
    rig.server.stop().await;
}

#[tokio::test]
async fn a_vanished_port_is_not_handed_out_until_it_returns() {
    let rig = Rig::new(&[17]).await;
    rig.sim(17).unplug(Duration::from_millis(1500));
    rig.healthy(17, false).await;
    let r = rig.allocate("A").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    rig.healthy(17, true).await;
    assert_eq!(rig.lease("A").await["dongle"], 17);
    rig.server.stop().await;
}

#[tokio::test]
async fn allocation_prefers_the_dongle_idle_longest() {
    let rig = Rig::new(&[17, 18, 19]).await;
    // never-used first, in number order
    let a = rig.lease("a").await;
    let b = rig.lease("b").await;
    let c = rig.lease("c").await;
    assert_eq!([&a["dongle"], &b["dongle"], &c["dongle"]], [17, 18, 19]);
    // release 18, then 17 (a second later), then 19: the next agent gets 18, then 17
    for (lease, _) in [(&b, 18), (&a, 17), (&c, 19)] {
        rig.server.clock.advance(Duration::from_secs(1));
        let r = rig
            .server
            .get(&format!("/dongle/release/{}", lease["id"]))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let d = rig.lease("d").await;
    assert_eq!(d["dongle"], 18);
    assert_eq!(rig.lease("e").await["dongle"], 17);
    // LRU order survives a restart (it is stored with the exit): 18 released last
    let mut rig = rig;
    rig.server.clock.advance(Duration::from_secs(1));
    let r = rig
        .server
        .get(&format!("/dongle/release/{}", d["id"]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    rig.server.restart().await;
    for n in [17, 18, 19] {
        rig.healthy(n, true).await;
    }
    assert_eq!(rig.lease("f").await["dongle"], 19);
    assert_eq!(rig.lease("g").await["dongle"], 18);
    rig.server.stop().await;
}

#[tokio::test]
async fn heartbeat_expiry_under_a_manual_clock_ends_the_lease_and_peer() {
    let rig = Rig::new(&[17]).await;
    let id = rig.lease("A").await["id"].as_u64().unwrap();
    rig.peers(1).await;
    rig.server.clock.advance(Duration::from_secs(9 * 60));
    tokio::time::sleep(Duration::from_millis(150)).await; // several sweeps
    let r = rig.server.get(&format!("/dongle/heartbeat/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "alive after 9 minutes");
    let beat = edgeward::clock::Clock::now_ms(rig.server.clock.as_ref());
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(beat + 600_000);
    let d = rig.dongle(17).await;
    assert_eq!(
        d["heartbeat_deadline"],
        humantime::format_rfc3339_millis(deadline).to_string(),
        "{d}"
    );
    rig.server.clock.advance(Duration::from_secs(9 * 60));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // a renewal counts too
    assert_eq!(rig.allocate("A").await.json()["renewed"], true);
    rig.server.clock.advance(Duration::from_secs(9 * 60 + 59));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rig.dongle(17).await["lease_id"], id);
    rig.server.clock.advance(Duration::from_secs(2));
    let ended = rig.wait_ended(id).await;
    assert_eq!(ended["end_reason"], "heartbeat_timeout");
    rig.peers(0).await;
    let r = rig.server.get(&format!("/dongle/heartbeat/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(rig.lease("B").await["dongle"], 17);
    rig.server.stop().await;
}

#[tokio::test]
async fn downtime_does_not_count() {
    let mut rig = Rig::new(&[17]).await;
    let d = rig.lease("A").await;
    let id = d["id"].as_u64().unwrap();
    rig.server.clock.advance(Duration::from_secs(9 * 60));
    // down for an hour
    let app = rig.server.app.take().unwrap();
    app.shutdown().await;
    rig.server.clock.advance(Duration::from_secs(3600));
    let app = common::start_app_scaled(
        &rig.server.toml,
        &rig.server.store_path(),
        &rig.server.clock,
        SCALE,
    )
    .await;
    rig.server.addr = app.http_addrs[0];
    rig.server.app = Some(app);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = rig.allocate("A").await;
    // renewal after the restart: same lease, same keys (and a heartbeat)
    assert_eq!(r.json()["renewed"], true);
    assert_eq!(r.json()["dongle"]["private_key"], d["private_key"]);
    assert_eq!(r.json()["dongle"]["id"], id);
    rig.server.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(rig.wait_ended(id).await["end_reason"], "heartbeat_timeout");
    rig.server.stop().await;
}

#[tokio::test]
async fn a_hundred_agents_race_for_the_last_dongle_and_one_wins() {
    let rig = Arc::new(Rig::new(&[17]).await);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let rig = Arc::clone(&rig);
            tokio::spawn(async move { rig.allocate(&format!("agent-{i}")).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => won += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.json()["message"], "No available dongle");
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        rig.sessions("").await["sessions"].as_array().unwrap().len(),
        1
    );
    rig.peers(1).await;
}

#[tokio::test]
async fn one_agent_racing_itself_gets_one_lease() {
    let rig = Arc::new(Rig::new(&[17, 18, 19]).await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let rig = Arc::clone(&rig);
            tokio::spawn(async move { rig.allocate("same").await.json() })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(v["success"], true, "{v}");
        ids.insert(v["dongle"]["id"].as_u64().unwrap());
        if v["renewed"] == false {
            fresh += 1;
        }
    }
    assert_eq!((ids.len(), fresh), (1, 1));
    let leased = rig
        .dongles()
        .await
        .iter()
        .filter(|d| d["leased"] == true)
        .count();
    assert_eq!(leased, 1);
}

#[tokio::test]
async fn a_restart_keeps_every_lease_and_its_keys() {
    let mut rig = Rig::new(&[17, 18]).await;
    let a = rig.lease("A").await;
    let b = rig.lease("B").await;
    rig.server.restart().await;
    for n in [17, 18] {
        rig.healthy(n, true).await;
    }
    for (agent, before) in [("A", &a), ("B", &b)] {
        let v = rig.allocate(agent).await.json();
        assert_eq!(v["renewed"], true);
        for field in ["id", "dongle", "private_key", "public_key"] {
            assert_eq!(v["dongle"][field], before[field], "{field}");
        }
    }
    rig.peers(2).await;
    assert_eq!(
        rig.allocate("C").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    rig.server.stop().await;
}

#[tokio::test]
async fn toggles_are_counted_on_the_holders_session() {
    let rig = Rig::new(&[17]).await;
    let id = rig.lease("A").await["id"].as_u64().unwrap();
    let r = rig.server.get("/toggle/17").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let s = rig.sessions("").await;
    assert_eq!(s["sessions"][0]["id"], id);
    assert_eq!(s["sessions"][0]["toggles"], 1);
    assert_eq!(s["sessions"][0]["toggle_failures"], 0);
    assert_eq!(s["aggregates"]["dongles"][0]["toggles"], 1);
    rig.server.stop().await;
}

#[tokio::test]
async fn api_dongles_is_admin_view_only() {
    let rig = Rig::new(&[17]).await;
    for path in ["/api/dongles", "/api/dongles/sessions"] {
        let r = request(
            rig.server.addr,
            Method::GET,
            path,
            &[("x-forwarded-for", "198.51.100.7")],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
        assert_eq!(r.json()["success"], false);
    }
    // agents keep their own API through the same proxy header? no: the agent class is
    // decided by api.agent_allow (default: everyone), so allocate still works directly.
    assert_eq!(rig.allocate("A").await.status, StatusCode::OK);
    let r = rig
        .server
        .get("/api/dongles/sessions?since=yesterday")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("since"));
    let r = rig.server.get("/api/dongles/sessions?limit=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    rig.server.stop().await;
}

#[tokio::test]
async fn metrics_show_per_dongle_series() {
    let rig = Rig::new(&[17, 18]).await;
    rig.lease("A").await;
    let r = rig.server.get("/toggle/17").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = rig.server.get("/metrics").await.text();
    for line in [
        "edgeward_dongle_leased{dongle=\"17\"} 1",
        "edgeward_dongle_leased{dongle=\"18\"} 0",
        "edgeward_dongle_healthy{dongle=\"18\"} 1",
        "edgeward_dongle_toggles_total{dongle=\"17\"} 1",
        "edgeward_dongle_toggle_failures_total{dongle=\"17\"} 0",
        "edgeward_dongle_rx_bytes_total{dongle=\"17\"} 0",
        "edgeward_dongle_handshakes_total{dongle=\"18\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    rig.server.stop().await;
}

/// The data plane carries a dongle client at the subnet's network address, `10.8.{n}.0`, both
/// ways (the per-peer source check compares addresses, and `.0` is an address like any other).
#[test]
fn the_data_plane_carries_the_network_address_of_a_dongle_subnet() {
    use edgeward::keys::PrivateKey;
    use edgeward::wg::plane::PlaneConfig;
    use edgeward::wg::testkit::{Client, Fixture, INTERNET};
    let mut f = Fixture::new(PlaneConfig::default());
    let exit_key = f
        .plane
        .add_exit("dongle:17", &PrivateKey::generate())
        .unwrap();
    let at = Ipv4Addr::new(10, 8, 17, 0);
    let mut client = Client::new(exit_key, at, "192.0.2.99:51820".parse().unwrap());
    f.plane
        .add_peer("dongle:17", client.public_key(), at, 26)
        .unwrap();
    f.connect(&mut client);
    let packet = client.packet_to(INTERNET, b"hello");
    let out = f.client_sends(&mut client, &packet);
    assert_eq!(out.len(), 1, "the packet from 10.8.17.0 reaches the TUN");
    let back = edgeward::wg::testkit::udp_packet(INTERNET, at, b"answer");
    assert_eq!(
        f.host_sends(&mut client, &back).len(),
        1,
        "and the answer reaches it"
    );
}

/// A WireGuard handshake with the keys `/dongle/allocate` handed out, over real UDP: the
/// dongle's exit answers it — and the handshake does not keep the lease alive.
#[tokio::test]
async fn a_dongle_lease_handshakes_but_only_heartbeats_keep_it_alive() {
    use edgeward::wg::testkit;
    let rig = Rig::new(&[17]).await;
    let d = rig.lease("A").await;
    let id = d["id"].as_u64().unwrap();
    rig.peers(1).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut wg = testkit::Client::from_allocation(
        d["private_key"].as_str().unwrap(),
        d["public_key"].as_str().unwrap(),
        socket.local_addr().unwrap(),
    );
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], rig.server.app().wg.port()));
    rig.server.clock.advance(Duration::from_secs(9 * 60));
    socket.send_to(&wg.initiation(), server).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("the dongle exit answers the handshake")
        .unwrap();
    let got = wg.receive(&buf[..n]);
    assert!(got.error.is_none(), "{:?}", got.error);
    for reply in got.replies {
        socket.send_to(&reply, server).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rig.dongle(17).await["last_handshake"].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handshake recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 10 minutes after the allocation, fresh handshake or not, the lease ends
    rig.server.clock.advance(Duration::from_secs(61));
    assert_eq!(rig.wait_ended(id).await["end_reason"], "heartbeat_timeout");
    rig.server.stop().await;
}
