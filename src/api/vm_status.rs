//! Live VM status (seed 004): `/ws/vm-status` (`?token=`, Bearer or the refresh cookie).
//!
//! Right after the upgrade the caller gets `{"type":"vm_list","vms":[…]}`, then
//! `{"type":"vm_update","vm":{…}}` for every change to a VM it may see, and a fresh `vm_list`
//! when one of its VMs is removed (LIMEN's way of telling a delete) or when it fell behind the
//! event stream. Only the caller's own VMs, or every VM for an admin: the original broadcast
//! every VM to everyone. Messages from the client are read and ignored. The stream is bounded
//! (slots per user and in total, a total duration).

use hyper::StatusCode;
use serde_json::{json, Value};

use super::error::ApiError;
use super::http::{Body, Ctx};
use super::vms::vm_json;
use super::{ApiState, Req};
use crate::vm::{Caller, VmEvent, VmView};

/// The VM routes' answer when there is no VM service (a build without `vm`, or libvirt was
/// unreachable at start).
pub fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "VM management is not available in this build",
    )
}

pub fn vm_list(vms: &[VmView]) -> Value {
    json!({"type": "vm_list", "vms": vms.iter().map(vm_json).collect::<Vec<_>>()})
}

pub fn vm_update(vm: &VmView) -> Value {
    json!({"type": "vm_update", "vm": vm_json(vm)})
}

/// What a subscriber should be told about `event`: nothing when it may not see the VM.
#[derive(Debug, PartialEq, Eq)]
pub enum Tell {
    Nothing,
    Update(VmView),
    /// Send the caller's list again.
    Relist,
}

pub fn tell(who: Caller, event: &VmEvent) -> Tell {
    match event {
        VmEvent::Updated(vm) if who.may_see(vm) => Tell::Update(vm.clone()),
        VmEvent::Removed { owner_id, .. } if who.admin || *owner_id == who.user_id => Tell::Relist,
        _ => Tell::Nothing,
    }
}

/// `GET /ws/vm-status`.
pub fn stream(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<hyper::Response<Body>, ApiError> {
    #[cfg(feature = "vm")]
    {
        shell::stream(state, ctx, req)
    }
    #[cfg(not(feature = "vm"))]
    {
        let _ = (state, ctx, req);
        Err(unavailable())
    }
}

#[cfg(feature = "vm")]
mod shell {
    use futures_util::StreamExt as _;
    use tokio::sync::broadcast::error::RecvError;
    use tokio::time::{sleep_until, Instant};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::api::ws::{self, Kind, Socket};
    use crate::vm::VmService;

    pub fn stream(
        state: &ApiState,
        ctx: &Ctx,
        req: &Req,
    ) -> Result<hyper::Response<Body>, ApiError> {
        let vms = state.vms.clone().ok_or_else(unavailable)?;
        let principal = ctx
            .principal
            .clone()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authentication required"))?;
        let who = Caller::from(&principal);
        let limits = state.sockets.limits();
        // Refused before the upgrade: a client over its limit is told in HTTP.
        let slot = state
            .sockets
            .try_open(
                Kind::Status,
                who.user_id,
                limits.status_per_user,
                limits.total,
            )
            .map_err(|full| {
                let limit = match full {
                    ws::Full::User { limit } | ws::Full::Total { limit } => limit,
                };
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("maximum concurrent sessions ({limit}) reached"),
                )
            })?;
        ws::accept(state, ctx, req, move |mut socket| async move {
            let _slot = slot;
            run(&mut socket, &vms, who, limits.status_total).await;
        })
    }

    async fn run(socket: &mut Socket, vms: &VmService, who: Caller, total: std::time::Duration) {
        // Subscribe before listing, so no change falls between the list and the stream.
        let mut events = vms.subscribe();
        if !ws::send_json(socket, &vm_list(&vms.list_for(who))).await {
            return;
        }
        let deadline = Instant::now() + total;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let frame = match event {
                        Ok(event) => match tell(who, &event) {
                            Tell::Nothing => continue,
                            Tell::Update(vm) => vm_update(&vm),
                            Tell::Relist => vm_list(&vms.list_for(who)),
                        },
                        Err(RecvError::Lagged(_)) => vm_list(&vms.list_for(who)),
                        Err(RecvError::Closed) => {
                            ws::close(socket, CloseCode::Away, "VM service stopped").await;
                            return;
                        }
                    };
                    if !ws::send_json(socket, &frame).await {
                        return;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                () = sleep_until(deadline) => {
                    ws::close(socket, CloseCode::Away, "session time limit").await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmStatus;

    fn vm(id: u64, owner: u64) -> VmView {
        VmView {
            id,
            vmid: 100,
            uuid: format!("u{id}"),
            name: format!("vm-{id}"),
            cpu: 2,
            memory: 2048,
            status: VmStatus::Running,
            os_type: "ubuntu-server".into(),
            owner_id: owner,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_what_the_caller_may_see() {
        let alice = Caller {
            user_id: 2,
            admin: false,
        };
        let admin = Caller {
            user_id: 1,
            admin: true,
        };
        let bobs = VmEvent::Updated(vm(7, 3));
        let hers = VmEvent::Updated(vm(8, 2));
        assert_eq!(tell(alice, &bobs), Tell::Nothing);
        assert_eq!(tell(alice, &hers), Tell::Update(vm(8, 2)));
        assert_eq!(tell(admin, &bobs), Tell::Update(vm(7, 3)));
        let gone = |owner_id| VmEvent::Removed {
            id: 7,
            uuid: "u7".into(),
            owner_id,
        };
        assert_eq!(tell(alice, &gone(3)), Tell::Nothing);
        assert_eq!(tell(alice, &gone(2)), Tell::Relist);
        assert_eq!(tell(admin, &gone(3)), Tell::Relist);
    }

    #[test]
    fn messages_have_the_seeds_shape() {
        let v = vm(1, 2);
        let list = vm_list(std::slice::from_ref(&v));
        assert_eq!(list["type"], "vm_list");
        let keys: Vec<_> = list["vms"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "uuid",
                "name",
                "cpu",
                "memory",
                "status",
                "os_type",
                "owner_id",
                "created_at",
                "updated_at"
            ]
        );
        assert_eq!(vm_update(&v)["vm"]["status"], "Running");
        assert_eq!(vm_update(&v)["type"], "vm_update");
    }
}
