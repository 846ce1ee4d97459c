//! The VNC console (seeds 002/004): `/ws/vnc?id=…`, `/vnc?uuid=…`, `/vnc/{uuid}`.
//!
//! The route table has already authenticated the caller (query token → Bearer → refresh
//! cookie) and `ws::accept` checks the upgrade and the `Origin`. After the `101` the session
//! speaks the seed's JSON text frames, byte for byte, then relays: bytes from the VM's VNC
//! server go out as binary frames, binary frames from the client go to the VNC server. Stock
//! noVNC ignores the text frames (their data is a string; it reads an empty array and logs
//! "Ignoring empty message"), so the RFB stream starts at the first binary frame.
//!
//! Only the VM's owner or an admin gets a console; anyone else is told `VM_NOT_FOUND`, exactly
//! as for a VM that does not exist. The VNC address comes from the VM's live domain XML (never
//! a port scan). A stopped VM is not started by opening its console (a read must not spend the
//! owner's quota or boot a guest): it gets `VM_NOT_RUNNING`. Sessions are bounded: slots per
//! user and in total, an idle and a total timeout ([`super::ws::Limits`]).

use serde_json::{json, Value};

use super::error::ApiError;
use super::http::{query_param, Body, Ctx};
use super::route::Params;
use super::{ApiState, Req};
use crate::vm::VmView;

/// The status frames, in the order the seed shows them.
pub const CONNECTED: &str = "Connected, checking VM status...";
pub const GETTING_PORT: &str = "Getting VNC port...";
pub const ESTABLISHED: &str = "VNC connection established, starting proxy...";

/// `{"type":"status","message":…}`.
pub fn status(message: &str) -> Value {
    json!({"type": "status", "message": message})
}

pub fn connecting(port: u16) -> Value {
    status(&format!("Connecting to VNC server on port {port}..."))
}

pub fn missing_uuid() -> Value {
    json!({"type": "error", "error": "VM UUID is required", "code": "MISSING_VM_UUID"})
}

pub fn not_found(key: &str) -> Value {
    json!({"type": "error", "error": "VM not found", "code": "VM_NOT_FOUND", "vm_uuid": key})
}

/// Seed 002's shape (`status` is the VM's).
pub fn not_running(vm: &VmView) -> Value {
    json!({"type": "error", "error": "VM is not running", "code": "VM_NOT_RUNNING", "status": vm.status.as_str()})
}

pub fn port_error(details: &str) -> Value {
    json!({
        "type": "error", "error": "Failed to get VNC port", "code": "VNC_PORT_ERROR",
        "details": details,
        "message": "VNC port not available yet. Please wait a moment and try again.",
    })
}

pub fn connection_failed(address: &str) -> Value {
    json!({
        "type": "error", "error": "Failed to connect to VNC server", "code": "VNC_CONNECTION_FAILED",
        "address": address,
        "message": "VNC server not ready. Please wait a moment and try again.",
    })
}

pub fn too_many(limit: usize) -> Value {
    json!({
        "type": "error", "error": format!("maximum concurrent sessions ({limit}) reached"),
        "code": "SESSION_CREATE_FAILED",
    })
}

/// Which VM the request names: query `id`, then query `uuid`, then the path's `{uuid}`.
pub fn vm_key(query: Option<&str>, params: &Params) -> Option<String> {
    query_param(query, "id")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| query_param(query, "uuid").filter(|v| !v.trim().is_empty()))
        .or_else(|| Some(params.get("uuid").to_owned()).filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
}

/// The handler of the three console routes.
pub fn console(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<hyper::Response<Body>, ApiError> {
    #[cfg(feature = "vm")]
    {
        shell::console(state, ctx, req, params)
    }
    #[cfg(not(feature = "vm"))]
    {
        let _ = (state, ctx, req, params);
        Err(super::vm_status::unavailable())
    }
}

#[cfg(feature = "vm")]
mod shell {
    use std::net::SocketAddr;
    use std::time::Duration;

    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio::time::{sleep_until, timeout, Instant};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::api::vm_status::unavailable;
    use crate::api::ws::{self, Kind, Socket};
    use crate::vm::{Caller, VmError, VmService, VmStatus};

    /// Dial attempts (LIMEN: 3 tries, 3 s each, 500 ms apart).
    const DIAL_TRIES: u32 = 3;
    const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
    const DIAL_PAUSE: Duration = Duration::from_millis(500);
    /// Relay buffer (LIMEN's 32 KiB).
    const RELAY_BUFFER: usize = 32 * 1024;

    pub fn console(
        state: &ApiState,
        ctx: &Ctx,
        req: &Req,
        params: &Params,
    ) -> Result<hyper::Response<Body>, ApiError> {
        let vms = state.vms.clone().ok_or_else(unavailable)?;
        let principal = ctx.principal.clone().ok_or_else(|| {
            ApiError::new(hyper::StatusCode::UNAUTHORIZED, "Authentication required")
        })?;
        let key = vm_key(req.query.as_deref(), params);
        let sockets = state.sockets.clone();
        let who = Caller::from(&principal);
        ws::accept(state, ctx, req, move |mut socket| async move {
            session(&mut socket, &vms, &sockets, who, key).await;
        })
    }

    /// Says `frame` and closes normally.
    async fn refuse(socket: &mut Socket, frame: Value) {
        ws::send_json(socket, &frame).await;
        ws::close(socket, CloseCode::Normal, "").await;
    }

    async fn session(
        socket: &mut Socket,
        vms: &VmService,
        sockets: &ws::Sessions,
        who: Caller,
        key: Option<String>,
    ) {
        if !ws::send_json(socket, &status(CONNECTED)).await {
            return;
        }
        let Some(key) = key else {
            return refuse(socket, missing_uuid()).await;
        };
        let vm = match vms.find_for(&key, who) {
            Ok(vm) => vm,
            Err(_) => return refuse(socket, not_found(&key)).await,
        };
        if vm.status != VmStatus::Running {
            return refuse(socket, not_running(&vm)).await;
        }
        let limits = sockets.limits();
        let _slot = match sockets.try_open(
            Kind::Console,
            who.user_id,
            limits.console_per_user,
            limits.total,
        ) {
            Ok(slot) => slot,
            Err(ws::Full::User { limit } | ws::Full::Total { limit }) => {
                return refuse(socket, too_many(limit)).await
            }
        };
        ws::send_json(socket, &status(GETTING_PORT)).await;
        let addr = match vms.vnc_addr(&vm.uuid).await {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                return refuse(socket, port_error("the VM has no VNC server listening")).await
            }
            Err(VmError::NotRunning) => return refuse(socket, not_running(&vm)).await,
            Err(e) => return refuse(socket, port_error(&e.to_string())).await,
        };
        ws::send_json(socket, &connecting(addr.port())).await;
        let Some(tcp) = dial(addr).await else {
            return refuse(socket, connection_failed(&addr.to_string())).await;
        };
        if !ws::send_json(socket, &status(ESTABLISHED)).await {
            return;
        }
        let end = relay(socket, tcp, limits.console_idle, limits.console_total).await;
        log::info!(
            "console of VM {} for user {} ended: {end}",
            vm.uuid,
            who.user_id
        );
    }

    async fn dial(addr: SocketAddr) -> Option<TcpStream> {
        for attempt in 0..DIAL_TRIES {
            if attempt > 0 {
                tokio::time::sleep(DIAL_PAUSE).await;
            }
            if let Ok(Ok(tcp)) = timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
                let _ = tcp.set_nodelay(true);
                return Some(tcp);
            }
        }
        None
    }

    /// Bytes both ways until either side ends or a bound is hit; says why it ended.
    async fn relay(
        socket: &mut Socket,
        mut tcp: TcpStream,
        idle: Duration,
        total: Duration,
    ) -> &'static str {
        let deadline = Instant::now() + total;
        let mut idle_at = Instant::now() + idle;
        let mut buf = vec![0u8; RELAY_BUFFER];
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => {
                    match read {
                        Ok(0) | Err(_) => {
                            ws::close(socket, CloseCode::Normal, "VNC server closed the connection").await;
                            return "the VNC server closed";
                        }
                        Ok(n) => {
                            idle_at = Instant::now() + idle;
                            let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                            if socket.send(Message::Binary(chunk)).await.is_err() {
                                return "the client went away";
                            }
                        }
                    }
                }
                frame = socket.next() => {
                    match frame {
                        Some(Ok(Message::Binary(data))) => {
                            idle_at = Instant::now() + idle;
                            if tcp.write_all(&data).await.is_err() {
                                ws::close(socket, CloseCode::Normal, "VNC server closed the connection").await;
                                return "the VNC server closed";
                            }
                        }
                        // Pings are answered by the socket itself; text is not RFB.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) | None => return "the client closed",
                        Some(Err(_)) => return "the client broke the protocol",
                    }
                }
                () = sleep_until(idle_at) => {
                    ws::close(socket, CloseCode::Away, "console idle timeout").await;
                    return "idle timeout";
                }
                () = sleep_until(deadline) => {
                    ws::close(socket, CloseCode::Away, "console session time limit").await;
                    return "total time limit";
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmStatus;

    #[test]
    fn frames_are_the_seeds_bytes() {
        assert_eq!(
            status(CONNECTED).to_string(),
            r#"{"type":"status","message":"Connected, checking VM status..."}"#
        );
        assert_eq!(
            connecting(5900).to_string(),
            r#"{"type":"status","message":"Connecting to VNC server on port 5900..."}"#
        );
        assert_eq!(
            status(ESTABLISHED).to_string(),
            r#"{"type":"status","message":"VNC connection established, starting proxy..."}"#
        );
        assert_eq!(
            missing_uuid().to_string(),
            r#"{"type":"error","error":"VM UUID is required","code":"MISSING_VM_UUID"}"#
        );
        assert_eq!(
            not_found("abc").to_string(),
            r#"{"type":"error","error":"VM not found","code":"VM_NOT_FOUND","vm_uuid":"abc"}"#
        );
        let vm = VmView {
            id: 1,
            vmid: 100,
            uuid: "u".into(),
            name: "n".into(),
            cpu: 1,
            memory: 512,
            status: VmStatus::Stopped,
            os_type: "ubuntu-server".into(),
            owner_id: 1,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(
            not_running(&vm).to_string(),
            r#"{"type":"error","error":"VM is not running","code":"VM_NOT_RUNNING","status":"Stopped"}"#
        );
    }

    #[test]
    fn the_vm_is_named_by_id_then_uuid_then_path() {
        let path = |uuid: &str| match crate::api::routes::find("GET", &format!("/vnc/{uuid}")) {
            crate::api::routes::Matched::Route(_, p) => p,
            _ => Params::default(),
        };
        assert_eq!(
            vm_key(Some("id=1&uuid=x"), &path("p")).as_deref(),
            Some("1")
        );
        assert_eq!(
            vm_key(Some("uuid=x&token=t"), &path("p")).as_deref(),
            Some("x")
        );
        assert_eq!(vm_key(Some("token=t"), &path("p")).as_deref(), Some("p"));
        assert_eq!(vm_key(Some("id=&uuid="), &path("")), None);
        assert_eq!(vm_key(None, &path("")), None);
    }
}
