//! `GET /api/servers/status/stream` (seed 003's live server status, Server-Sent Events).
//!
//! One `data:` event per server, `{"name","vmid","status","event"}`: on connect one per server
//! the caller may see with `"event":"snapshot"` (no servers: only keep-alive comments), then one
//! per change — `created`, `started`, `stopped`, `paused`, `resumed`, `error` (the status
//! changed to that), `updated` (something else about it changed) and `deleted` (with
//! `"status":"deleted"`). A subscriber that fell behind the VM service's events gets the whole
//! state again as `snapshot` events (and `deleted` for servers gone meanwhile). A `: keepalive`
//! comment follows every 15 s without an event. Visibility as in `grafana.rs`: own servers, or
//! every server for an admin or a `view_all` holder.

use std::collections::HashMap;

use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use super::error::ApiError;
use super::grafana::ops_caller;
use super::http::{Body, Ctx};
use super::sse;
use super::vm_status::unavailable;
use super::ApiState;
use crate::vm::{Caller, VmEvent, VmService, VmStatus, VmView};

/// What a subscriber has been told: per VM id its name, vmid and status.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<u64, (String, u32, VmStatus)>,
}

fn server_event(vm: &VmView, event: &str) -> Value {
    json!({"name": vm.name, "vmid": vm.vmid, "status": vm.status.proxmox_word(), "event": event})
}

/// The event word for a status going from `before` to `now`.
fn change(before: Option<VmStatus>, now: VmStatus) -> &'static str {
    match (before, now) {
        (None, _) => "created",
        (Some(b), n) if b == n => "updated",
        (Some(VmStatus::Paused), VmStatus::Running) => "resumed",
        (_, VmStatus::Running) => "started",
        (_, VmStatus::Stopped) => "stopped",
        (_, VmStatus::Paused) => "paused",
        (_, VmStatus::Error) => "error",
    }
}

impl Tracker {
    /// The whole state (`visible` = every server the caller may see now): a `snapshot` per
    /// server, and `deleted` for servers told before that are gone.
    pub fn snapshot(&mut self, visible: &[VmView]) -> Vec<Value> {
        let mut out: Vec<Value> = visible
            .iter()
            .map(|v| server_event(v, "snapshot"))
            .collect();
        let now: HashMap<u64, (String, u32, VmStatus)> = visible
            .iter()
            .map(|v| (v.id, (v.name.clone(), v.vmid, v.status)))
            .collect();
        for (id, (name, vmid, _)) in &self.seen {
            if !now.contains_key(id) {
                out.push(deleted(name, *vmid));
            }
        }
        self.seen = now;
        out
    }

    /// What `who` is told about `event`, if anything.
    pub fn on_event(&mut self, who: Caller, event: &VmEvent) -> Option<Value> {
        match event {
            VmEvent::Updated(vm) if who.may_see(vm) => {
                let before = self.seen.get(&vm.id).map(|s| s.2);
                self.seen
                    .insert(vm.id, (vm.name.clone(), vm.vmid, vm.status));
                Some(server_event(vm, change(before, vm.status)))
            }
            VmEvent::Removed { id, .. } => {
                let (name, vmid, _) = self.seen.remove(id)?;
                Some(deleted(&name, vmid))
            }
            VmEvent::Updated(_) => None,
        }
    }
}

fn deleted(name: &str, vmid: u32) -> Value {
    json!({"name": name, "vmid": vmid, "status": "deleted", "event": "deleted"})
}

/// `GET /api/servers/status/stream`.
pub fn stream(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let vms = state.vms.clone().ok_or_else(unavailable)?;
    let who = ops_caller(ctx)?;
    // Subscribe before the first listing, so no change falls between the two.
    let events = vms.subscribe();
    let (tx, body) = sse::channel();
    tokio::spawn(produce(vms, who, events, tx));
    Ok(body
        .keepalive(state.sse_keepalive)
        .until(state.shutdown.clone())
        .response())
}

/// Feeds one subscriber until it goes away (or the VM service stops).
async fn produce(
    vms: VmService,
    who: Caller,
    mut events: broadcast::Receiver<VmEvent>,
    tx: sse::Sender,
) {
    let mut tracker = Tracker::default();
    for e in tracker.snapshot(&vms.list_for(who)) {
        if tx.send(e).await.is_err() {
            return;
        }
    }
    loop {
        let out = tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => tracker.on_event(who, &ev).into_iter().collect(),
                Err(RecvError::Lagged(_)) => tracker.snapshot(&vms.list_for(who)),
                Err(RecvError::Closed) => return,
            },
            () = tx.closed() => return,
        };
        for e in out {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(id: u64, owner: u64, status: VmStatus) -> VmView {
        VmView {
            id,
            vmid: 99 + u32::try_from(id).unwrap(),
            uuid: format!("u{id}"),
            name: format!("vm-{id}"),
            cpu: 2,
            memory: 2048,
            status,
            os_type: "ubuntu-server".into(),
            owner_id: owner,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn snapshot_then_changes_filtered_per_caller() {
        let alice = Caller {
            user_id: 2,
            admin: false,
        };
        let mut t = Tracker::default();
        let first = t.snapshot(&[vm(1, 2, VmStatus::Running)]);
        assert_eq!(
            first,
            [json!({"name": "vm-1", "vmid": 100, "status": "running", "event": "snapshot"})]
        );
        let up = VmEvent::Updated;
        assert_eq!(
            t.on_event(alice, &up(vm(1, 2, VmStatus::Stopped))).unwrap()["event"],
            "stopped"
        );
        assert_eq!(
            t.on_event(alice, &up(vm(1, 2, VmStatus::Running))).unwrap()["event"],
            "started"
        );
        assert_eq!(
            t.on_event(alice, &up(vm(1, 2, VmStatus::Running))).unwrap()["event"],
            "updated"
        );
        // Bob's VM: nothing, neither its change nor its removal.
        assert_eq!(t.on_event(alice, &up(vm(3, 4, VmStatus::Running))), None);
        let gone = |id, owner_id| VmEvent::Removed {
            id,
            uuid: format!("u{id}"),
            owner_id,
        };
        assert_eq!(t.on_event(alice, &gone(3, 4)), None);
        // A new VM of hers, then its removal.
        assert_eq!(
            t.on_event(alice, &up(vm(5, 2, VmStatus::Running))).unwrap()["event"],
            "created"
        );
        assert_eq!(
            t.on_event(alice, &gone(5, 2)).unwrap(),
            json!({"name": "vm-5", "vmid": 104, "status": "deleted", "event": "deleted"})
        );
        // Resync after a lag: what is gone is told as deleted.
        let again = t.snapshot(&[]);
        assert_eq!(
            again,
            [json!({"name": "vm-1", "vmid": 100, "status": "deleted", "event": "deleted"})]
        );
        assert_eq!(change(Some(VmStatus::Paused), VmStatus::Running), "resumed");
        assert_eq!(change(Some(VmStatus::Running), VmStatus::Paused), "paused");
    }
}
