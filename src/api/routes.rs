//! THE route table: every endpoint declared once — its methods, path pattern, API family
//! (which error envelope it answers with), access class and handler.
//!
//! Nothing else decides who may call an endpoint or how its errors look: the server matches a
//! request here, checks the row's [`Access`] before a handler runs, and answers 404 and 405
//! (with `Allow`) from the table in the family's envelope. On a path two seeds share
//! (`/api/admin/users`) the row's [`Shared`] side answers seed 003's session callers in their
//! family; a `websocket` row is where `?token=` counts. Tests — among them the role × route
//! matrix (`tests/auth_matrix.rs`), and later the OpenAPI document — iterate [`ROUTES`], so a
//! new route cannot forget its family or its access class.

use super::error::{ApiError, Family};
use super::{
    admin, auth, backups, dongle, dongle_lease, firewall, grafana, notifications, openapi, public,
    servers, session003, status_stream, tasks, vm_status, vms, vnc, vpn,
};
use crate::auth::Permission;

pub use super::access::{Access, Need};
pub use super::route::{Handler, HandlerFuture, Params, Route, Shared};

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const GET_POST: &[&str] = &["GET", "POST"];
const PUT: &[&str] = &["PUT"];
const DELETE: &[&str] = &["DELETE"];
const ADMIN: Access = Access::Account(Need::Admin);
const USER: Access = Access::Account(Need::AnyUser);
const MANAGE_FIREWALL: Access = Access::Account(Need::Permission(Permission::ManageFirewallGroups));
const ASSIGN_FIREWALL: Access = Access::Account(Need::Permission(Permission::AssignFirewallGroups));
const BACKUP: Access = Access::Account(Need::Permission(Permission::BackupManagement));

/// Every endpoint edgeward serves.
pub static ROUTES: &[Route] = &[
    // --- public ---------------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/",
        family: Family::Public,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |_, _, _, _| Box::pin(async move { Ok(public::index(endpoints())) }),
        summary: "what this is: name, version, endpoints",
    },
    Route {
        methods: GET,
        pattern: "/api/health",
        family: Family::Public,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { Ok(public::health(s)) }),
        summary: "liveness: store and libvirt connection",
    },
    Route {
        methods: GET,
        pattern: "/metrics",
        family: Family::Public,
        access: Access::Metrics,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { Ok(public::metrics(s)) }),
        summary: "Prometheus text",
    },
    // --- seed 000: VPN keys ---------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/vpn_api/list",
        family: Family::Vpn,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { Ok(vpn::list(s)) }),
        summary: "public hosts of the VPN pools",
    },
    Route {
        methods: GET_POST,
        pattern: "/vpn_api/allocate",
        family: Family::Vpn,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(vpn::allocate(s, c, r)),
        summary: "lease a VPN key (optional ?ip=HOST)",
    },
    Route {
        methods: POST,
        pattern: "/vpn_api/release",
        family: Family::Vpn,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(vpn::release(s, r)),
        summary: "end a lease by its public key",
    },
    Route {
        methods: GET,
        pattern: "/vpn_api/status",
        family: Family::Vpn,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(async move { vpn::status(s, r) }),
        summary: "slot usage and active connections (optional ?ip=HOST)",
    },
    // --- seed 001 §1-3: dongle leases ----------------------------------------------------
    Route {
        methods: POST,
        pattern: "/dongle/allocate",
        family: Family::Dongle,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(dongle_lease::allocate(s, r)),
        summary: "lease a dongle (or renew the agent's lease): {\"agent_id\"}",
    },
    Route {
        methods: GET_POST,
        pattern: "/dongle/heartbeat/{id}",
        family: Family::Dongle,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(async move { dongle_lease::heartbeat(s, p.get("id")) }),
        summary: "keep dongle lease id alive (only heartbeats do; WireGuard traffic does not)",
    },
    Route {
        methods: GET_POST,
        pattern: "/dongle/release/{id}",
        family: Family::Dongle,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, r, p| Box::pin(dongle_lease::release(s, r, p.get("id"))),
        summary: "end dongle lease id, with the optional statistics report",
    },
    // --- seed 001 §4: the IP toggle -------------------------------------------------------
    Route {
        methods: GET_POST,
        pattern: "/toggle/{n}",
        family: Family::Dongle,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(dongle::toggle(s, p.get("n"))),
        summary: "change dongle n's public IP",
    },
    Route {
        methods: GET,
        pattern: "/toggle-status/{n}",
        family: Family::Dongle,
        access: Access::Agent,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(async move { dongle::toggle_status(s, p.get("n")) }),
        summary: "dongle n's toggle in progress, last toggle and counts",
    },
    // --- operator views -------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/modems",
        family: Family::Dongle,
        access: Access::AdminView,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { Ok(dongle::modems(s)) }),
        summary: "every modem: identity (IMEI, ICCID), registration, signal, toggles",
    },
    Route {
        methods: GET,
        pattern: "/api/modems/{n}",
        family: Family::Dongle,
        access: Access::AdminView,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(async move { dongle::modem(s, p.get("n")) }),
        summary: "one modem",
    },
    Route {
        methods: GET,
        pattern: "/api/dongles",
        family: Family::Dongle,
        access: Access::AdminView,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { Ok(dongle_lease::dongles(s)) }),
        summary: "every dongle: modem state, holder, heartbeat, handshake, bytes, toggles",
    },
    Route {
        methods: GET,
        pattern: "/api/dongles/sessions",
        family: Family::Dongle,
        access: Access::AdminView,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(async move { dongle_lease::sessions(s, r) }),
        summary:
            "dongle sessions with reports and aggregates (?agent_id=&dongle=&since=&until=&limit=)",
    },
    // --- seeds 002/004: LIMEN accounts ----------------------------------------------------
    Route {
        methods: POST,
        pattern: "/api/auth/login",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(auth::login(s, c, r)),
        summary: "sign in {\"username\",\"password\"}: access token, refresh and CSRF cookies",
    },
    Route {
        methods: POST,
        pattern: "/api/auth/register",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(auth::register(s, c, r)),
        summary: "create an account that waits for an admin's approval",
    },
    Route {
        methods: POST,
        pattern: "/api/auth/refresh",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(auth::refresh(s, c, r)),
        summary: "rotate the refresh token (cookie + X-CSRF-Token, or body) for a new access token",
    },
    Route {
        methods: GET,
        pattern: "/api/auth/session",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(async move { auth::session_get(s, c, r) }),
        summary: "the refresh cookie's session: valid, a fresh access token, the user",
    },
    Route {
        methods: POST,
        pattern: "/api/auth/session",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(async move { auth::session_post(s, c, r) }),
        summary: "turn {\"access_token\",\"refresh_token\"} into cookies (X-CSRF-Token required)",
    },
    Route {
        methods: DELETE,
        pattern: "/api/auth/session",
        family: Family::Account,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(auth::session_delete(s, c, r)),
        summary: "sign out: revoke the refresh token's login, clear the cookies",
    },
    // --- seeds 004 and 003: user administration (one path, two shapes) ---------------------
    Route {
        methods: GET,
        pattern: "/api/admin/users",
        family: Family::Account,
        access: ADMIN,
        session: Some(Shared {
            family: Family::Operations,
            handler: |s, _, _, _| Box::pin(async move { admin::ops_list(s) }),
        }),
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { admin::limen_list(s) }),
        summary: "every user (seed 004: a list; seed 003 session: {\"success\",\"users\"})",
    },
    Route {
        methods: POST,
        pattern: "/api/admin/users",
        family: Family::Account,
        access: ADMIN,
        session: Some(Shared {
            family: Family::Operations,
            handler: |s, _, r, _| Box::pin(admin::ops_create(s, r)),
        }),
        websocket: false,
        handler: |s, _, r, _| Box::pin(admin::limen_create(s, r)),
        summary: "create an approved user {\"username\",\"password\",\"role\",\"email\"}",
    },
    Route {
        methods: GET,
        pattern: "/api/admin/users/{id}",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(async move { admin::get(s, p) }),
        summary: "one user",
    },
    Route {
        methods: PUT,
        pattern: "/api/admin/users/{id}",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(admin::update(s, c, r, p)),
        summary: "change username, email, password, role, active, approved",
    },
    Route {
        methods: DELETE,
        pattern: "/api/admin/users/{id}",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(admin::delete(s, c, p)),
        summary: "delete a user (not yourself, not the last admin)",
    },
    Route {
        methods: PUT,
        pattern: "/api/admin/users/{id}/role",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(admin::set_role(s, c, r, p)),
        summary: "change a user's role {\"role\"}",
    },
    Route {
        methods: PUT,
        pattern: "/api/admin/users/{id}/approve",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(admin::approve(s, p)),
        summary: "approve a registered user",
    },
    // --- seed 003: session login and IAM -------------------------------------------------
    Route {
        methods: POST,
        pattern: "/auth/login",
        family: Family::Operations,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(session003::login(s, c, r)),
        summary: "sign in, form-encoded username=&password=: the session cookie",
    },
    Route {
        methods: POST,
        pattern: "/auth/logout",
        family: Family::Operations,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(session003::logout(s, c, r)),
        summary: "sign out: end the session, clear the cookie",
    },
    Route {
        methods: POST,
        pattern: "/api/admin/iam/{username}/permissions",
        family: Family::Operations,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, _, r, p| Box::pin(session003::set_permissions(s, r, p)),
        summary: "replace a user's permissions {\"permissions\":[…]}",
    },
    // --- seed 003: tasks and notifications ---------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/tasks",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { tasks::list(s, c) }),
        summary: "tasks: the caller's (an admin or view_all: every task), newest first",
    },
    Route {
        methods: GET,
        pattern: "/api/tasks/{id}",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(async move { tasks::get(s, c, p) }),
        summary: "one task (task_<n>) with its log [{n, t}]",
    },
    Route {
        methods: GET,
        pattern: "/api/notifications",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { notifications::list(s, c) }),
        summary: "notifications the caller may see (an admin: all), newest first, read per user",
    },
    Route {
        methods: POST,
        pattern: "/api/notifications/{id}/read",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(async move { notifications::read(s, c, p) }),
        summary: "mark one notification read (for the caller)",
    },
    Route {
        methods: POST,
        pattern: "/api/notifications/clear-all",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { notifications::clear_all(s, c) }),
        summary: "mark every notification the caller sees read (for the caller)",
    },
    // --- seed 003: firewall groups ----------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/firewall/groups",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, _, _, _| Box::pin(async move { firewall::list(s) }),
        summary: "every firewall group with its rules and instance_count",
    },
    Route {
        methods: POST,
        pattern: "/api/firewall/groups",
        family: Family::Operations,
        access: MANAGE_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(firewall::create(s, r)),
        summary: "create a firewall group {\"name\",\"description\"}",
    },
    Route {
        methods: GET,
        pattern: "/api/firewall/groups/{name}",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(async move { firewall::detail(s, p) }),
        summary: "one firewall group, its rules each with pos",
    },
    Route {
        methods: DELETE,
        pattern: "/api/firewall/groups/{name}",
        family: Family::Operations,
        access: MANAGE_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(firewall::delete(s, p)),
        summary: "delete a firewall group (409 while applied to a server)",
    },
    Route {
        methods: POST,
        pattern: "/api/firewall/groups/{name}/rules",
        family: Family::Operations,
        access: MANAGE_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, _, r, p| Box::pin(firewall::add_rule(s, r, p)),
        summary: "add an inbound rule {\"action\",\"protocol\",\"port\",\"source\",\"description\"}",
    },
    Route {
        methods: DELETE,
        pattern: "/api/firewall/groups/{name}/rules/{pos}",
        family: Family::Operations,
        access: MANAGE_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, _, _, p| Box::pin(firewall::delete_rule(s, p)),
        summary: "delete a rule by its pos",
    },
    Route {
        methods: POST,
        pattern: "/api/apply_security_group/{server}",
        family: Family::Operations,
        access: ASSIGN_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(firewall::apply(s, c, r, p)),
        summary: "apply a firewall group to a server {\"security_group\"}",
    },
    Route {
        methods: DELETE,
        pattern: "/api/apply_security_group/{server}",
        family: Family::Operations,
        access: ASSIGN_FIREWALL,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(firewall::unassign(s, c, r, p)),
        summary: "unassign {\"security_group\"} (or, without a body, every group) from a server",
    },
    // --- seed 003: monitoring and the live server status --------------------------------
    Route {
        methods: GET,
        pattern: "/api/metrics/grafana/overview",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { grafana::overview(s, c) }),
        summary: "the newest CPU and memory % of every server the caller may see",
    },
    Route {
        methods: GET,
        pattern: "/api/metrics/grafana/vm/{name}",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(async move { grafana::vm(s, c, r, p) }),
        summary: "a server's history as Grafana frames (?metric=cpu|memory|disk|network&time_range=5m|1h|6h|24h|7d)",
    },
    Route {
        methods: GET,
        pattern: "/api/servers/status/stream",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { status_stream::stream(s, c) }),
        summary: "Server-Sent Events: every visible server's status, then every change",
    },
    // --- seed 003: servers -----------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/servers",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(servers::list(s, c)),
        summary: "servers by name: {name, vmid, status, cpu, memory, ip_addresses, role, created_at} (own; all for admin or view_all)",
    },
    Route {
        methods: POST,
        pattern: "/api/servers",
        family: Family::Operations,
        access: Access::Account(Need::Permission(Permission::CreateServer)),
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(servers::create(s, c, r)),
        summary: "create a server in the background {name, cpu, memory, role, ip_address, disks, network_devices, template_vm_id, vm_username, vm_password}: a task_id",
    },
    Route {
        methods: POST,
        pattern: "/api/servers/{name}/start",
        family: Family::Operations,
        access: Access::Account(Need::Permission(Permission::StartServer)),
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(servers::action(s, c, p, servers::Action::Start)),
        summary: "start a server",
    },
    Route {
        methods: POST,
        pattern: "/api/servers/{name}/stop",
        family: Family::Operations,
        access: Access::Account(Need::Permission(Permission::StopServer)),
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(servers::action(s, c, p, servers::Action::Stop)),
        summary: "power a server off (Proxmox qm stop: a hard stop)",
    },
    Route {
        methods: POST,
        pattern: "/api/servers/{name}/reboot",
        family: Family::Operations,
        access: Access::Account(Need::Permission(Permission::RebootServer)),
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(servers::action(s, c, p, servers::Action::Reboot)),
        summary: "reboot a server (ACPI; a reset when refused)",
    },
    Route {
        methods: DELETE,
        pattern: "/api/servers/{name}",
        family: Family::Operations,
        access: Access::Account(Need::Permission(Permission::DeleteServer)),
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(servers::action(s, c, p, servers::Action::Delete)),
        summary: "delete a server: domain, every disk, the cloud-init seed, records",
    },
    // --- seed 003: backups ---------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/backups/nodes",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { backups::list(s, c) }),
        summary: "every backup of the VMs the caller may see, per VM, with totals",
    },
    Route {
        methods: POST,
        pattern: "/api/server/backup/{name}",
        family: Family::Operations,
        access: BACKUP,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(backups::create(s, c, r, p)),
        summary: "start a backup {\"backup_config\":{storage,compress,mode,remove,notes}}",
    },
    Route {
        methods: DELETE,
        pattern: "/api/server/backup/{name}",
        family: Family::Operations,
        access: BACKUP,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(async move { backups::delete(s, c, r, p) }),
        summary: "delete a backup and its .log/.notes {\"filename\",\"storage\"}",
    },
    Route {
        methods: GET,
        pattern: "/api/server/backup/status/{name}",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(async move { backups::status(s, c, p) }),
        summary: "the server's latest backup or restore: status, progress, message",
    },
    Route {
        methods: GET,
        pattern: "/api/server/backup/status/{name}/stream",
        family: Family::Operations,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(async move { backups::stream(s, c, p) }),
        summary: "that status as Server-Sent Events: now, then every change, then the next job",
    },
    Route {
        methods: POST,
        pattern: "/api/server/restore/{name}",
        family: Family::Operations,
        access: BACKUP,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(backups::restore(s, c, r, p)),
        summary: "restore a backup onto its server {\"filename\",\"storage\"}",
    },
    // --- VMs (LIMEN) ---------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/vms",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, _| Box::pin(async move { vms::list(s, c) }),
        summary: "the caller's VMs (an admin: every VM)",
    },
    Route {
        methods: POST,
        pattern: "/api/vms",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(vms::create(s, c, r)),
        summary: "create and start a VM {\"name\",\"cpu\",\"memory\",\"os_type\"}",
    },
    Route {
        methods: POST,
        pattern: "/api/vms/{id}/action",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(vms::action(s, c, r, p)),
        summary: "start, stop, restart, delete, update|resize {\"cpu\",\"memory\"} (id or uuid)",
    },
    Route {
        methods: GET,
        pattern: "/api/vms/{id}/stats",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(vms::stats(s, c, p)),
        summary: "CPU %, balloon memory, disk and network counters of a running VM",
    },
    Route {
        methods: GET,
        pattern: "/api/vms/{id}/snapshots",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(async move { vms::snapshots(s, c, p) }),
        summary: "a VM's snapshots",
    },
    Route {
        methods: POST,
        pattern: "/api/vms/{id}/snapshots",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, r, p| Box::pin(vms::snapshot_create(s, c, r, p)),
        summary: "take a snapshot {\"name\",\"description\"}",
    },
    Route {
        methods: POST,
        pattern: "/api/snapshots/{id}/restore",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(vms::snapshot_restore(s, c, p)),
        summary: "revert a VM to a snapshot (a running VM keeps running)",
    },
    Route {
        methods: DELETE,
        pattern: "/api/snapshots/{id}",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, _, p| Box::pin(vms::snapshot_delete(s, c, p)),
        summary: "delete a snapshot (its data, not just its metadata)",
    },
    Route {
        methods: GET,
        pattern: "/api/quota",
        family: Family::Account,
        access: USER,
        session: None,
        websocket: false,
        handler: |s, c, r, _| Box::pin(async move { vms::quota_get(s, c, r) }),
        summary: "the caller's VM quota and usage (an admin: ?user_id=)",
    },
    Route {
        methods: PUT,
        pattern: "/api/quota",
        family: Family::Account,
        access: ADMIN,
        session: None,
        websocket: false,
        handler: |s, _, r, _| Box::pin(vms::quota_put(s, r)),
        summary: "set a user's quota {\"user_id\",\"max_vms\",\"max_cpu\",\"max_memory\"} (no user_id: the default)",
    },
    // --- end of VMs (LIMEN) --------------------------------------------------------------
    // --- WebSockets ------------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/ws/vm-status",
        family: Family::Account,
        access: Access::Account(Need::AnyUser),
        session: None,
        websocket: true,
        handler: |s, c, r, _| Box::pin(async move { vm_status::stream(s, c, r) }),
        summary: "WebSocket: vm_list, then vm_update on every change (the caller's VMs; all for an admin)",
    },
    Route {
        methods: GET,
        pattern: "/ws/vnc",
        family: Family::Account,
        access: Access::Account(Need::AnyUser),
        session: None,
        websocket: true,
        handler: |s, c, r, p| Box::pin(async move { vnc::console(s, c, r, p) }),
        summary: "WebSocket: the VNC console of VM ?id= (owner or admin): status frames, then RFB",
    },
    Route {
        methods: GET,
        pattern: "/vnc",
        family: Family::Account,
        access: Access::Account(Need::AnyUser),
        session: None,
        websocket: true,
        handler: |s, c, r, p| Box::pin(async move { vnc::console(s, c, r, p) }),
        summary: "WebSocket: the VNC console of VM ?uuid= (owner or admin)",
    },
    Route {
        methods: GET,
        pattern: "/vnc/{uuid}",
        family: Family::Account,
        access: Access::Account(Need::AnyUser),
        session: None,
        websocket: true,
        handler: |s, c, r, p| Box::pin(async move { vnc::console(s, c, r, p) }),
        summary: "WebSocket: the VNC console of VM uuid (owner or admin)",
    },
    // --- OpenAPI ----------------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/openapi.json",
        family: Family::Public,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |_, _, _, _| Box::pin(async move { Ok(openapi::openapi_json(ROUTES)) }),
        summary: "this API as an OpenAPI 3.0 document, generated from the route table",
    },
    Route {
        methods: GET,
        pattern: "/swagger",
        family: Family::Public,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |_, _, _, _| Box::pin(async move { Ok(openapi::swagger_page()) }),
        summary: "Swagger UI for /api/openapi.json (vm builds; else a page listing every operation)",
    },
    Route {
        methods: GET,
        pattern: "/swagger/{asset}",
        family: Family::Public,
        access: Access::Public,
        session: None,
        websocket: false,
        handler: |_, _, _, p| {
            Box::pin(async move {
                openapi::swagger_asset(p.get("asset")).ok_or_else(|| {
                    ApiError::new(
                        hyper::StatusCode::NOT_FOUND,
                        "no such Swagger UI file (Swagger UI is served by builds with the vm feature)",
                    )
                })
            })
        },
        summary: "Swagger UI's script and stylesheet (vm builds)",
    },
];

/// Every endpoint as `METHODS /pattern`, for `GET /`.
fn endpoints() -> Vec<String> {
    ROUTES
        .iter()
        .map(|r| format!("{} {}", r.methods.join("|"), r.pattern))
        .collect()
}

/// What the table says about a request.
pub enum Matched {
    Route(&'static Route, Params),
    /// The path exists, not with this method: 405 with these methods in `Allow`.
    WrongMethod {
        family: Family,
        allow: Vec<&'static str>,
    },
    /// No route has this path: 404 in this family's envelope.
    NotFound {
        family: Family,
    },
}

/// Finds the route for `method` and `path` (pure: no state, no I/O).
pub fn find(method: &str, path: &str) -> Matched {
    find_in(ROUTES, method, path)
}

fn find_in(routes: &'static [Route], method: &str, path: &str) -> Matched {
    let segments = segments(path);
    let mut allow: Vec<&'static str> = Vec::new();
    let mut path_family = None;
    for route in routes {
        let Some(params) = capture(route.pattern, &segments) else {
            continue;
        };
        if accepts(route.methods, method) {
            return Matched::Route(route, params);
        }
        path_family.get_or_insert(route.family);
        let head = route.methods.contains(&"GET").then_some("HEAD");
        for m in route.methods.iter().copied().chain(head) {
            if !allow.contains(&m) {
                allow.push(m);
            }
        }
    }
    match path_family {
        Some(family) => Matched::WrongMethod { family, allow },
        None => Matched::NotFound {
            family: family_by_prefix(routes, &segments),
        },
    }
}

fn accepts(methods: &[&str], method: &str) -> bool {
    methods.contains(&method) || (method == "HEAD" && methods.contains(&"GET"))
}

/// A path's segments; one trailing slash is forgiven (`/vpn_api/list/`).
fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

/// The captures when `segments` fit `pattern`.
fn capture(pattern: &'static str, segments: &[&str]) -> Option<Params> {
    let mut parts = pattern_parts(pattern);
    let mut params = Params::default();
    for seg in segments {
        let part = parts.next()?;
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.0.push((name, (*seg).to_owned())),
            None if part == *seg => {}
            None => return None,
        }
    }
    parts.next().is_none().then_some(params)
}

/// A pattern's segments, without allocating (patterns have no empty segments; `/` has none).
fn pattern_parts(pattern: &'static str) -> impl Iterator<Item = &'static str> {
    pattern.split('/').filter(|p| !p.is_empty())
}

/// An unknown path answers in the family of the routes sharing its longest literal prefix
/// (`/vpn_api/nope` in seed 000's envelope), or the public one.
fn family_by_prefix(routes: &[Route], segments: &[&str]) -> Family {
    let mut best = (0, Family::Public);
    for route in routes {
        let shared = pattern_parts(route.pattern)
            .zip(segments)
            .take_while(|(p, s)| !p.starts_with('{') && p == *s)
            .count();
        if shared > best.0 {
            best = (shared, route.family);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: &str, path: &str) -> (&'static str, Params) {
        match find(method, path) {
            Matched::Route(r, p) => (r.pattern, p),
            Matched::WrongMethod { allow, .. } => panic!("{method} {path}: 405 {allow:?}"),
            Matched::NotFound { .. } => panic!("{method} {path}: 404"),
        }
    }

    #[test]
    fn every_route_is_complete_and_unambiguous() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(r.pattern.starts_with('/'), "{}: pattern", r.pattern);
            assert!(!r.methods.is_empty(), "{}: no methods", r.pattern);
            assert!(!r.summary.is_empty(), "{}: no summary", r.pattern);
            for m in r.methods {
                assert!(
                    ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m),
                    "{}: method {m}",
                    r.pattern
                );
            }
            // The agent envelopes belong to agent routes and the public one to public
            // routes; an operator view never hides behind the public class.
            match r.family {
                Family::Vpn => assert_eq!(r.access, Access::Agent, "{}", r.pattern),
                Family::Public => assert!(
                    matches!(r.access, Access::Public | Access::Metrics),
                    "{}",
                    r.pattern
                ),
                _ => {}
            }
            // A WebSocket route is an upgrade of a GET.
            if r.websocket {
                assert_eq!(r.methods, ["GET"], "{}", r.pattern);
            }
            // Account rows answer in an accounts family.
            if matches!(r.access, Access::Account(_)) {
                assert!(
                    matches!(r.family, Family::Account | Family::Operations),
                    "{}",
                    r.pattern
                );
            }
            // No two rows claim the same method on the same pattern.
            for other in &ROUTES[i + 1..] {
                if other.pattern == r.pattern {
                    assert!(
                        !other.methods.iter().any(|m| r.methods.contains(m)),
                        "{} declared twice",
                        r.pattern
                    );
                }
            }
            // A concrete path built from the pattern finds this very row.
            let concrete = r
                .pattern
                .replace("{n}", "17")
                .replace("{id}", "1")
                .replace("{username}", "admin")
                .replace("{uuid}", "550e8400-e29b-41d4-a716-446655440000");
            for m in r.methods {
                let (pattern, _) = route_of(m, &concrete);
                assert_eq!(pattern, r.pattern, "{m} {concrete}");
            }
        }
    }

    #[test]
    fn modem_identities_are_not_for_agents_or_the_public() {
        for r in ROUTES.iter().filter(|r| {
            r.pattern.starts_with("/api/modems") || r.pattern.starts_with("/api/dongles")
        }) {
            assert_eq!(r.access, Access::AdminView, "{}", r.pattern);
        }
    }

    #[test]
    fn user_administration_is_for_admins_only() {
        for r in ROUTES
            .iter()
            .filter(|r| r.pattern.starts_with("/api/admin"))
        {
            assert_eq!(r.access, Access::Account(Need::Admin), "{}", r.pattern);
        }
        // The accounts endpoints that hand out or take credentials are public by design.
        for r in ROUTES
            .iter()
            .filter(|r| r.pattern.starts_with("/api/auth/"))
        {
            assert_eq!(r.access, Access::Public, "{}", r.pattern);
            assert_eq!(r.family, Family::Account, "{}", r.pattern);
        }
    }

    #[test]
    fn the_shared_users_path_answers_each_caller_in_its_family() {
        use crate::api::access::Credentials;
        let route = |m| match find(m, "/api/admin/users") {
            Matched::Route(r, _) => r,
            _ => panic!("/api/admin/users"),
        };
        for m in ["GET", "POST"] {
            let r = route(m);
            let session = Credentials {
                session: Some("s".into()),
                ..Credentials::default()
            };
            let bearer = Credentials {
                bearer: Some("t".into()),
                ..Credentials::default()
            };
            assert_eq!(r.for_caller(&session).0, Family::Operations);
            assert_eq!(r.for_caller(&bearer).0, Family::Account);
            assert_eq!(r.for_caller(&Credentials::default()).0, Family::Account);
        }
        // Only shared paths have a second side.
        for r in ROUTES.iter().filter(|r| r.session.is_some()) {
            assert_eq!(r.pattern, "/api/admin/users");
        }
    }

    #[test]
    fn vm_routes_need_an_account_and_speak_limen() {
        let vm_routes: Vec<_> = ROUTES
            .iter()
            .filter(|r| {
                ["/api/vms", "/api/snapshots", "/api/quota"]
                    .iter()
                    .any(|p| r.pattern.starts_with(p))
            })
            .collect();
        assert_eq!(vm_routes.len(), 10);
        for r in vm_routes {
            assert_eq!(r.family, Family::Account, "{}", r.pattern);
            let want = if r.pattern == "/api/quota" && r.methods == PUT {
                Access::Account(Need::Admin)
            } else {
                Access::Account(Need::AnyUser)
            };
            assert_eq!(r.access, want, "{} {:?}", r.pattern, r.methods);
        }
    }

    #[test]
    fn captures_and_trailing_slash() {
        let (pattern, params) = route_of("GET", "/toggle/17");
        assert_eq!(pattern, "/toggle/{n}");
        assert_eq!(params.get("n"), "17");
        assert_eq!(route_of("GET", "/vpn_api/list/").0, "/vpn_api/list");
        assert_eq!(route_of("HEAD", "/api/health").0, "/api/health");
        assert_eq!(route_of("GET", "/").0, "/");
    }

    #[test]
    fn wrong_method_lists_what_is_allowed_in_the_routes_family() {
        match find("DELETE", "/vpn_api/allocate") {
            Matched::WrongMethod { family, allow } => {
                assert_eq!(family, Family::Vpn);
                assert_eq!(allow, ["GET", "POST", "HEAD"]);
            }
            _ => panic!("expected 405"),
        }
        match find("POST", "/api/modems") {
            Matched::WrongMethod { family, allow } => {
                assert_eq!(family, Family::Dongle);
                assert_eq!(allow, ["GET", "HEAD"]);
            }
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn unknown_paths_answer_in_the_family_of_their_prefix() {
        let family = |path| match find("GET", path) {
            Matched::NotFound { family } => family,
            _ => panic!("{path} should be unknown"),
        };
        assert_eq!(family("/vpn_api/nope"), Family::Vpn);
        assert_eq!(family("/toggle/1/2"), Family::Dongle);
        assert_eq!(family("/api/modems/1/2"), Family::Dongle);
        assert_eq!(family("/dongle/nope"), Family::Dongle);
        assert_eq!(family("/nothing"), Family::Public);
        assert_eq!(family("/api/nothing"), Family::Public);
    }
}
