//! The VM test kit (feature `vm`): a real edgeward on libvirt's test driver with a node file of
//! our own (domains with fixed VNC ports on 127.0.0.1, which the test driver reports in the
//! live XML but does not serve), VM records for them in the real store, users of both kinds,
//! an RFB server where the running VM's VNC port is, and a WebSocket client.

use std::net::SocketAddr;
use std::path::Path;

use edgeward::store::vms::VmRecord;
use edgeward::store::Store;
use futures::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::accounts::{self, Limen, USER_PASSWORD};
use super::rfb::RfbServer;
use super::{free_port, start_app_scaled, text, TestConfig, TestServer};

pub type Ws = WebSocketStream<TcpStream>;

/// One test VM: a node-file domain and its record.
#[derive(Debug, Clone)]
pub struct TestVm {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    pub vnc_port: u16,
}

pub struct VmBox {
    pub server: TestServer,
    pub admin: Limen,
    pub alice: Limen,
    pub bob: Limen,
    /// Alice's, running, with the RFB server on its VNC port.
    pub running: TestVm,
    /// Alice's, shut off.
    pub stopped: TestVm,
    /// Bob's, running (no VNC server: nobody but bob and the admin may even learn that).
    pub bobs: TestVm,
    pub rfb: RfbServer,
}

fn uuid() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = 0x40 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Every test VM's NIC (by which the metrics sampler reads its counters).
pub const MAC: &str = "52:54:00:00:00:01";

/// A node-file domain: VNC on its fixed port, a disk `vda` and a NIC (the test driver serves
/// their counters without the files existing), a balloon (memory statistics).
fn domain_xml(vm: &TestVm, running: bool) -> String {
    let runstate = if running {
        String::new()
    } else {
        "<test:runstate>5</test:runstate>".to_owned()
    };
    format!(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
         <name>{name}</name><uuid>{uuid}</uuid>\
         <memory unit='MiB'>2048</memory><currentMemory unit='MiB'>2048</currentMemory>\
         <vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os>\
         <devices><graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>\
         <disk type='file' device='disk'><source file='/nonexistent/{uuid}.qcow2'/>\
         <target dev='vda' bus='virtio'/></disk>\
         <interface type='ethernet'><mac address='{MAC}'/></interface>\
         <memballoon model='virtio'/></devices>{runstate}</domain>",
        name = vm.name,
        uuid = vm.uuid,
        port = vm.vnc_port,
    )
}

/// Writes the node file with `vms` (running or not) and returns its `test:///` URI.
fn node_file(dir: &Path, vms: &[(&TestVm, bool)]) -> String {
    let domains: String = vms.iter().map(|(vm, run)| domain_xml(vm, *run)).collect();
    let xml = format!(
        "<node><cpu><mhz>2400</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>\
         <cores>4</cores><threads>1</threads><active>4</active></cpu>\
         <memory>16777216</memory>{domains}</node>"
    );
    let path = dir.join("node.xml");
    std::fs::write(&path, xml).expect("write the node file");
    format!("test://{}", path.display())
}

fn test_vm(name: &str) -> TestVm {
    TestVm {
        id: 0,
        uuid: uuid(),
        name: name.to_owned(),
        vnc_port: free_port(),
    }
}

/// The server's configuration for a box: `[vm]` on the node file, plus `extra` settings.
pub fn vm_config(uri: &str, storage: &Path, extra: &[(&str, &str, String)]) -> String {
    let mut c = accounts::accounts_config()
        .set("vm", "libvirt_uri", text(uri))
        .set("vm", "storage_dir", text(storage.display().to_string()));
    for (table, key, value) in extra {
        c = c.set(table, key, value.clone());
    }
    c.to_string()
}

/// A box with three VMs (see [`VmBox`]); `extra` goes into the configuration.
pub async fn start(extra: &[(&str, &str, String)]) -> VmBox {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut running = test_vm(&format!("console-{}", &uuid()[..8]));
    let mut stopped = test_vm(&format!("stopped-{}", &uuid()[..8]));
    let mut bobs = test_vm(&format!("bobs-{}", &uuid()[..8]));
    let uri = node_file(
        tmp.path(),
        &[(&running, true), (&stopped, false), (&bobs, true)],
    );
    let toml = vm_config(&uri, &tmp.path().join("images"), extra);
    let mut server = TestServer::start(&toml).await;
    let admin = accounts::admin(&server).await;
    accounts::create_user(&server, &admin, "alice", "user").await;
    accounts::create_user(&server, &admin, "bob", "user").await;
    let alice_id = accounts::limen_login(&server, "alice", USER_PASSWORD)
        .await
        .user_id;
    let bob_id = accounts::limen_login(&server, "bob", USER_PASSWORD)
        .await
        .user_id;

    // The records, written into the server's own store while it is down.
    server.app.take().expect("running").shutdown().await;
    {
        let store = Store::open(&server.store_path()).expect("open the store");
        for (vm, owner, status) in [
            (&mut running, alice_id, "Running"),
            (&mut stopped, alice_id, "Stopped"),
            (&mut bobs, bob_id, "Running"),
        ] {
            let rec = VmRecord {
                id: 0,
                vmid: 0,
                uuid: vm.uuid.clone(),
                name: vm.name.clone(),
                cpu: 2,
                memory_mb: 2048,
                status: status.to_owned(),
                os_type: "ubuntu-desktop".to_owned(),
                owner_id: owner,
                mac: MAC.to_owned(),
                disk_path: String::new(),
                created_at: 1_700_000_000_000,
                updated_at: 1_700_000_000_000,
                ..VmRecord::default()
            };
            vm.id = store
                .insert_vm(&rec)
                .expect("store")
                .expect("a unique name")
                .id;
        }
    }
    let app = start_app_scaled(
        &server.toml,
        &server.store_path(),
        &server.clock,
        server.scale,
    )
    .await;
    server.addr = app.http_addrs[0];
    server.app = Some(app);
    // Keep the node file for the server's lifetime.
    std::mem::forget(tmp);
    let admin = accounts::admin(&server).await;
    let alice = accounts::limen_login(&server, "alice", USER_PASSWORD).await;
    let bob = accounts::limen_login(&server, "bob", USER_PASSWORD).await;
    let rfb = RfbServer::start(running.vnc_port).await;
    VmBox {
        server,
        admin,
        alice,
        bob,
        running,
        stopped,
        bobs,
        rfb,
    }
}

/// Opens a WebSocket to `path` with `headers`; the HTTP status when the server refuses.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Ws, hyper::HeaderMap), StatusCode> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a WebSocket URL");
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).expect("header value"));
    }
    let tcp = TcpStream::connect(addr).await.expect("connect");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            let mut h = hyper::HeaderMap::new();
            for (k, v) in resp.headers() {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                    hyper::header::HeaderValue::from_bytes(v.as_bytes()),
                ) {
                    h.insert(k, v);
                }
            }
            Ok((ws, h))
        }
        Err(WsError::Http(resp)) => {
            Err(StatusCode::from_u16(resp.status().as_u16()).expect("a status"))
        }
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// The next text frame as JSON (and its exact text); panics on anything else or after 10 s.
pub async fn next_text(ws: &mut Ws) -> (String, Value) {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match msg {
            Message::Text(t) => {
                let s = t.to_string();
                let v = serde_json::from_str(&s).expect("JSON");
                return (s, v);
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next binary frame's bytes ("" when the socket closes).
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        match msg {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => return Vec::new(),
            Some(Ok(other)) => panic!("expected a binary frame, got {other:?}"),
            Some(Err(e)) => panic!("socket error: {e}"),
        }
    }
}

/// The socket closes next (a close frame or the end), after at most 10 s.
pub async fn closes(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(_))) => return false,
            Err(_) => return false,
        }
    }
}

pub async fn send_binary(ws: &mut Ws, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into()))
        .await
        .expect("send");
}
