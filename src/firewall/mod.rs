//! Firewall security groups for guests (seed 003, Proxmox's "security groups"): named groups of
//! inbound rules, assigned to VMs by vmid, enforced in nftables in edgeward's own table.
//!
//! Parts: [`rules`] (what a group name and a rule may be; pure), [`render`] (the whole table as
//! one nft script; pure, deterministic), [`nft`] (the shell that loads it) and
//! [`FirewallService`] (the groups and assignments in the store and in the kernel, in step).
//!
//! **Family and hooks.** Guests sit on a bridge, and each guest's NIC is a bridge port named
//! after its vmid (`ew<vmid>i0`, handed in by `app.rs` from the VM domain). Traffic reaches a
//! guest three ways: from another guest (bridged: the `inet` hooks never see it), from the host
//! itself (the bridge's local output), and from the uplink routed by the host (forwarded by the
//! IP layer, then sent out of the bridge device: the bridge's local output again). One table,
//! `bridge edgeward_guests`, with base chains on the bridge `forward` and `output` hooks, sees
//! all three; both dispatch on `oifname` (the bridge port the frame leaves through) through
//! the verdict map `guest_in` to `vm_<vmid>`. A VM with no group is not in the map: untouched
//! (accept). A VM with groups: replies (below), then what a guest needs to have a network at
//! all (ARP, IPv6 neighbour discovery and router adverts, DHCP/DHCPv6 replies), then each of
//! its groups' chains `sg_<name>` in the order they were applied, then **drop** (Proxmox's
//! `policy_in DROP`). Outbound from a guest is not filtered (Proxmox's `policy_out ACCEPT`).
//! A libvirt NAT network (`virbr0`) is a bridge too, so the same chains hold there. Not
//! covered: a guest's second and later NICs (`ew<vmid>i1…`: edgeward gives VMs one), NICs that
//! are no bridge port (macvtap, passthrough), and anything that reaches a guest without leaving
//! through its tap. Frames the rules cannot read (VLAN-tagged, other ethertypes) reach the
//! final drop: closed, not open.
//!
//! **Replies without conntrack.** The bridge family has `ct state` only with
//! `nf_conntrack_bridge`; this project's kernel lacks it (`ct state` there is "Protocol
//! error"). At start [`nft::probe`] asks the kernel with `nft -c`. With it, `vm_<vmid>` begins
//! `ct state established,related accept; ct state invalid drop`. Without it, the stateless
//! fallback accepts: TCP segments that are not a bare SYN (`tcp flags != syn / syn,ack`: a new
//! connection can only be opened by a SYN, so this admits replies and never a new inbound
//! connection; it does admit ACK probes, which the guest's stack answers with a RST), UDP to
//! Linux's default ephemeral ports 32768–60999 (replies to the guest's DNS/NTP/… queries; a
//! guest UDP service listening in that range is reachable too), and ICMP/ICMPv6 echo replies
//! and errors (unreachable, packet too big, time exceeded, parameter problem). Inbound echo
//! requests and everything else need a rule. REJECT needs `nft_reject_bridge`; without it
//! (probed the same way) REJECT is rendered as DROP, as Proxmox's nftables firewall does for
//! guests.
//!
//! **Loading.** Every change renders the whole table and loads it with `nft -f -` in one
//! transaction (create, delete, define): the kernel takes all of it or none of it, so a refused
//! load leaves the previous ruleset. The kernel is changed first, then the store; if the store
//! write fails, the previous table is loaded back. At start the store is loaded into the kernel
//! (reconciled). At a clean stop the table is **kept**, as Proxmox keeps its rules: guests
//! keep running while edgeward is down, and they stay protected.
//!
//! This module knows nothing about HTTP, accounts or libvirt: callers give a vmid, errors carry
//! data ([`FwError`]), the seed's words live in `api/firewall.rs`.

pub mod nft;
pub mod render;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::store::firewall::{FwGroupRecord, FwRuleRecord};
use crate::store::Store;
use render::{Features, GroupRules};
use rules::{description, GroupName, Invalid, Rule, RuleInput};

/// A refused or failed firewall operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwError {
    Invalid(Invalid),
    GroupNotFound,
    RuleNotFound,
    /// A group with this name (case ignored) exists.
    GroupExists(String),
    /// The group is applied to these vmids.
    GroupInUse(Vec<u32>),
    /// The group is not applied to that VM.
    NotAssigned,
    /// The kernel refused the ruleset (nothing changed).
    Enforce(String),
    Store(String),
}

/// How the rules reach the kernel: `nft` (real), or nothing (the rules are kept and rendered,
/// not enforced: `vm.guest_firewall = false`), or a test's recorder.
pub trait Enforcer: Send + Sync {
    fn load(&self, script: &str) -> Result<(), String>;
}

/// The real one: `nft -f -`.
pub struct Nft;

impl Enforcer for Nft {
    fn load(&self, script: &str) -> Result<(), String> {
        nft::load(script)
    }
}

/// One rule as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub pos: u32,
    pub rule: Rule,
}

/// One group as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub description: String,
    pub rules: Vec<RuleView>,
    /// vmids it is applied to.
    pub vmids: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Group {
    name: GroupName,
    description: String,
    rules: Vec<RuleView>,
    next_pos: u32,
    created_at: u64,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// By lower-case name.
    groups: BTreeMap<String, Group>,
    /// vmid -> lower-case group names, in the order applied.
    assignments: BTreeMap<u32, Vec<String>>,
}

impl State {
    fn view(&self, g: &Group) -> GroupView {
        let key = g.name.key();
        GroupView {
            name: g.name.as_str().to_owned(),
            description: g.description.clone(),
            rules: g.rules.clone(),
            vmids: self
                .assignments
                .iter()
                .filter(|(_, gs)| gs.contains(&key))
                .map(|(v, _)| *v)
                .collect(),
        }
    }

    fn render(&self, tap: fn(u32) -> String, f: Features) -> String {
        let groups: Vec<GroupRules<'_>> = self
            .groups
            .values()
            .map(|g| GroupRules {
                name: g.name.as_str(),
                rules: g.rules.iter().map(|r| &r.rule).collect(),
            })
            .collect();
        render::render(&groups, &self.assignments, tap, f)
    }
}

fn record(g: &Group) -> FwGroupRecord {
    FwGroupRecord {
        name: g.name.as_str().to_owned(),
        description: g.description.clone(),
        rules: g
            .rules
            .iter()
            .map(|r| {
                let i = r.rule.to_input();
                FwRuleRecord {
                    pos: r.pos,
                    action: i.action,
                    protocol: i.protocol,
                    port: i.port,
                    source: i.source,
                    description: i.description,
                }
            })
            .collect(),
        next_pos: g.next_pos,
        created_at: g.created_at,
    }
}

/// What one change writes to the store.
#[derive(Default)]
struct Write {
    put: Vec<String>,
    remove: Vec<String>,
    assign: Vec<u32>,
}

struct Inner {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    enforcer: Option<Box<dyn Enforcer>>,
    features: Features,
    tap: fn(u32) -> String,
    state: Mutex<State>,
}

/// The groups and assignments, kept in the store and (with an enforcer) in the kernel.
#[derive(Clone)]
pub struct FirewallService {
    inner: Arc<Inner>,
}

fn store_err(e: impl std::fmt::Display) -> FwError {
    FwError::Store(e.to_string())
}

impl FirewallService {
    /// Loads the groups and assignments from the store and, with an `enforcer`, loads them
    /// into the kernel (reconciliation at start; a failure is logged and the service still
    /// answers, so the rules can be fixed over the API). `tap` names a guest's interface.
    pub fn open(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        enforcer: Option<Box<dyn Enforcer>>,
        features: Features,
        tap: fn(u32) -> String,
    ) -> Result<Self, FwError> {
        let mut state = State::default();
        for g in store.fw_groups().map_err(store_err)? {
            let Ok(name) = GroupName::parse(&g.name) else {
                log::warn!(
                    "firewall: stored group {:?} has an invalid name; ignored",
                    g.name
                );
                continue;
            };
            let mut rules = Vec::new();
            for r in g.rules {
                match Rule::parse(&RuleInput {
                    action: r.action,
                    protocol: r.protocol,
                    port: r.port,
                    source: r.source,
                    description: r.description,
                }) {
                    Ok(rule) => rules.push(RuleView { pos: r.pos, rule }),
                    Err(e) => log::warn!(
                        "firewall: stored rule {} of group {} is invalid ({e:?}); ignored",
                        r.pos,
                        g.name
                    ),
                }
            }
            let next_pos = rules
                .iter()
                .map(|r| r.pos + 1)
                .max()
                .unwrap_or(0)
                .max(g.next_pos);
            state.groups.insert(
                name.key(),
                Group {
                    name,
                    description: g.description,
                    rules,
                    next_pos,
                    created_at: g.created_at,
                },
            );
        }
        for (vmid, names) in store.fw_assignments().map_err(store_err)? {
            let names: Vec<String> = names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .filter(|n| state.groups.contains_key(n))
                .collect();
            if !names.is_empty() {
                state.assignments.insert(vmid, names);
            }
        }
        let svc = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                enforcer,
                features,
                tap,
                state: Mutex::new(state),
            }),
        };
        if let Err(e) = svc.reconcile() {
            log::warn!("firewall: loading the guest rules at start failed: {e:?}");
        }
        Ok(svc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole table as the kernel gets it.
    pub fn ruleset(&self) -> String {
        self.lock().render(self.inner.tap, self.inner.features)
    }

    /// Whether rules reach the kernel.
    pub fn enforced(&self) -> bool {
        self.inner.enforcer.is_some()
    }

    /// Loads the current state into the kernel again.
    pub fn reconcile(&self) -> Result<(), FwError> {
        let script = self.ruleset();
        self.load(&script)
    }

    fn load(&self, script: &str) -> Result<(), FwError> {
        match &self.inner.enforcer {
            Some(e) => e.load(script).map_err(FwError::Enforce),
            None => Ok(()),
        }
    }

    /// Applies `change` to a copy of the state; loads it, stores it, then keeps it. Nothing
    /// changes anywhere when `change` refuses or the kernel refuses.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut State, &mut Write) -> Result<T, FwError>,
    ) -> Result<T, FwError> {
        let mut state = self.lock();
        let mut next = state.clone();
        let mut w = Write::default();
        let out = change(&mut next, &mut w)?;
        let (tap, f) = (self.inner.tap, self.inner.features);
        let new_script = next.render(tap, f);
        let old_script = state.render(tap, f);
        if new_script != old_script {
            self.load(&new_script)?;
        }
        let put: Vec<FwGroupRecord> = w
            .put
            .iter()
            .filter_map(|k| next.groups.get(k))
            .map(record)
            .collect();
        let assign: Vec<(u32, Vec<String>)> = w
            .assign
            .iter()
            .map(|v| {
                let names = next.assignments.get(v).cloned().unwrap_or_default();
                let display = names
                    .iter()
                    .filter_map(|k| next.groups.get(k))
                    .map(|g| g.name.as_str().to_owned())
                    .collect();
                (*v, display)
            })
            .collect();
        if let Err(e) = self.inner.store.fw_write(&put, &w.remove, &assign) {
            if new_script != old_script {
                if let Err(back) = self.load(&old_script) {
                    log::error!("firewall: putting the previous rules back failed: {back:?}");
                }
            }
            return Err(store_err(e));
        }
        *state = next;
        Ok(out)
    }

    /// Every group, by name (case ignored).
    pub fn groups(&self) -> Vec<GroupView> {
        let state = self.lock();
        state.groups.values().map(|g| state.view(g)).collect()
    }

    /// The group `name` (case ignored).
    pub fn group(&self, name: &str) -> Result<GroupView, FwError> {
        let state = self.lock();
        state
            .groups
            .get(&name.trim().to_ascii_lowercase())
            .map(|g| state.view(g))
            .ok_or(FwError::GroupNotFound)
    }

    pub fn create_group(&self, name: &str, desc: &str) -> Result<GroupView, FwError> {
        let name = GroupName::parse(name).map_err(FwError::Invalid)?;
        let description = description(desc).map_err(FwError::Invalid)?;
        let now = self.inner.clock.now_ms();
        self.change(|s, w| {
            let key = name.key();
            if let Some(g) = s.groups.get(&key) {
                return Err(FwError::GroupExists(g.name.as_str().to_owned()));
            }
            let g = Group {
                name,
                description,
                rules: Vec::new(),
                next_pos: 0,
                created_at: now,
            };
            let view = s.view(&g);
            s.groups.insert(key.clone(), g);
            w.put.push(key);
            Ok(view)
        })
    }

    /// Refused while the group is applied to any VM ([`FwError::GroupInUse`]): unassign first,
    /// so deleting a group never silently opens a guest.
    pub fn delete_group(&self, name: &str) -> Result<(), FwError> {
        let key = name.trim().to_ascii_lowercase();
        self.change(|s, w| {
            if !s.groups.contains_key(&key) {
                return Err(FwError::GroupNotFound);
            }
            let users: Vec<u32> = s
                .assignments
                .iter()
                .filter(|(_, gs)| gs.contains(&key))
                .map(|(v, _)| *v)
                .collect();
            if !users.is_empty() {
                return Err(FwError::GroupInUse(users));
            }
            s.groups.remove(&key);
            w.remove.push(key);
            Ok(())
        })
    }

    /// Appends a rule; its `pos` is the group's next (never reused).
    pub fn add_rule(&self, group: &str, input: &RuleInput) -> Result<RuleView, FwError> {
        let key = group.trim().to_ascii_lowercase();
        if !self.lock().groups.contains_key(&key) {
            return Err(FwError::GroupNotFound);
        }
        let rule = Rule::parse(input).map_err(FwError::Invalid)?;
        self.change(|s, w| {
            let g = s.groups.get_mut(&key).ok_or(FwError::GroupNotFound)?;
            let view = RuleView {
                pos: g.next_pos,
                rule,
            };
            g.next_pos = g.next_pos.saturating_add(1);
            g.rules.push(view.clone());
            w.put.push(key);
            Ok(view)
        })
    }

    pub fn delete_rule(&self, group: &str, pos: u32) -> Result<RuleView, FwError> {
        let key = group.trim().to_ascii_lowercase();
        self.change(|s, w| {
            let g = s.groups.get_mut(&key).ok_or(FwError::GroupNotFound)?;
            let i = g
                .rules
                .iter()
                .position(|r| r.pos == pos)
                .ok_or(FwError::RuleNotFound)?;
            let removed = g.rules.remove(i);
            w.put.push(key);
            Ok(removed)
        })
    }

    /// Every vmid with at least one group.
    pub fn assigned_vmids(&self) -> Vec<u32> {
        self.lock().assignments.keys().copied().collect()
    }

    /// The groups applied to `vmid`, in order (display names).
    pub fn groups_of(&self, vmid: u32) -> Vec<String> {
        let state = self.lock();
        state
            .assignments
            .get(&vmid)
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| state.groups.get(k))
                    .map(|g| g.name.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies `group` to `vmid` (after the ones it has; applying it again changes nothing).
    /// Returns the group's name as stored.
    pub fn assign(&self, vmid: u32, group: &str) -> Result<String, FwError> {
        let key = group.trim().to_ascii_lowercase();
        self.change(|s, w| {
            let name = s
                .groups
                .get(&key)
                .ok_or(FwError::GroupNotFound)?
                .name
                .as_str()
                .to_owned();
            let list = s.assignments.entry(vmid).or_default();
            if !list.contains(&key) {
                list.push(key);
                w.assign.push(vmid);
            }
            Ok(name)
        })
    }

    /// Removes `group` (or, with `None`, every group) from `vmid`; returns the names removed.
    pub fn unassign(&self, vmid: u32, group: Option<&str>) -> Result<Vec<String>, FwError> {
        self.change(|s, w| {
            let current = s.assignments.get(&vmid).cloned().unwrap_or_default();
            let removed: Vec<String> = match group {
                Some(g) => {
                    let key = g.trim().to_ascii_lowercase();
                    if !s.groups.contains_key(&key) {
                        return Err(FwError::GroupNotFound);
                    }
                    if !current.contains(&key) {
                        return Err(FwError::NotAssigned);
                    }
                    vec![key]
                }
                None => current.clone(),
            };
            let rest: Vec<String> = current
                .into_iter()
                .filter(|k| !removed.contains(k))
                .collect();
            if rest.is_empty() {
                s.assignments.remove(&vmid);
            } else {
                s.assignments.insert(vmid, rest);
            }
            w.assign.push(vmid);
            Ok(removed
                .iter()
                .filter_map(|k| s.groups.get(k))
                .map(|g| g.name.as_str().to_owned())
                .collect())
        })
    }
}

#[cfg(test)]
mod tests;
