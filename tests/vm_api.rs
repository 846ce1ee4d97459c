//! The LIMEN VM API over real HTTP against libvirt's own test driver (`test:///default`, so
//! every VM name is unique per test: that driver's state is shared by the whole process):
//! the lifecycle, every validation message, quotas, snapshots, stats, who sees what,
//! reconciliation after a domain is undefined behind edgeward's back, health.
#![cfg(feature = "vm")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::accounts::*;
use common::{text, TestServer};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// A name no other test in this process uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Vms {
    server: TestServer,
    storage: tempfile::TempDir,
    admin: Limen,
}

async fn start_with(uri: &str) -> Vms {
    let storage = tempfile::tempdir().expect("a storage dir");
    let toml = accounts_config()
        .set("vm", "libvirt_uri", text(uri))
        .set(
            "vm",
            "storage_dir",
            text(storage.path().to_str().expect("a UTF-8 temp dir")),
        )
        .set("vm", "reconcile_interval", text("1s"))
        .set("vm", "stop_timeout", text("2s"))
        .to_string();
    let server = TestServer::start(&toml).await;
    let admin = admin(&server).await;
    Vms {
        server,
        storage,
        admin,
    }
}

async fn start() -> Vms {
    start_with("test:///default").await
}

impl Vms {
    async fn user(&self, name: &str) -> Limen {
        let username = unique(name).replace('-', "_");
        create_user(&self.server, &self.admin, &username, "user").await;
        limen_login(&self.server, &username, USER_PASSWORD).await
    }

    async fn call(
        &self,
        who: &Limen,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        let r = call(&self.server, method, path, &who.bearer(), body.as_deref()).await;
        let j = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        (r.status, j)
    }

    async fn create(&self, who: &Limen, name: &str, cpu: u32, memory: u32) -> Value {
        let (s, j) = self
            .call(
                who,
                Method::POST,
                "/api/vms",
                Some(
                    json!({"name": name, "cpu": cpu, "memory": memory, "os_type": "ubuntu-server"}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{j}");
        j
    }

    async fn act(&self, who: &Limen, id: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            who,
            Method::POST,
            &format!("/api/vms/{id}/action"),
            Some(body),
        )
        .await
    }

    async fn list(&self, who: &Limen) -> Vec<Value> {
        let (s, j) = self.call(who, Method::GET, "/api/vms", None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        j.as_array().expect("a list").clone()
    }
}

fn limen_error(j: &Value, code: u16, message: &str) {
    assert_eq!(j["code"], code, "{j}");
    assert_eq!(j["message"], message, "{j}");
}

#[tokio::test]
async fn the_whole_lifecycle() {
    let t = start().await;
    let name = unique("life");
    let vm = t.create(&t.admin, &name, 2, 2048).await;
    // Seed 004's VM object, Running on creation (seed 002).
    for key in [
        "id",
        "uuid",
        "name",
        "cpu",
        "memory",
        "status",
        "os_type",
        "owner_id",
        "created_at",
        "updated_at",
    ] {
        assert!(vm.get(key).is_some(), "{key} in {vm}");
    }
    assert_eq!(vm["status"], "Running");
    assert_eq!(vm["name"], name.as_str());
    assert_eq!(
        (vm["cpu"].as_u64(), vm["memory"].as_u64()),
        (Some(2), Some(2048))
    );
    assert_eq!(vm["os_type"], "ubuntu-server");
    assert_eq!(vm["owner_id"], t.admin.user_id);
    assert!(vm["created_at"].as_str().unwrap().ends_with('Z'));
    let id = vm["id"].as_u64().unwrap().to_string();
    let uuid = vm["uuid"].as_str().unwrap().to_owned();
    // The disk is real, in storage_dir, named after the uuid.
    let disk = t.storage.path().join(format!("{uuid}.qcow2"));
    assert!(disk.is_file(), "{}", disk.display());

    // The domain carries the record's uuid, a MAC of its own and VNC on loopback only.
    let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
    let dom = virt::domain::Domain::lookup_by_uuid_string(&conn, &uuid).unwrap();
    assert_eq!(dom.get_name().unwrap(), name);
    let xml = dom.get_xml_desc(0).unwrap();
    assert!(
        xml.contains("listen='127.0.0.1'") || xml.contains("listen=\"127.0.0.1\""),
        "{xml}"
    );
    assert!(!xml.contains("0.0.0.0"), "{xml}");
    assert!(xml.contains("<memballoon model='virtio'"), "{xml}");

    // A second VM gets another MAC.
    let other = t.create(&t.admin, &unique("life2"), 1, 512).await;
    let other_dom =
        virt::domain::Domain::lookup_by_uuid_string(&conn, other["uuid"].as_str().unwrap())
            .unwrap();
    let mac = |x: &str| x.split("<mac address='").nth(1).map(|r| r[..17].to_owned());
    assert_ne!(mac(&xml), mac(&other_dom.get_xml_desc(0).unwrap()));

    // Stop (graceful), by id; then start and restart by uuid.
    let (s, j) = t.act(&t.admin, &id, json!({"action": "stop"})).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"], "Stopped");
    assert!(!dom.is_active().unwrap());
    let (s, j) = t.act(&t.admin, &uuid, json!({"action": "start"})).await;
    assert_eq!(
        (s, j["status"].as_str()),
        (StatusCode::OK, Some("Running")),
        "{j}"
    );
    let (s, j) = t.act(&t.admin, &uuid, json!({"action": "restart"})).await;
    assert_eq!(
        (s, j["status"].as_str()),
        (StatusCode::OK, Some("Running")),
        "{j}"
    );

    // Resources change only while stopped (seed 002).
    let (s, j) = t
        .act(
            &t.admin,
            &id,
            json!({"action": "update", "cpu": 4, "memory": 4096}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{j}");
    limen_error(&j, 409, "VM must be stopped to update resources");
    t.act(&t.admin, &id, json!({"action": "stop"})).await;
    let (s, j) = t
        .act(
            &t.admin,
            &id,
            json!({"action": "update", "cpu": 4, "memory": 4096}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["cpu"].as_u64(), j["memory"].as_u64()),
        (Some(4), Some(4096))
    );
    let xml = dom
        .get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .unwrap();
    assert!(xml.contains(">4</vcpu>"), "{xml}");
    assert!(xml.contains("<memory unit='KiB'>4194304</memory>"), "{xml}");
    // 004's "resize" shrinks it again.
    let (s, j) = t
        .act(
            &t.admin,
            &id,
            json!({"action": "resize", "cpu": 1, "memory": 1024}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["cpu"].as_u64(), j["memory"].as_u64()),
        (Some(1), Some(1024))
    );

    // Delete: domain, disk and record.
    let (s, j) = t.act(&t.admin, &id, json!({"action": "delete"})).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"], "Stopped");
    assert!(virt::domain::Domain::lookup_by_uuid_string(&conn, &uuid).is_err());
    assert!(!disk.exists());
    let names: Vec<Value> = t
        .list(&t.admin)
        .await
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert!(!names.contains(&json!(name)), "{names:?}");
    let (s, j) = t.act(&t.admin, &id, json!({"action": "start"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        j,
        json!({"code": 404, "message": "VM not found", "error": "Not Found"})
    );
    t.server.stop().await;
}

#[tokio::test]
async fn every_validation_message_in_check_order_and_nothing_created() {
    let t = start().await;
    let ok = unique("valid");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "", "cpu": 2, "memory": 2048, "os_type": "kali"}),
            "VM name is required",
        ),
        (
            json!({"cpu": 2, "memory": 2048, "os_type": "kali"}),
            "VM name is required",
        ),
        (
            json!({"name": "ab", "cpu": 0, "memory": 1, "os_type": "x"}),
            "VM name must be at least 3 characters",
        ),
        (
            json!({"name": "a".repeat(65), "cpu": 2, "memory": 2048, "os_type": "kali"}),
            "VM name must be at most 64 characters",
        ),
        (
            json!({"name": "ab\u{1}c", "cpu": 2, "memory": 2048, "os_type": "kali"}),
            "VM name contains invalid characters",
        ),
        (
            json!({"name": "My VM", "cpu": 2, "memory": 2048, "os_type": "kali"}),
            "VM name can only contain alphanumeric characters, hyphens, and underscores",
        ),
        (
            json!({"name": ok, "cpu": 0, "memory": 1, "os_type": "x"}),
            "CPU must be at least 1",
        ),
        (
            json!({"name": ok, "cpu": -4, "memory": 2048, "os_type": "kali"}),
            "CPU must be at least 1",
        ),
        (
            json!({"name": ok, "cpu": 33, "memory": 2048, "os_type": "kali"}),
            "CPU must be at most 32",
        ),
        (
            json!({"name": ok, "cpu": 2, "memory": 256, "os_type": "x"}),
            "Memory must be at least 512MB",
        ),
        (
            json!({"name": ok, "cpu": 2, "memory": 70000, "os_type": "kali"}),
            "Memory must be at most 65536MB (64GB)",
        ),
        (
            json!({"name": ok, "cpu": 2, "memory": 1000, "os_type": "kali"}),
            "Memory should be a multiple of 256MB",
        ),
        (
            json!({"name": ok, "cpu": 2, "memory": 2048, "os_type": "dos"}),
            "Invalid OS type. Valid types: [ubuntu-desktop ubuntu-server kali windows]",
        ),
        (
            json!({"name": ok, "cpu": "two", "memory": 2048, "os_type": "kali"}),
            "Invalid request body",
        ),
    ];
    for (body, message) in cases {
        let (s, j) = t
            .call(&t.admin, Method::POST, "/api/vms", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {j}");
        // Seed 002's envelope: error = the message.
        assert_eq!(
            j,
            json!({"code": 400, "message": message, "error": message}),
            "{body}"
        );
    }
    // Not JSON at all.
    let r = call(
        &t.server,
        Method::POST,
        "/api/vms",
        &t.admin.bearer(),
        Some("{"),
    )
    .await;
    limen_error(&r.json(), 400, "Invalid request body");
    assert!(t.list(&t.admin).await.is_empty());
    assert_eq!(
        std::fs::read_dir(t.storage.path()).unwrap().count(),
        0,
        "no disk left behind"
    );

    // The original's blacklist is gone: `my-selection` is a fine name.
    let fine = format!("my-selection-{}", unique("x"));
    t.create(&t.admin, &fine, 1, 512).await;
    // Names are unique on the box (case ignored), never a silent replacement.
    let (s, j) = t
        .call(
            &t.admin,
            Method::POST,
            "/api/vms",
            Some(json!({"name": fine.to_uppercase(), "cpu": 1, "memory": 512, "os_type": "kali"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("VM name already exists"),
        "{j}"
    );
    assert_eq!(t.list(&t.admin).await.len(), 1);

    // Actions: body first, then the VM, then the action (002's exact words).
    let id = t.list(&t.admin).await[0]["id"].to_string();
    let (s, j) = t.act(&t.admin, &id, json!({"action": "explode"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let m = "Invalid action. Valid actions: start, stop, delete, update";
    assert_eq!(j, json!({"code": 400, "message": m, "error": m}));
    let (s, _) = t
        .act(&t.admin, "999999", json!({"action": "explode"}))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an unknown VM is 404 whatever the action"
    );
    let (s, j) = t
        .act(&t.admin, "not-a-uuid", json!({"action": "start"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
    let (s, j) = t
        .act(&t.admin, &id, json!({"action": "update", "cpu": 4}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(&j, 400, "CPU and Memory are required for update");
    let (s, j) = t
        .act(
            &t.admin,
            &id,
            json!({"action": "update", "cpu": 64, "memory": 1024}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(&j, 400, "CPU must be at most 32");
    t.server.stop().await;
}

#[tokio::test]
async fn users_see_and_touch_only_their_own_vms() {
    let t = start().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    let vm = t.create(&alice, &unique("alice-vm"), 1, 512).await;
    let id = vm["id"].to_string();
    let uuid = vm["uuid"].as_str().unwrap().to_owned();
    assert_eq!(vm["owner_id"], alice.user_id);

    assert_eq!(t.list(&alice).await.len(), 1);
    assert!(t.list(&bob).await.is_empty());
    assert_eq!(t.list(&t.admin).await.len(), 1, "an admin sees every VM");

    // Bob gets exactly what an unknown VM gets, and nothing happens to Alice's VM.
    let not_found = json!({"code": 404, "message": "VM not found", "error": "Not Found"});
    for key in [&id, &uuid] {
        for action in ["stop", "delete", "update", "explode"] {
            let (s, j) = t
                .act(
                    &bob,
                    key,
                    json!({"action": action, "cpu": 2, "memory": 1024}),
                )
                .await;
            assert_eq!((s, &j), (StatusCode::NOT_FOUND, &not_found), "{action}");
        }
        for path in [
            format!("/api/vms/{key}/stats"),
            format!("/api/vms/{key}/snapshots"),
        ] {
            let (s, j) = t.call(&bob, Method::GET, &path, None).await;
            assert_eq!((s, &j), (StatusCode::NOT_FOUND, &not_found), "{path}");
        }
        let (s, _) = t
            .call(
                &bob,
                Method::POST,
                &format!("/api/vms/{key}/snapshots"),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let mine = t.list(&alice).await;
    assert_eq!(mine[0]["status"], "Running");
    // Alice's snapshot is not Bob's either.
    let (s, snap) = t
        .call(
            &alice,
            Method::POST,
            &format!("/api/vms/{id}/snapshots"),
            Some(json!({"name": "s"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    let sid = snap["id"].as_u64().unwrap();
    for (method, path) in [
        (Method::POST, format!("/api/snapshots/{sid}/restore")),
        (Method::DELETE, format!("/api/snapshots/{sid}")),
    ] {
        let (s, j) = t.call(&bob, method, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        limen_error(&j, 404, "Snapshot not found");
    }
    let (_, list) = t
        .call(
            &alice,
            Method::GET,
            &format!("/api/vms/{id}/snapshots"),
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // An admin may act on anyone's VM.
    let (s, j) = t.act(&t.admin, &id, json!({"action": "stop"})).await;
    assert_eq!(
        (s, j["status"].as_str()),
        (StatusCode::OK, Some("Stopped")),
        "{j}"
    );
    // Without a token: 401.
    let r = common::request(t.server.addr, Method::GET, "/api/vms", &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], 401);
    t.server.stop().await;
}

#[tokio::test]
async fn quotas_refuse_with_the_resource_and_the_numbers() {
    let t = start().await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    // The first default comes from [vm] default_quota (seed 004's example numbers).
    let (s, j) = t.call(&alice, Method::GET, "/api/quota", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["quota"]["max_vms"], 10);
    assert_eq!(j["quota"]["max_cpu"], 20);
    assert_eq!(j["quota"]["max_memory"], 40960);
    assert_eq!(j["quota"]["user_id"], alice.user_id);
    assert_eq!(j["usage"], json!({"vms": 0, "cpu": 0, "memory": 0}));

    // Only an admin sets quotas.
    let (s, j) = t
        .call(
            &alice,
            Method::PUT,
            "/api/quota",
            Some(json!({"max_vms": 100})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{j}");
    limen_error(&j, 403, "Admin access required");
    let (s, j) = t
        .call(
            &t.admin,
            Method::PUT,
            "/api/quota",
            Some(json!({"user_id": alice.user_id, "max_vms": -1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(&j, 400, "Quota values must be non-negative");
    let (s, _) = t
        .call(
            &t.admin,
            Method::PUT,
            "/api/quota",
            Some(json!({"user_id": 987654, "max_vms": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, j) = t
        .call(
            &t.admin,
            Method::PUT,
            "/api/quota",
            Some(json!({"user_id": alice.user_id, "max_vms": 1, "max_cpu": 2, "max_memory": 2048})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["user_id"], alice.user_id);

    let vm = t.create(&alice, &unique("q"), 2, 1024).await;
    let (s, j) = t
        .call(
            &alice,
            Method::POST,
            "/api/vms",
            Some(json!({"name": unique("q"), "cpu": 1, "memory": 512, "os_type": "kali"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(
        &j,
        400,
        "quota exceeded for VMs: current 1 + requested 1 > limit 1",
    );
    let id = vm["id"].to_string();
    t.act(&alice, &id, json!({"action": "stop"})).await;
    let (s, j) = t
        .act(
            &alice,
            &id,
            json!({"action": "update", "cpu": 4, "memory": 1024}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(
        &j,
        400,
        "quota exceeded for CPU: current 0 + requested 4 > limit 2",
    );
    let (s, j) = t
        .act(
            &alice,
            &id,
            json!({"action": "update", "cpu": 2, "memory": 4096}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(
        &j,
        400,
        "quota exceeded for Memory: current 0 + requested 4096 > limit 2048",
    );
    let (_, j) = t.call(&alice, Method::GET, "/api/quota", None).await;
    assert_eq!(j["usage"], json!({"vms": 1, "cpu": 2, "memory": 1024}));
    assert_eq!(j["quota"]["id"], alice.user_id);

    // Without user_id: the default of everyone without a quota of their own (Bob), not Alice.
    let (s, _) = t
        .call(
            &t.admin,
            Method::PUT,
            "/api/quota",
            Some(json!({"max_cpu": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, j) = t.call(&bob, Method::GET, "/api/quota", None).await;
    assert_eq!(
        (
            j["quota"]["max_cpu"].as_u64(),
            j["quota"]["max_vms"].as_u64()
        ),
        (Some(1), Some(10))
    );
    let (s, j) = t
        .call(
            &bob,
            Method::POST,
            "/api/vms",
            Some(json!({"name": unique("b"), "cpu": 2, "memory": 512, "os_type": "kali"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(
        &j,
        400,
        "quota exceeded for CPU: current 0 + requested 2 > limit 1",
    );
    let (_, j) = t.call(&alice, Method::GET, "/api/quota", None).await;
    assert_eq!(j["quota"]["max_cpu"], 2);
    // An admin reads anyone's.
    let (_, j) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/quota?user_id={}", alice.user_id),
            None,
        )
        .await;
    assert_eq!(j["usage"]["vms"], 1);
    // Quotas survive a restart.
    let mut server = t.server;
    server.restart().await;
    let admin = limen_login(&server, "admin", ADMIN_PASSWORD).await;
    let r = call(
        &server,
        Method::GET,
        &format!("/api/quota?user_id={}", alice.user_id),
        &admin.bearer(),
        None,
    )
    .await;
    assert_eq!(r.json()["quota"]["max_vms"], 1, "{}", r.text());
    assert_eq!(r.json()["usage"]["vms"], 1);
    server.stop().await;
}

#[tokio::test]
async fn snapshots_restore_really_reverts_a_running_vm() {
    let t = start().await;
    let vm = t.create(&t.admin, &unique("snap"), 2, 2048).await;
    let id = vm["id"].to_string();
    let uuid = vm["uuid"].as_str().unwrap().to_owned();
    t.act(&t.admin, &id, json!({"action": "stop"})).await;
    let (s, j) = t
        .call(
            &t.admin,
            Method::POST,
            &format!("/api/vms/{id}/snapshots"),
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(&j, 400, "Snapshot name is required");
    let (s, snap) = t
        .call(
            &t.admin,
            Method::POST,
            &format!("/api/vms/{uuid}/snapshots"),
            Some(json!({"name": "Snapshot 1", "description": "Before <update> & more"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{snap}");
    for key in [
        "id",
        "vm_id",
        "name",
        "description",
        "libvirt_name",
        "created_at",
        "updated_at",
    ] {
        assert!(snap.get(key).is_some(), "{key} in {snap}");
    }
    assert_eq!(snap["name"], "Snapshot 1");
    assert_eq!(snap["description"], "Before <update> & more");
    assert_eq!(snap["vm_id"].to_string(), id);
    let sid = snap["id"].as_u64().unwrap();
    let libvirt_name = snap["libvirt_name"].as_str().unwrap().to_owned();

    // Grow it, run it: then restore the snapshot while it runs.
    let (s, _) = t
        .act(
            &t.admin,
            &id,
            json!({"action": "update", "cpu": 4, "memory": 4096}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, j) = t.act(&t.admin, &id, json!({"action": "start"})).await;
    assert_eq!(
        (j["status"].as_str(), j["cpu"].as_u64()),
        (Some("Running"), Some(4))
    );
    let (s, j) = t
        .call(
            &t.admin,
            Method::POST,
            &format!("/api/snapshots/{sid}/restore"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["message"], "Snapshot restored successfully");
    assert_eq!(j["snapshot_id"], sid);
    // Really reverted (the original only shut it down): running, on the snapshot's 2 vCPUs.
    assert_eq!(j["vm"]["status"], "Running", "{j}");
    assert_eq!(
        (j["vm"]["cpu"].as_u64(), j["vm"]["memory"].as_u64()),
        (Some(2), Some(2048))
    );
    let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
    let dom = virt::domain::Domain::lookup_by_uuid_string(&conn, &uuid).unwrap();
    assert!(dom.is_active().unwrap());
    assert!(dom.get_xml_desc(0).unwrap().contains(">2</vcpu>"));

    // Bad ids.
    let (s, j) = t
        .call(&t.admin, Method::POST, "/api/snapshots/abc/restore", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    limen_error(&j, 400, "Invalid snapshot ID");
    let (s, _) = t
        .call(&t.admin, Method::DELETE, "/api/snapshots/424242", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Delete removes the snapshot from libvirt, not just the record.
    let (s, j) = t
        .call(
            &t.admin,
            Method::DELETE,
            &format!("/api/snapshots/{sid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        j,
        json!({"message": "Snapshot deleted successfully", "snapshot_id": sid})
    );
    assert!(virt::domain_snapshot::DomainSnapshot::lookup_by_name(&dom, &libvirt_name, 0).is_err());
    let (_, list) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/vms/{id}/snapshots"),
            None,
        )
        .await;
    assert_eq!(list, json!([]));

    // Deleting a VM takes its snapshots along.
    t.call(
        &t.admin,
        Method::POST,
        &format!("/api/vms/{id}/snapshots"),
        Some(json!({"name": "s2"})),
    )
    .await;
    let (s, _) = t.act(&t.admin, &id, json!({"action": "delete"})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(virt::domain::Domain::lookup_by_uuid_string(&conn, &uuid).is_err());
    t.server.stop().await;
}

#[tokio::test]
async fn stats_are_real_numbers() {
    let t = start().await;
    let vm = t.create(&t.admin, &unique("stats"), 2, 2048).await;
    let id = vm["id"].to_string();
    let (s, j) = t
        .call(&t.admin, Method::GET, &format!("/api/vms/{id}/stats"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    // The test driver's CPU time advances one second per second: 50 % of two vCPUs.
    let cpu = j["cpu_usage_percent"].as_f64().unwrap();
    assert!((40.0..=60.0).contains(&cpu), "{j}");
    assert!(j["memory_total_mb"].as_u64().unwrap() > 0, "{j}");
    assert!(j["memory_used_mb"].as_u64().unwrap() <= j["memory_total_mb"].as_u64().unwrap());
    for key in [
        "memory_usage_percent",
        "disk_read_bytes",
        "disk_write_bytes",
        "network_rx_bytes",
        "network_tx_bytes",
        "timestamp",
    ] {
        assert!(j[key].is_number(), "{key} in {j}");
    }
    t.act(&t.admin, &id, json!({"action": "stop"})).await;
    let (s, j) = t
        .call(&t.admin, Method::GET, &format!("/api/vms/{id}/stats"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    limen_error(&j, 409, "VM is not running");
    t.server.stop().await;
}

#[tokio::test]
async fn a_domain_removed_behind_edgewards_back_is_an_error_never_a_crash() {
    let t = start().await;
    let vm = t.create(&t.admin, &unique("gone"), 1, 512).await;
    let id = vm["id"].to_string();
    let uuid = vm["uuid"].as_str().unwrap().to_owned();
    let keep = t.create(&t.admin, &unique("kept"), 1, 512).await;
    // Someone else stops and undefines the domain, and stops the other one.
    let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
    let dom = virt::domain::Domain::lookup_by_uuid_string(&conn, &uuid).unwrap();
    dom.destroy().unwrap();
    dom.undefine().unwrap();
    virt::domain::Domain::lookup_by_uuid_string(&conn, keep["uuid"].as_str().unwrap())
        .unwrap()
        .destroy()
        .unwrap();
    // The periodic reconciliation (1 s here) reflects both.
    let mut statuses = (String::new(), String::new());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = t.list(&t.admin).await;
        let of = |x: &Value| {
            list.iter()
                .find(|v| v["id"] == x["id"])
                .map(|v| v["status"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        statuses = (of(&vm), of(&keep));
        if statuses == ("Error".into(), "Stopped".into()) {
            break;
        }
    }
    assert_eq!(statuses, ("Error".into(), "Stopped".into()));
    // Every handler answers; none crashes.
    let (s, j) = t.act(&t.admin, &id, json!({"action": "start"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("VM not found in libvirt"),
        "{j}"
    );
    let (s, _) = t
        .call(&t.admin, Method::GET, &format!("/api/vms/{id}/stats"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Delete still cleans up the record and the disk.
    let (s, j) = t.act(&t.admin, &id, json!({"action": "delete"})).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert!(!t.storage.path().join(format!("{uuid}.qcow2")).exists());
    assert_eq!(t.list(&t.admin).await.len(), 1);
    t.server.stop().await;
}

#[tokio::test]
async fn health_reports_the_live_libvirt_connection() {
    let t = start().await;
    let r = t.server.get("/api/health").await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["db"], "connected");
    assert_eq!(j["libvirt"], "connected");
    assert!(j["time"].is_string());
    t.server.stop().await;

    // libvirt unreachable at start: the box still serves; VM routes answer 503, health says so.
    let t = start_with("test:///nonexistent/edgeward-node.xml").await;
    let j = t.server.get("/api/health").await.json();
    assert_eq!(j["libvirt"], "disconnected");
    let (s, j) = t.call(&t.admin, Method::GET, "/api/vms", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    limen_error(
        &j,
        503,
        "VM management is not available: libvirt is not connected",
    );
    t.server.stop().await;
}
