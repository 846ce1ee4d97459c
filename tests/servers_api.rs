//! Seed 003's server API over real HTTP against libvirt's test driver (`test:///default`: its
//! state is shared by the whole process, so every server name is unique per test, and the
//! domain XML libvirt stored is read back through the same driver with the `virt` crate).
//!
//! Proven here: the list's exact shape; a create with two disks on two datastores, two NICs
//! (a libvirt network and a host bridge), a static IP, credentials and a template, checked in
//! the domain XML, in the qcow2 files (`qemu-img info`: sizes, backing file) and in the seed
//! image (read with mtools and blkid: label, files, no clear password); a failing create
//! leaving nothing behind; every validation error naming its field, with nothing created;
//! 404s; and the permission of every endpoint by role.
#![cfg(feature = "vm")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::accounts::*;
use common::{request, text, TestServer};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// A server name no other test in this process uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Box003 {
    server: TestServer,
    dir: tempfile::TempDir,
    admin: String,
}

impl Box003 {
    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A user of `role`, logged in with a seed-003 session.
    async fn user(&self, name: &str, role: &str) -> String {
        let admin = admin(&self.server).await;
        create_user(&self.server, &admin, name, role).await;
        session_login(&self.server, name, USER_PASSWORD).await
    }

    async fn call(
        &self,
        session: &str,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let cookie = format!("session={session}");
        let mut headers = vec![("cookie", cookie.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let r = request(
            self.server.addr,
            method,
            path,
            &headers,
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await;
        let j = if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        };
        (r.status, j)
    }

    async fn list(&self, session: &str) -> serde_json::Map<String, Value> {
        let (s, j) = self.call(session, Method::GET, "/api/servers", None).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        assert_eq!(j["success"], true, "{j}");
        j["servers"]
            .as_object()
            .expect("servers is an object")
            .clone()
    }

    /// Creates a server and waits until it runs; its list entry.
    async fn create(&self, session: &str, body: &Value) -> Value {
        let (s, j) = self
            .call(
                session,
                Method::POST,
                "/api/servers",
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{j}");
        let name = body["name"].as_str().expect("a name");
        self.wait_for(session, name, |v| {
            v.is_some_and(|v| v["status"] == "running")
        })
        .await
        .expect("running")
    }

    /// Task `id` with its log, once it has ended (10 s at most), read over HTTP.
    async fn finished_task(&self, session: &str, id: &str) -> Value {
        for _ in 0..100 {
            let (s, j) = self
                .call(session, Method::GET, &format!("/api/tasks/{id}"), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{j}");
            if j["task"]["status"] == "completed" || j["task"]["status"] == "failed" {
                return j["task"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("task {id} never ended");
    }

    /// Polls the list until `done` holds for the server's entry (10 s at most).
    async fn wait_for(
        &self,
        session: &str,
        name: &str,
        done: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        for _ in 0..100 {
            let list = self.list(session).await;
            if done(list.get(name)) {
                return list.get(name).cloned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name}: the list never reached the state waited for");
    }
}

fn qemu_img(args: &[&str]) -> String {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmd <before…> <image> <after…>`'s output.
fn tool(cmd: &str, before: &[&str], image: &Path, after: &[&str]) -> String {
    let mut c = std::process::Command::new(cmd);
    c.args(before).arg(image).args(after);
    let out = c.output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {before:?} {after:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Files under `dir` (recursively), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_in(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

async fn start() -> Box003 {
    let dir = tempfile::tempdir().expect("a temp dir");
    for sub in ["images", "fast", "bulk", "tpl"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let tpl = dir.path().join("tpl/9000.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        tpl.to_str().expect("UTF-8"),
        "1G",
    ]);
    let p = |s: &str| text(dir.path().join(s).to_str().expect("UTF-8"));
    let toml = accounts_config()
        .set("vm", "libvirt_uri", text("test:///default"))
        .set("vm", "storage_dir", p("images"))
        .set(
            "vm",
            "datastores",
            format!("{{ \"local-lvm\" = {}, bulk = {} }}", p("fast"), p("bulk")),
        )
        .set(
            "vm",
            "bridges",
            r#"{ vmbr0 = "network:default", vmbr1 = "bridge:br-ew-test" }"#,
        )
        .set(
            "vm",
            "templates",
            format!(
                "{{ \"9000\" = {}, \"9001\" = {} }}",
                p("tpl/9000.qcow2"),
                p("tpl/missing.qcow2")
            ),
        )
        .to_string();
    let server = TestServer::start(&toml).await;
    let admin = session_login(&server, "admin", ADMIN_PASSWORD).await;
    Box003 { server, dir, admin }
}

fn full_body(name: &str) -> Value {
    json!({
        "name": name,
        "cpu": 4,
        "memory": 4096,
        "role": "web",
        "ip_address": "192.168.1.103",
        "disks": [
            {"size": 50, "interface": "scsi0", "datastore_id": "local-lvm", "disk_type": "ssd"},
            {"size": "10", "interface": "virtio1", "datastore_id": "bulk", "disk_type": "hdd"}
        ],
        "network_devices": [
            {"bridge": "vmbr0", "ip_address": "192.168.1.103", "subnet": "24", "gateway": "192.168.1.1"},
            {"bridge": "vmbr1"}
        ],
        "template_vm_id": 9000,
        "vm_username": "rocky",
        "vm_password": "password123"
    })
}

#[tokio::test]
async fn a_full_server_is_created_listed_operated_and_deleted() {
    let b = start().await;
    let dev = b.user("dev1", "developer").await;
    let name = unique("web");

    // The answer comes at once, in the seed's shape.
    let (s, j) = b
        .call(
            &dev,
            Method::POST,
            "/api/servers",
            Some(&full_body(&name).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{j}");
    let task_id = j["task_id"].as_str().expect("task_id").to_owned();
    assert!(task_id.starts_with("task_"), "{j}");
    assert_eq!(
        j,
        json!({
            "success": true,
            "message": "서버 생성이 시작되었습니다.",
            "task_id": task_id,
            "server": {"name": name, "status": "creating", "estimated_time": "5-10분"}
        })
    );
    let entry = b
        .wait_for(&dev, &name, |v| v.is_some_and(|v| v["status"] == "running"))
        .await
        .expect("listed");
    let task = b.finished_task(&dev, &task_id).await;
    assert_eq!(
        (
            &task["type"],
            &task["status"],
            &task["progress"],
            &task["server"]
        ),
        (
            &json!("create_server"),
            &json!("completed"),
            &json!(100),
            &json!(name)
        ),
        "{task}"
    );
    let lines: Vec<&str> = task["log"]
        .as_array()
        .expect("a log")
        .iter()
        .map(|l| l["t"].as_str().expect("text"))
        .collect();
    assert!(lines.iter().any(|l| l.contains("disk scsi0")), "{task}");
    assert_eq!(lines.last(), Some(&"TASK OK"), "{task}");
    // The task is listed, and only for who may see it.
    let (_, listed) = b.call(&dev, Method::GET, "/api/tasks", None).await;
    assert!(
        listed["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| t["id"] == task_id.as_str()),
        "{listed}"
    );
    let other = b.user("dev1b", "developer").await;
    let (s, _) = b
        .call(&other, Method::GET, &format!("/api/tasks/{task_id}"), None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another developer's task is not theirs"
    );
    // Its owner is told the server is made; another developer is not.
    let told = |j: &Value| {
        j["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .any(|n| {
                n["title"] == "서버 생성 완료"
                    && n["category"] == "server"
                    && n["message"].as_str().is_some_and(|m| m.contains(&name))
            })
    };
    let (_, mine) = b.call(&dev, Method::GET, "/api/notifications", None).await;
    assert!(told(&mine), "{mine}");
    let (_, theirs) = b
        .call(&other, Method::GET, "/api/notifications", None)
        .await;
    assert!(!told(&theirs), "{theirs}");

    // Grafana's overview carries the server's role (the developer sees their own server).
    let (s, j) = b
        .call(&dev, Method::GET, "/api/metrics/grafana/overview", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let row = j["overview"]
        .as_array()
        .expect("overview")
        .iter()
        .find(|r| r["vm_name"] == name.as_str())
        .cloned()
        .expect("its row");
    assert_eq!(
        (&row["role"], &row["status"]),
        (&json!("web"), &json!("running")),
        "{row}"
    );

    // The list entry: exactly the seed's keys.
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "vmid",
            "status",
            "cpu",
            "memory",
            "ip_addresses",
            "role",
            "created_at"
        ]
    );
    let vmid = entry["vmid"].as_u64().expect("vmid");
    assert!(vmid >= 100);
    assert_eq!(
        (
            &entry["name"],
            &entry["cpu"],
            &entry["memory"],
            &entry["role"]
        ),
        (&json!(name), &json!(4), &json!(4096), &json!("web"))
    );
    let created = entry["created_at"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");

    // What libvirt stored.
    let conn = virt::connect::Connect::open(Some("test:///default")).expect("test driver");
    let dom = virt::domain::Domain::lookup_by_name(&conn, &name).expect("the domain");
    let xml = dom
        .get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .expect("XML");
    let doc = roxmltree::Document::parse(&xml).expect("XML parses");
    let disks: Vec<(String, String, String, bool)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|d| {
            let child = |t: &str| d.children().find(|c| c.has_tag_name(t));
            (
                child("source")
                    .and_then(|s| s.attribute("file"))
                    .unwrap_or("")
                    .to_owned(),
                child("target")
                    .and_then(|t| t.attribute("dev"))
                    .unwrap_or("")
                    .to_owned(),
                child("target")
                    .and_then(|t| t.attribute("bus"))
                    .unwrap_or("")
                    .to_owned(),
                child("readonly").is_some(),
            )
        })
        .collect();
    assert_eq!(disks.len(), 3, "{xml}");
    let fast = b.path("fast");
    let bulk = b.path("bulk");
    assert!(disks[0].0.starts_with(fast.to_str().unwrap()), "{disks:?}");
    assert_eq!(
        (&disks[0].1[..], &disks[0].2[..], disks[0].3),
        ("sda", "scsi", false)
    );
    assert!(disks[1].0.starts_with(bulk.to_str().unwrap()), "{disks:?}");
    assert_eq!(
        (&disks[1].1[..], &disks[1].2[..], disks[1].3),
        ("vdb", "virtio", false)
    );
    let seed = PathBuf::from(&disks[2].0);
    assert_eq!(
        (&disks[2].1[..], &disks[2].2[..], disks[2].3),
        ("vdz", "virtio", true)
    );
    assert!(
        doc.descendants().any(|n| n.has_tag_name("controller")
            && n.attribute("type") == Some("scsi")
            && n.attribute("model") == Some("virtio-scsi")),
        "{xml}"
    );
    let nics: Vec<(String, String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("interface"))
        .map(|i| {
            let child = |t: &str| i.children().find(|c| c.has_tag_name(t));
            let source = child("source").map_or(String::new(), |s| {
                s.attribute("network")
                    .or_else(|| s.attribute("bridge"))
                    .unwrap_or("")
                    .to_owned()
            });
            (
                i.attribute("type").unwrap_or("").to_owned(),
                source,
                child("target")
                    .and_then(|t| t.attribute("dev"))
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        nics,
        [
            (
                "network".to_owned(),
                "default".to_owned(),
                format!("ew{vmid}i0")
            ),
            (
                "bridge".to_owned(),
                "br-ew-test".to_owned(),
                format!("ew{vmid}i1")
            ),
        ],
        "{xml}"
    );

    // The qcow2 files: sizes as asked, the first a copy-on-write overlay of the template.
    let info = |p: &str| -> Value {
        serde_json::from_str(&qemu_img(&["info", "--output=json", "-U", p])).expect("JSON")
    };
    let d0 = info(&disks[0].0);
    assert_eq!(d0["format"], "qcow2");
    assert_eq!(d0["virtual-size"], 50u64 << 30);
    assert_eq!(
        d0["backing-filename"],
        b.path("tpl/9000.qcow2").to_str().unwrap()
    );
    assert_eq!(d0["backing-filename-format"], "qcow2");
    let d1 = info(&disks[1].0);
    assert_eq!(d1["virtual-size"], 10u64 << 30);
    assert!(d1.get("backing-filename").is_none(), "{d1}");

    // The seed image, read by independent tools: label, files, a hash and no clear password.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&seed)
        .expect("the seed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let blkid = tool("blkid", &["-o", "export"], &seed, &[]);
    assert!(
        blkid.contains("LABEL=CIDATA") && blkid.contains("TYPE=vfat"),
        "{blkid}"
    );
    let listing = tool("mdir", &["-i"], &seed, &["-b", "::"]);
    for f in ["meta-data", "user-data", "network-config"] {
        assert!(listing.contains(f), "{listing}");
    }
    let user_data = tool("mtype", &["-i"], &seed, &["::user-data"]);
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains("name: \"rocky\""), "{user_data}");
    assert!(user_data.contains("passwd: \"$6$"), "{user_data}");
    assert!(!user_data.contains("password123"));
    let raw = std::fs::read(&seed).unwrap();
    assert!(
        !raw.windows(11).any(|w| w == b"password123"),
        "the clear password is in the image"
    );
    let net = tool("mtype", &["-i"], &seed, &["::network-config"]);
    assert!(
        net.contains("- 192.168.1.103/24") && net.contains("via: 192.168.1.1"),
        "{net}"
    );
    assert!(
        net.contains("nic1:") && net.contains("dhcp4: true"),
        "{net}"
    );
    let meta = tool("mtype", &["-i"], &seed, &["::meta-data"]);
    assert!(
        meta.contains(&format!("local-hostname: \"{name}\"")),
        "{meta}"
    );

    // Addresses: what libvirt reports for the running domain, else the static one.
    let reported: Vec<String> = dom
        .interface_addresses(virt::sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
        .map(|l| {
            l.into_iter()
                .flat_map(|i| i.addrs)
                .map(|a| a.addr)
                .collect()
        })
        .unwrap_or_default();
    let expected = if reported.is_empty() {
        vec!["192.168.1.103".to_owned()]
    } else {
        reported
    };
    assert_eq!(entry["ip_addresses"], json!(expected));

    // stop is a hard stop; a stopped server lists its static address.
    let path = |a: &str| format!("/api/servers/{name}/{a}");
    let (s, j) = b.call(&dev, Method::POST, &path("stop"), None).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["server"]["status"], "stopped", "{j}");
    assert!(!dom.is_active().unwrap());
    let entry = b.list(&dev).await[&name].clone();
    assert_eq!(
        (&entry["status"], &entry["ip_addresses"]),
        (&json!("stopped"), &json!(["192.168.1.103"]))
    );
    let (s, j) = b.call(&dev, Method::POST, &path("start"), None).await;
    assert_eq!(
        (s, &j["server"]["status"]),
        (StatusCode::OK, &json!("running")),
        "{j}"
    );
    assert!(dom.is_active().unwrap());
    let (s, j) = b.call(&dev, Method::POST, &path("reboot"), None).await;
    assert_eq!(
        (s, &j["server"]["status"]),
        (StatusCode::OK, &json!("running")),
        "{j}"
    );

    // A developer may not delete; the admin may, and everything goes.
    let (s, j) = b
        .call(&dev, Method::DELETE, &format!("/api/servers/{name}"), None)
        .await;
    assert_eq!(
        (s, &j["code"]),
        (StatusCode::FORBIDDEN, &json!("PERMISSION_DENIED")),
        "{j}"
    );
    let (s, j) = b
        .call(
            &b.admin,
            Method::DELETE,
            &format!("/api/servers/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["success"], true);
    assert!(virt::domain::Domain::lookup_by_name(&conn, &name).is_err());
    for f in [&disks[0].0, &disks[1].0, &disks[2].0] {
        assert!(!Path::new(f).exists(), "{f} is left");
    }
    assert!(!b.list(&b.admin).await.contains_key(&name));
    assert_eq!(files_in(&b.path("fast")), Vec::<PathBuf>::new());
    assert_eq!(files_in(&b.path("images")), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_failing_create_leaves_nothing_behind() {
    let b = start().await;
    let name = unique("broken");
    // Template 9001 is configured, but its base image does not exist: qemu-img fails.
    let mut body = full_body(&name);
    body["template_vm_id"] = json!(9001);
    let (s, j) = b
        .call(
            &b.admin,
            Method::POST,
            "/api/servers",
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{j}");
    let task_id = j["task_id"].as_str().unwrap().to_owned();
    b.wait_for(&b.admin, &name, |v| v.is_none()).await;
    let task = b.finished_task(&b.admin, &task_id).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["log"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["t"].as_str())
            .is_some_and(|l| l.starts_with("TASK ERROR")),
        "{task}"
    );
    let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
    assert!(virt::domain::Domain::lookup_by_name(&conn, &name).is_err());
    for d in ["fast", "bulk", "images"] {
        assert_eq!(files_in(&b.path(d)), Vec::<PathBuf>::new(), "{d}");
    }
}

#[tokio::test]
async fn every_validation_error_names_its_field_and_creates_nothing() {
    let b = start().await;
    let name = unique("val");
    type Case = (Box<dyn Fn(&mut Value)>, StatusCode, &'static str);
    let cases: Vec<Case> = vec![
        (Box::new(|v| v["name"] = json!("x")), StatusCode::BAD_REQUEST, "name: must be 3-64 characters"),
        (Box::new(|v| v["cpu"] = json!(0)), StatusCode::BAD_REQUEST, "cpu: must be between 1 and 32"),
        (Box::new(|v| v["cpu"] = json!("four")), StatusCode::BAD_REQUEST, "cpu: must be a whole number"),
        (Box::new(|v| v["memory"] = json!(1000)), StatusCode::BAD_REQUEST, "memory: must be a multiple of 256 MB"),
        (Box::new(|v| v["role"] = json!("Web Role")), StatusCode::BAD_REQUEST, "role: must be at most 32 of a-z, 0-9, '-', '_'"),
        (Box::new(|v| v["disks"] = json!("scsi0")), StatusCode::BAD_REQUEST, "disks: must be a list"),
        (Box::new(|v| v["disks"][0]["size"] = json!(0)), StatusCode::BAD_REQUEST, "disks[0].size: must be a whole number from 1 to 16384"),
        (Box::new(|v| v["disks"][1]["interface"] = json!("scsi0")), StatusCode::BAD_REQUEST, "disks[1].interface: is used by another disk"),
        (Box::new(|v| v["disks"][0]["interface"] = json!("nvme0")), StatusCode::BAD_REQUEST, "disks[0].interface: must be scsi0-30, virtio0-15, sata0-5 or ide0-3"),
        (Box::new(|v| v["disks"][0]["disk_type"] = json!("tape")), StatusCode::BAD_REQUEST, "disks[0].disk_type: must be ssd or hdd"),
        (Box::new(|v| v["disks"][1]["datastore_id"] = json!("nas")), StatusCode::BAD_REQUEST, "disks[1].datastore_id: is not configured (configured: bulk, local, local-lvm)"),
        (Box::new(|v| v["network_devices"][1]["bridge"] = json!("vmbr7")), StatusCode::BAD_REQUEST, "network_devices[1].bridge: is not configured (configured: vmbr0, vmbr1)"),
        (Box::new(|v| v["network_devices"][0]["ip_address"] = json!("192.168.1.300")), StatusCode::BAD_REQUEST, "network_devices[0].ip_address: must be an IPv4 host address"),
        (Box::new(|v| v["network_devices"][0]["ip_address"] = json!("192.168.1.104")), StatusCode::BAD_REQUEST, "ip_address: differs from network_devices[0].ip_address"),
        (Box::new(|v| v["network_devices"][0]["subnet"] = json!("40")), StatusCode::BAD_REQUEST, "network_devices[0].subnet: must be a prefix length from 1 to 32 (e.g. \"24\")"),
        (Box::new(|v| v["network_devices"][0]["gateway"] = json!("10.0.0.1")), StatusCode::BAD_REQUEST, "network_devices[0].gateway: must be another address inside the device's subnet"),
        (Box::new(|v| v["template_vm_id"] = json!(9999)), StatusCode::BAD_REQUEST, "template_vm_id: is not configured (configured: 9000, 9001)"),
        (Box::new(|v| v["vm_username"] = json!("root")), StatusCode::BAD_REQUEST, "vm_username: must be a lower-case user name ([a-z_][a-z0-9_-]*, at most 32, not root/daemon/bin/sys/nobody/sync)"),
        (Box::new(|v| v["vm_password"] = json!("short")), StatusCode::BAD_REQUEST, "vm_password: must be 8-128 characters without control characters"),
        (Box::new(|v| v["vm_password"] = json!("")), StatusCode::BAD_REQUEST, "vm_password: is required"),
        (Box::new(|v| *v = json!([1, 2])), StatusCode::BAD_REQUEST, "body: must be a JSON object"),
    ];
    for (change, status, message) in cases {
        let mut body = full_body(&name);
        change(&mut body);
        let (s, j) = b
            .call(
                &b.admin,
                Method::POST,
                "/api/servers",
                Some(&body.to_string()),
            )
            .await;
        let code = if status == StatusCode::BAD_REQUEST {
            "VALIDATION_ERROR"
        } else {
            "CONFLICT"
        };
        assert_eq!(
            (s, j.clone()),
            (
                status,
                json!({"success": false, "error": message, "code": code})
            ),
            "{body}"
        );
    }
    assert!(b.list(&b.admin).await.is_empty());
    for d in ["fast", "bulk", "images"] {
        assert_eq!(files_in(&b.path(d)), Vec::<PathBuf>::new(), "{d}");
    }
    // A name that is taken: 409, before anything is made.
    b.create(&b.admin, &json!({"name": name, "cpu": 1, "memory": 512}))
        .await;
    let (s, j) = b
        .call(
            &b.admin,
            Method::POST,
            "/api/servers",
            Some(&full_body(&name).to_string()),
        )
        .await;
    assert_eq!(
        (s, &j["code"]),
        (StatusCode::CONFLICT, &json!("CONFLICT")),
        "{j}"
    );
    assert!(j["error"].as_str().unwrap().starts_with("name: "), "{j}");
    let (s, _) = b
        .call(
            &b.admin,
            Method::DELETE,
            &format!("/api/servers/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn every_endpoint_checks_its_permission_and_unknown_names_are_404() {
    let b = start().await;
    let dev = b.user("dev1", "developer").await;
    let dev2 = b.user("dev2", "developer").await;
    let op = b.user("op1", "operator").await;
    let viewer = b.user("view1", "viewer").await;
    let name = unique("perm");
    let minimal = json!({"name": name, "cpu": 1, "memory": 512});
    let entry = b.create(&dev, &minimal).await;
    // Defaults: one NIC on vmbr0 with DHCP, no role.
    assert_eq!(entry["role"], "");
    let denied = |s: StatusCode, j: &Value| {
        assert_eq!(
            (s, &j["code"]),
            (StatusCode::FORBIDDEN, &json!("PERMISSION_DENIED")),
            "{j}"
        );
        assert_eq!(j["success"], false);
    };

    // Create: viewer and operator may not.
    for who in [&viewer, &op] {
        let other = json!({"name": unique("nope"), "cpu": 1, "memory": 512}).to_string();
        let (s, j) = b
            .call(who, Method::POST, "/api/servers", Some(&other))
            .await;
        denied(s, &j);
    }
    // Lists: the developer and the admin see it; the viewer and operator (view_all) too; another
    // developer does not.
    for who in [&dev, &b.admin, &viewer, &op] {
        assert!(b.list(who).await.contains_key(&name));
    }
    assert!(!b.list(&dev2).await.contains_key(&name));
    // Power: the operator may on anyone's server; the viewer may not; another developer does not
    // even find it.
    for action in ["stop", "start", "reboot"] {
        let p = format!("/api/servers/{name}/{action}");
        let (s, j) = b.call(&op, Method::POST, &p, None).await;
        assert_eq!(s, StatusCode::OK, "{action}: {j}");
        let (s, j) = b.call(&viewer, Method::POST, &p, None).await;
        denied(s, &j);
        let (s, j) = b.call(&dev2, Method::POST, &p, None).await;
        assert_eq!(
            (s, &j["code"]),
            (StatusCode::NOT_FOUND, &json!("RESOURCE_NOT_FOUND")),
            "{j}"
        );
    }
    // Delete: only with delete_server (none of these roles).
    for who in [&dev, &op, &viewer] {
        let (s, j) = b
            .call(who, Method::DELETE, &format!("/api/servers/{name}"), None)
            .await;
        denied(s, &j);
    }
    // Unknown names: 404 in the envelope, for every action.
    for (method, p) in [
        (Method::POST, "/api/servers/no-such-server/start"),
        (Method::POST, "/api/servers/no-such-server/stop"),
        (Method::POST, "/api/servers/no-such-server/reboot"),
        (Method::DELETE, "/api/servers/no-such-server"),
    ] {
        let (s, j) = b.call(&b.admin, method, p, None).await;
        assert_eq!(
            (s, j),
            (
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "서버를 찾을 수 없습니다.", "code": "RESOURCE_NOT_FOUND"})
            )
        );
    }
    // Without a session: 401 in the envelope.
    let r = request(
        b.server.addr,
        Method::GET,
        "/api/servers",
        &[("cookie", "session=forged")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "AUTHENTICATION_REQUIRED");
    // The admin deletes it.
    let (s, j) = b
        .call(
            &b.admin,
            Method::DELETE,
            &format!("/api/servers/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert!(!b.list(&dev).await.contains_key(&name));
}
