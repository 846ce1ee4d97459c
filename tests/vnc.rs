//! The VNC console and the live VM status over real WebSockets, against libvirt's test driver
//! (a node file with fixed VNC ports) and a real RFB server on the running VM's port: the
//! seed's status frames, then a real RFB 3.8 handshake through ServerInit relayed both ways;
//! owner or admin only; every refusal; the `binary` subprotocol; Origin; session bounds.
#![cfg(feature = "vm")]

mod common;

use common::rfb::{NAME, VERSION};
use common::vm::{self, closes, connect, next_binary, next_text, send_binary, Ws};
use hyper::StatusCode;
use serde_json::json;

const CONNECTED: &str = r#"{"type":"status","message":"Connected, checking VM status..."}"#;
const GETTING_PORT: &str = r#"{"type":"status","message":"Getting VNC port..."}"#;
const ESTABLISHED: &str =
    r#"{"type":"status","message":"VNC connection established, starting proxy..."}"#;

/// Reads the status frames up to "starting proxy", then does the client side of the RFB
/// handshake through the relay; the desktop name from ServerInit.
async fn status_then_rfb(ws: &mut Ws, port: u16) -> String {
    assert_eq!(next_text(ws).await.0, CONNECTED);
    assert_eq!(next_text(ws).await.0, GETTING_PORT);
    assert_eq!(
        next_text(ws).await.0,
        format!(r#"{{"type":"status","message":"Connecting to VNC server on port {port}..."}}"#)
    );
    assert_eq!(next_text(ws).await.0, ESTABLISHED);
    let mut buf = Vec::new();
    // The socket yields binary frames in whatever chunks TCP gave the relay.
    macro_rules! take {
        ($n:expr) => {{
            while buf.len() < $n {
                let chunk = next_binary(ws).await;
                assert!(!chunk.is_empty(), "the RFB stream ended early");
                buf.extend_from_slice(&chunk);
            }
            buf.drain(..$n).collect::<Vec<u8>>()
        }};
    }
    assert_eq!(take!(12), VERSION.to_vec(), "the server's RFB version");
    send_binary(ws, VERSION).await;
    assert_eq!(take!(2), [1, 1], "one security type: None");
    send_binary(ws, &[1]).await;
    assert_eq!(take!(4), [0, 0, 0, 0], "SecurityResult OK");
    send_binary(ws, &[1]).await; // ClientInit, shared
    let init = take!(24);
    assert_eq!(u16::from_be_bytes([init[0], init[1]]), common::rfb::WIDTH);
    assert_eq!(u16::from_be_bytes([init[2], init[3]]), common::rfb::HEIGHT);
    let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    String::from_utf8(take!(len)).expect("a UTF-8 name")
}

#[tokio::test]
async fn the_console_relays_a_real_rfb_handshake_after_the_seeds_status_frames() {
    let b = vm::start(&[]).await;
    let addr = b.server.addr;
    let port = b.running.vnc_port;
    // Seed 004's URL: ?id=<integer id>&token=.
    let path = format!("/ws/vnc?id={}&token={}", b.running.id, b.alice.access);
    let (mut ws, _) = connect(addr, &path, &[]).await.expect("upgraded");
    assert_eq!(status_then_rfb(&mut ws, port).await, NAME);
    // Client to server flows too: a FramebufferUpdateRequest reaches the RFB server, and the
    // frame it answers with comes back.
    send_binary(&mut ws, &[3, 0, 0, 0, 0, 0, 0, 1, 0, 1]).await;
    let update = next_binary(&mut ws).await;
    assert_eq!(update[0], 0, "a FramebufferUpdate");
    assert_eq!(b.rfb.handshakes(), 1);
    assert_eq!(
        b.rfb.seen.client_version.lock().unwrap().as_deref(),
        Some("RFB 003.008\n")
    );
    assert!(b.rfb.seen.messages.lock().unwrap().contains(&3));
    drop(ws);

    // /vnc/{uuid} with the Bearer header, /vnc?uuid= with the refresh cookie, and the admin.
    let (mut ws, _) = connect(
        addr,
        &format!("/vnc/{}", b.running.uuid),
        &[("authorization", &b.alice.bearer())],
    )
    .await
    .expect("upgraded");
    assert_eq!(status_then_rfb(&mut ws, port).await, NAME);
    drop(ws);
    let cookie = b.alice.cookies();
    let (mut ws, _) = connect(
        addr,
        &format!("/vnc?uuid={}", b.running.uuid),
        &[("cookie", &cookie)],
    )
    .await
    .expect("upgraded");
    assert_eq!(status_then_rfb(&mut ws, port).await, NAME);
    drop(ws);
    let (mut ws, _) = connect(
        addr,
        &format!("/ws/vnc?id={}&token={}", b.running.uuid, b.admin.access),
        &[],
    )
    .await
    .expect("upgraded");
    assert_eq!(status_then_rfb(&mut ws, port).await, NAME);
}

#[tokio::test]
async fn refusals_in_the_seeds_words() {
    let b = vm::start(&[]).await;
    let addr = b.server.addr;
    let alice = b.alice.access.clone();
    let frames = |path: String| async move {
        let (mut ws, _) = connect(addr, &path, &[]).await.expect("upgraded");
        assert_eq!(next_text(&mut ws).await.0, CONNECTED);
        let (text, _) = next_text(&mut ws).await;
        assert!(closes(&mut ws).await, "closed after {text}");
        text
    };
    assert_eq!(
        frames(format!("/ws/vnc?token={alice}")).await,
        r#"{"type":"error","error":"VM UUID is required","code":"MISSING_VM_UUID"}"#
    );
    assert_eq!(
        frames(format!("/ws/vnc?id=999&token={alice}")).await,
        r#"{"type":"error","error":"VM not found","code":"VM_NOT_FOUND","vm_uuid":"999"}"#
    );
    // Bob's VM is not alice's: exactly like a VM that does not exist, and nothing dialled.
    assert_eq!(
        frames(format!("/ws/vnc?id={}&token={alice}", b.bobs.id)).await,
        format!(
            r#"{{"type":"error","error":"VM not found","code":"VM_NOT_FOUND","vm_uuid":"{}"}}"#,
            b.bobs.id
        )
    );
    assert_eq!(
        frames(format!("/ws/vnc?id={}&token={alice}", b.stopped.id)).await,
        r#"{"type":"error","error":"VM is not running","code":"VM_NOT_RUNNING","status":"Stopped"}"#
    );
    assert_eq!(
        b.rfb.connections(),
        0,
        "no refused console reached the VNC server"
    );

    // Before the upgrade: no credential, a bad one, a plain GET.
    let path = format!("/ws/vnc?id={}", b.running.id);
    assert_eq!(
        connect(addr, &path, &[]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        connect(addr, &format!("{path}&token=nope"), &[])
            .await
            .err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let plain = common::request(
        addr,
        hyper::Method::GET,
        &format!("{path}&token={alice}"),
        &[],
        None,
    )
    .await;
    assert_eq!(plain.status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(plain.headers["upgrade"], "websocket");
    assert_eq!(
        plain.json(),
        json!({"code": 426, "message": "WebSocket connection required. Please use WebSocket client to connect.", "error": "Upgrade Required"})
    );
}

#[tokio::test]
async fn a_foreign_page_cannot_ride_the_cookie_and_binary_is_answered() {
    let b = vm::start(&[(
        "api",
        "allowed_origins",
        "[\"http://app.example\"]".to_owned(),
    )])
    .await;
    let addr = b.server.addr;
    let path = format!("/vnc?uuid={}", b.running.uuid);
    let cookie = b.alice.cookies();
    assert_eq!(
        connect(
            addr,
            &path,
            &[("cookie", &cookie), ("origin", "http://evil.example")]
        )
        .await
        .err(),
        Some(StatusCode::FORBIDDEN)
    );
    // A listed origin, offering websockify's `binary`: answered with it.
    let (mut ws, headers) = connect(
        addr,
        &path,
        &[
            ("cookie", &cookie),
            ("origin", "http://app.example"),
            ("sec-websocket-protocol", "binary"),
        ],
    )
    .await
    .expect("upgraded");
    assert_eq!(headers["sec-websocket-protocol"], "binary");
    assert_eq!(status_then_rfb(&mut ws, b.running.vnc_port).await, NAME);
    assert_eq!(b.rfb.connections(), 1);
}

#[tokio::test]
async fn consoles_per_user_are_bounded() {
    // `vm.console_sessions_per_user` (default 2) set to 1.
    let b = vm::start(&[("vm", "console_sessions_per_user", "1".to_owned())]).await;
    let addr = b.server.addr;
    let path = format!("/ws/vnc?id={}&token={}", b.running.id, b.alice.access);
    let (mut one, _) = connect(addr, &path, &[]).await.expect("upgraded");
    status_then_rfb(&mut one, b.running.vnc_port).await;
    let (mut three, _) = connect(addr, &path, &[]).await.expect("upgraded");
    assert_eq!(next_text(&mut three).await.0, CONNECTED);
    assert_eq!(
        next_text(&mut three).await.0,
        r#"{"type":"error","error":"maximum concurrent sessions (1) reached","code":"SESSION_CREATE_FAILED"}"#
    );
    assert!(closes(&mut three).await);
    // The admin's slots are their own; a closed console frees one.
    let admin_path = format!("/ws/vnc?id={}&token={}", b.running.id, b.admin.access);
    let (mut adm, _) = connect(addr, &admin_path, &[]).await.expect("upgraded");
    status_then_rfb(&mut adm, b.running.vnc_port).await;
    drop(one);
    let mut freed = false;
    for _ in 0..50 {
        let (mut again, _) = connect(addr, &path, &[]).await.expect("upgraded");
        assert_eq!(next_text(&mut again).await.0, CONNECTED);
        if next_text(&mut again).await.0 == GETTING_PORT {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "closing a console frees its slot");
}

#[tokio::test]
async fn vm_status_lists_and_updates_only_what_the_caller_may_see() {
    let b = vm::start(&[]).await;
    let addr = b.server.addr;
    let (mut alice, _) = connect(
        addr,
        &format!("/ws/vm-status?vm_id=1&token={}", b.alice.access),
        &[],
    )
    .await
    .expect("upgraded");
    let (_, list) = next_text(&mut alice).await;
    assert_eq!(list["type"], "vm_list");
    let names: Vec<_> = list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, [b.running.name.clone(), b.stopped.name.clone()]);
    let vm = &list["vms"][0];
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
        assert!(!vm[key].is_null(), "{key}");
    }
    let (mut admin, _) = connect(
        addr,
        "/ws/vm-status",
        &[("authorization", &b.admin.bearer())],
    )
    .await
    .expect("upgraded");
    let (_, all) = next_text(&mut admin).await;
    assert_eq!(all["vms"].as_array().unwrap().len(), 3);

    // Bob's VM stops: the admin hears of it, alice does not. Then alice's starts: both hear.
    let stop = common::accounts::call(
        &b.server,
        hyper::Method::POST,
        &format!("/api/vms/{}/action", b.bobs.id),
        &b.bob.bearer(),
        Some(r#"{"action":"stop"}"#),
    )
    .await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.text());
    let (_, update) = next_text(&mut admin).await;
    assert_eq!(update["type"], "vm_update");
    assert_eq!(update["vm"]["uuid"], b.bobs.uuid.as_str());
    assert_eq!(update["vm"]["status"], "Stopped");
    let start = common::accounts::call(
        &b.server,
        hyper::Method::POST,
        &format!("/api/vms/{}/action", b.stopped.id),
        &b.alice.bearer(),
        Some(r#"{"action":"start"}"#),
    )
    .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let (_, mine) = next_text(&mut alice).await;
    assert_eq!(mine["type"], "vm_update");
    assert_eq!(
        mine["vm"]["uuid"],
        b.stopped.uuid.as_str(),
        "alice's first update is her own VM"
    );
    assert_eq!(mine["vm"]["status"], "Running");

    assert_eq!(
        connect(addr, "/ws/vm-status", &[]).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
}
