//! What a seed-003 server create may ask for (pure): the body of `POST /api/servers` checked
//! field by field, each broken rule naming its field (`disks[1].interface`).
//!
//! Name, vCPUs and memory follow the LIMEN rules ([`super::spec`]); the rest is seed 003's:
//! disks by Proxmox interface (`scsiN`, `virtioN`, `sataN`, `ideN`, each once, Proxmox's index
//! ranges), sizes in GB, NICs on named bridges with optional static IPv4 (`subnet` a prefix
//! length, the gateway inside it), a template vmid and cloud-init credentials. Names of
//! datastores, bridges and templates are only checked for shape here; whether they exist is
//! the configuration's business (the service resolves them, [`Invalid::unknown`]).
//!
//! Defaults, as Proxmox's GUI would fill them: no `disks` → one 20 GB `scsi0` on `local-lvm`;
//! no `network_devices` → one NIC on `vmbr0`; an address without `subnet` is a /24; the top-level
//! `ip_address` is the first NIC's when that NIC names none (and must agree when it does).

use std::net::Ipv4Addr;

use super::spec::{self, Invalid as LimenInvalid};

/// At most this many disks and NICs per server.
pub const MAX_DISKS: usize = 8;
pub const MAX_NICS: usize = 8;
/// Disk sizes, GB.
pub const DISK_MIN_GB: i64 = 1;
pub const DISK_MAX_GB: i64 = 16_384;
/// Without `disks`.
pub const DEFAULT_DISK_GB: u32 = 20;
pub const DEFAULT_DATASTORE: &str = "local-lvm";
pub const DEFAULT_BRIDGE: &str = "vmbr0";
/// Without `subnet`.
pub const DEFAULT_PREFIX: u8 = 24;
/// cloud-init password length.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const ROLE_MAX: usize = 32;
/// Names in config maps (datastores, bridges).
pub const REF_NAME_MAX: usize = 64;
/// Accounts a guest image already has; a cloud-init user of that name would clash.
pub const RESERVED_USERS: [&str; 6] = ["root", "daemon", "bin", "sys", "nobody", "sync"];

/// A disk bus as Proxmox names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bus {
    Scsi,
    Virtio,
    Sata,
    Ide,
}

impl Bus {
    pub const ALL: [Bus; 4] = [Bus::Scsi, Bus::Virtio, Bus::Sata, Bus::Ide];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scsi => "scsi",
            Self::Virtio => "virtio",
            Self::Sata => "sata",
            Self::Ide => "ide",
        }
    }

    /// Proxmox's highest index per bus (`scsi0`–`scsi30`, `virtio0`–`virtio15`, `sata0`–`sata5`,
    /// `ide0`–`ide3`).
    pub fn max_index(self) -> u8 {
        match self {
            Self::Scsi => 30,
            Self::Virtio => 15,
            Self::Sata => 5,
            Self::Ide => 3,
        }
    }
}

/// `scsi0`, `virtio1`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interface {
    pub bus: Bus,
    pub index: u8,
}

impl Interface {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Bus::ALL.into_iter().find_map(|bus| {
            let digits = s.strip_prefix(bus.as_str())?;
            if digits.is_empty()
                || digits.len() > 2
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return None;
            }
            let index: u8 = digits.parse().ok()?;
            (index <= bus.max_index()).then_some(Interface { bus, index })
        })
    }

    pub fn name(self) -> String {
        format!("{}{}", self.bus.as_str(), self.index)
    }
}

/// `disk_type`: recorded, and an SSD is shown to the guest as one (rotation rate 1); a
/// datastore may also have a separate `"<name>:ssd"` / `"<name>:hdd"` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    Ssd,
    Hdd,
}

impl DiskType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ssd => "ssd",
            Self::Hdd => "hdd",
        }
    }
}

/// One requested disk, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub interface: Interface,
    pub size_gb: u32,
    pub datastore: String,
    pub disk_type: Option<DiskType>,
}

/// A static IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// One requested NIC, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub bridge: String,
    /// `None`: DHCP.
    pub ip: Option<StaticIp>,
}

/// The guest account cloud-init creates.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    /// In memory only; it is hashed before anything is written.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A create request that passed every rule (names not yet resolved against the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    pub role: String,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    pub template: Option<u32>,
    pub credentials: Option<Credentials>,
}

/// One requested disk as sent (absent fields empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskRequest {
    /// GB, as text (the client may send `50` or `"50"`).
    pub size: String,
    pub interface: String,
    pub datastore_id: String,
    pub disk_type: String,
}

/// One requested NIC as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicRequest {
    pub bridge: String,
    pub ip_address: String,
    /// A prefix length (`"24"`), also accepted as `/24` or a dotted mask.
    pub subnet: String,
    pub gateway: String,
}

/// The body as sent: strings stay strings (empty = absent), numbers are whatever JSON had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRequest {
    pub name: String,
    pub cpu: i64,
    pub memory: i64,
    pub role: String,
    pub ip_address: String,
    pub disks: Vec<DiskRequest>,
    pub network_devices: Vec<NicRequest>,
    /// `None`: absent; the text as sent otherwise.
    pub template_vm_id: Option<String>,
    pub vm_username: String,
    pub vm_password: String,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Name, CPU or memory, by the LIMEN rule it breaks.
    Limen(LimenInvalid),
    Required,
    TooMany {
        max: usize,
    },
    /// Not `scsiN`/`virtioN`/`sataN`/`ideN` within Proxmox's index range.
    Interface,
    /// Another disk has the same interface.
    Duplicate,
    /// A whole number in this range.
    Range {
        min: i64,
        max: i64,
    },
    /// Not `ssd` or `hdd`.
    DiskType,
    /// Not a reference name (1–64 letters, digits, `-`, `_`, `.`).
    RefName,
    /// Not an IPv4 address (unicast, not 0.0.0.0 or loopback).
    Ipv4,
    /// Not a prefix length 0–32 (or `/N`, or a contiguous dotted mask).
    Prefix,
    /// The address is its subnet's network or broadcast address.
    HostPart,
    /// The gateway is outside the NIC's subnet, or is the NIC's own address.
    GatewayOutside,
    /// A subnet or gateway without an address.
    NeedsAddress,
    /// The top-level `ip_address` differs from the first NIC's.
    Mismatch,
    /// Not a cloud-init user name (`[a-z_][a-z0-9_-]{0,31}`, not a system account).
    Username,
    /// Length or control characters.
    Password,
    /// `[a-z0-9_-]`, at most 32.
    Role,
    /// Not configured; the names that are.
    Unknown {
        known: Vec<String>,
    },
}

/// The first broken rule: the field (`network_devices[0].gateway`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub problem: Problem,
}

impl Invalid {
    pub fn new(field: impl Into<String>, problem: Problem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }

    /// `field` names something the configuration does not have.
    pub fn unknown(field: impl Into<String>, known: impl IntoIterator<Item = String>) -> Self {
        Self::new(
            field,
            Problem::Unknown {
                known: known.into_iter().collect(),
            },
        )
    }
}

fn bad<T>(field: impl Into<String>, problem: Problem) -> Result<T, Invalid> {
    Err(Invalid::new(field, problem))
}

/// Checks a create request, in the body's order: name, cpu, memory, role, disks, NICs (with the
/// top-level `ip_address`), template, credentials.
pub fn check(req: &ServerRequest) -> Result<ServerSpec, Invalid> {
    let name = spec::check_name(&req.name).map_err(|i| Invalid::new("name", Problem::Limen(i)))?;
    let (cpu, memory) = check_resources(req.cpu, req.memory)?;
    let role = check_role(&req.role)?;
    let disks = check_disks(&req.disks)?;
    let nics = check_nics(&req.network_devices, &req.ip_address)?;
    let template = match &req.template_vm_id {
        None => None,
        Some(t) if t.trim().is_empty() => None,
        Some(t) => Some(
            t.trim()
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 100)
                .ok_or_else(|| {
                    Invalid::new(
                        "template_vm_id",
                        Problem::Range {
                            min: 100,
                            max: i64::from(u32::MAX),
                        },
                    )
                })?,
        ),
    };
    let credentials = check_credentials(&req.vm_username, &req.vm_password)?;
    Ok(ServerSpec {
        name,
        cpu,
        memory,
        role,
        disks,
        nics,
        template,
        credentials,
    })
}

fn check_resources(cpu: i64, memory: i64) -> Result<(u32, u64), Invalid> {
    // The LIMEN rules, each error naming its own field.
    if cpu < spec::CPU_MIN {
        return bad("cpu", Problem::Limen(LimenInvalid::CpuTooLow));
    }
    if cpu > spec::CPU_MAX {
        return bad("cpu", Problem::Limen(LimenInvalid::CpuTooHigh));
    }
    match spec::check_resize(cpu, memory) {
        Ok(v) => Ok(v),
        // Only a memory of 0 is left to be "missing".
        Err(LimenInvalid::ResourcesRequired) => {
            bad("memory", Problem::Limen(LimenInvalid::MemoryTooLow))
        }
        Err(i) => bad("memory", Problem::Limen(i)),
    }
}

fn check_role(raw: &str) -> Result<String, Invalid> {
    let role = raw.trim();
    if role.len() > ROLE_MAX
        || !role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad("role", Problem::Role);
    }
    Ok(role.to_owned())
}

/// A name of a datastore or bridge (looked up in the configuration later).
pub fn is_ref_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= REF_NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_disks(reqs: &[DiskRequest]) -> Result<Vec<DiskSpec>, Invalid> {
    if reqs.is_empty() {
        return Ok(vec![DiskSpec {
            interface: Interface {
                bus: Bus::Scsi,
                index: 0,
            },
            size_gb: DEFAULT_DISK_GB,
            datastore: DEFAULT_DATASTORE.to_owned(),
            disk_type: None,
        }]);
    }
    if reqs.len() > MAX_DISKS {
        return bad("disks", Problem::TooMany { max: MAX_DISKS });
    }
    let mut out: Vec<DiskSpec> = Vec::with_capacity(reqs.len());
    for (i, d) in reqs.iter().enumerate() {
        let f = |name: &str| format!("disks[{i}].{name}");
        let size_gb = match d.size.trim() {
            "" => return bad(f("size"), Problem::Required),
            s => s
                .parse::<i64>()
                .ok()
                .filter(|n| (DISK_MIN_GB..=DISK_MAX_GB).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    Invalid::new(
                        f("size"),
                        Problem::Range {
                            min: DISK_MIN_GB,
                            max: DISK_MAX_GB,
                        },
                    )
                })?,
        };
        let interface = match d.interface.trim() {
            "" => return bad(f("interface"), Problem::Required),
            s => Interface::parse(s)
                .ok_or_else(|| Invalid::new(f("interface"), Problem::Interface))?,
        };
        if out.iter().any(|o| o.interface == interface) {
            return bad(f("interface"), Problem::Duplicate);
        }
        let datastore = match d.datastore_id.trim() {
            "" => DEFAULT_DATASTORE.to_owned(),
            s if is_ref_name(s) => s.to_owned(),
            _ => return bad(f("datastore_id"), Problem::RefName),
        };
        let disk_type = match d.disk_type.trim() {
            "" => None,
            "ssd" => Some(DiskType::Ssd),
            "hdd" => Some(DiskType::Hdd),
            _ => return bad(f("disk_type"), Problem::DiskType),
        };
        out.push(DiskSpec {
            interface,
            size_gb,
            datastore,
            disk_type,
        });
    }
    Ok(out)
}

/// An IPv4 address a guest may have.
fn host_ip(s: &str) -> Option<Ipv4Addr> {
    let ip: Ipv4Addr = s.trim().parse().ok()?;
    (!ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() && !ip.is_broadcast())
        .then_some(ip)
}

/// `24`, `/24` or `255.255.255.0`.
fn prefix(s: &str) -> Option<u8> {
    let s = s.trim();
    let s = s.strip_prefix('/').unwrap_or(s);
    if let Ok(mask) = s.parse::<Ipv4Addr>() {
        let bits = u32::from(mask);
        let len = bits.leading_ones();
        if bits.checked_shl(len).unwrap_or(0) != 0 {
            return None;
        }
        return u8::try_from(len).ok();
    }
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u8>().ok().filter(|p| *p <= 32)
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Whether `ip` is in `net/prefix`.
pub fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let m = mask(prefix);
    u32::from(ip) & m == u32::from(net) & m
}

fn check_nics(reqs: &[NicRequest], top_ip: &str) -> Result<Vec<NicSpec>, Invalid> {
    let top = match top_ip.trim() {
        "" => None,
        s => Some(host_ip(s).ok_or_else(|| Invalid::new("ip_address", Problem::Ipv4))?),
    };
    let default = [NicRequest {
        bridge: DEFAULT_BRIDGE.to_owned(),
        ..NicRequest::default()
    }];
    let reqs = if reqs.is_empty() { &default[..] } else { reqs };
    if reqs.len() > MAX_NICS {
        return bad("network_devices", Problem::TooMany { max: MAX_NICS });
    }
    let mut out = Vec::with_capacity(reqs.len());
    for (i, n) in reqs.iter().enumerate() {
        let f = |name: &str| format!("network_devices[{i}].{name}");
        let bridge = match n.bridge.trim() {
            "" => DEFAULT_BRIDGE.to_owned(),
            s if is_ref_name(s) => s.to_owned(),
            _ => return bad(f("bridge"), Problem::RefName),
        };
        let own = match n.ip_address.trim() {
            "" => None,
            s => Some(host_ip(s).ok_or_else(|| Invalid::new(f("ip_address"), Problem::Ipv4))?),
        };
        if i == 0 {
            if let (Some(t), Some(o)) = (top, own) {
                if t != o {
                    return bad("ip_address", Problem::Mismatch);
                }
            }
        }
        let address = if i == 0 { own.or(top) } else { own };
        let prefix = match n.subnet.trim() {
            "" => None,
            s => Some(prefix(s).ok_or_else(|| Invalid::new(f("subnet"), Problem::Prefix))?),
        };
        let gateway = match n.gateway.trim() {
            "" => None,
            s => Some(host_ip(s).ok_or_else(|| Invalid::new(f("gateway"), Problem::Ipv4))?),
        };
        let Some(address) = address else {
            if prefix.is_some() {
                return bad(f("subnet"), Problem::NeedsAddress);
            }
            if gateway.is_some() {
                return bad(f("gateway"), Problem::NeedsAddress);
            }
            out.push(NicSpec { bridge, ip: None });
            continue;
        };
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
        if prefix == 0 {
            return bad(f("subnet"), Problem::Prefix);
        }
        // /31 and /32 have no network or broadcast address (RFC 3021).
        if prefix <= 30 {
            let host = u32::from(address) & !mask(prefix);
            if host == 0 || host == !mask(prefix) {
                let field = if own.is_some() || i > 0 {
                    f("ip_address")
                } else {
                    "ip_address".to_owned()
                };
                return bad(field, Problem::HostPart);
            }
        }
        if let Some(gw) = gateway {
            if gw == address || !in_subnet(gw, address, prefix) {
                return bad(f("gateway"), Problem::GatewayOutside);
            }
        }
        out.push(NicSpec {
            bridge,
            ip: Some(StaticIp {
                address,
                prefix,
                gateway,
            }),
        });
    }
    Ok(out)
}

fn check_credentials(user: &str, password: &str) -> Result<Option<Credentials>, Invalid> {
    let user = user.trim();
    if user.is_empty() && password.is_empty() {
        return Ok(None);
    }
    if user.is_empty() {
        return bad("vm_username", Problem::Required);
    }
    let mut bytes = user.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    if !first_ok
        || user.len() > 32
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        || RESERVED_USERS.contains(&user)
    {
        return bad("vm_username", Problem::Username);
    }
    if password.is_empty() {
        return bad("vm_password", Problem::Required);
    }
    let len = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) || password.chars().any(char::is_control) {
        return bad("vm_password", Problem::Password);
    }
    Ok(Some(Credentials {
        username: user.to_owned(),
        password: password.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Seed 003's full create example.
    fn example() -> ServerRequest {
        ServerRequest {
            name: "web-server-03".into(),
            cpu: 4,
            memory: 8192,
            role: "web".into(),
            ip_address: "192.168.1.103".into(),
            disks: vec![DiskRequest {
                size: "100".into(),
                interface: "scsi0".into(),
                datastore_id: "local-lvm".into(),
                disk_type: "ssd".into(),
            }],
            network_devices: vec![NicRequest {
                bridge: "vmbr0".into(),
                ip_address: "192.168.1.103".into(),
                subnet: "24".into(),
                gateway: "192.168.1.1".into(),
            }],
            template_vm_id: Some("9000".into()),
            vm_username: "rocky".into(),
            vm_password: "password123".into(),
        }
    }

    fn err(req: &ServerRequest) -> (String, Problem) {
        let e = check(req).expect_err("must be refused");
        (e.field, e.problem)
    }

    #[test]
    fn the_seed_example_passes() {
        let s = check(&example()).expect("valid");
        assert_eq!(
            (s.name.as_str(), s.cpu, s.memory),
            ("web-server-03", 4, 8192)
        );
        assert_eq!(s.role, "web");
        assert_eq!(s.disks.len(), 1);
        assert_eq!(s.disks[0].interface.name(), "scsi0");
        assert_eq!(s.disks[0].size_gb, 100);
        assert_eq!(s.disks[0].disk_type, Some(DiskType::Ssd));
        assert_eq!(
            s.nics,
            vec![NicSpec {
                bridge: "vmbr0".into(),
                ip: Some(StaticIp {
                    address: Ipv4Addr::new(192, 168, 1, 103),
                    prefix: 24,
                    gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
                }),
            }]
        );
        assert_eq!(s.template, Some(9000));
        let c = s.credentials.expect("credentials");
        assert_eq!(c.username, "rocky");
        assert!(!format!("{c:?}").contains("password123"));
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let s = check(&ServerRequest {
            name: "db-1".into(),
            cpu: 1,
            memory: 1024,
            ip_address: "10.0.0.5".into(),
            ..ServerRequest::default()
        })
        .expect("valid");
        assert_eq!(s.disks[0].interface.name(), "scsi0");
        assert_eq!(s.disks[0].datastore, DEFAULT_DATASTORE);
        assert_eq!(s.disks[0].size_gb, DEFAULT_DISK_GB);
        assert_eq!(s.nics[0].bridge, DEFAULT_BRIDGE);
        assert_eq!(
            s.nics[0].ip.map(|i| (i.address, i.prefix)),
            Some((Ipv4Addr::new(10, 0, 0, 5), 24))
        );
        assert_eq!((s.template, s.credentials), (None, None));
        // The top-level address goes to the first NIC only when it names none.
        let mut r = example();
        r.network_devices[0].ip_address.clear();
        assert_eq!(
            check(&r).expect("valid").nics[0].ip.map(|i| i.address),
            Some(Ipv4Addr::new(192, 168, 1, 103))
        );
    }

    #[test]
    fn every_rule_names_its_field() {
        type Case = (Box<dyn Fn(&mut ServerRequest)>, &'static str, Problem);
        let cases: Vec<Case> = vec![
            (
                Box::new(|r| r.name = "x".into()),
                "name",
                Problem::Limen(LimenInvalid::NameTooShort),
            ),
            (
                Box::new(|r| r.name = "a b c".into()),
                "name",
                Problem::Limen(LimenInvalid::NameCharset),
            ),
            (
                Box::new(|r| r.cpu = 0),
                "cpu",
                Problem::Limen(LimenInvalid::CpuTooLow),
            ),
            (
                Box::new(|r| r.cpu = 33),
                "cpu",
                Problem::Limen(LimenInvalid::CpuTooHigh),
            ),
            (
                Box::new(|r| r.memory = 0),
                "memory",
                Problem::Limen(LimenInvalid::MemoryTooLow),
            ),
            (
                Box::new(|r| r.memory = 1000),
                "memory",
                Problem::Limen(LimenInvalid::MemoryNotMultiple),
            ),
            (
                Box::new(|r| r.memory = 1 << 40),
                "memory",
                Problem::Limen(LimenInvalid::MemoryTooHigh),
            ),
            (
                Box::new(|r| r.role = "Web Server".into()),
                "role",
                Problem::Role,
            ),
            (
                Box::new(|r| r.disks[0].size = "0".into()),
                "disks[0].size",
                Problem::Range {
                    min: 1,
                    max: DISK_MAX_GB,
                },
            ),
            (
                Box::new(|r| r.disks[0].size = "big".into()),
                "disks[0].size",
                Problem::Range {
                    min: 1,
                    max: DISK_MAX_GB,
                },
            ),
            (
                Box::new(|r| r.disks[0].size.clear()),
                "disks[0].size",
                Problem::Required,
            ),
            (
                Box::new(|r| r.disks[0].interface = "nvme0".into()),
                "disks[0].interface",
                Problem::Interface,
            ),
            (
                Box::new(|r| r.disks[0].interface = "sata6".into()),
                "disks[0].interface",
                Problem::Interface,
            ),
            (
                Box::new(|r| r.disks[0].interface = "scsi01".into()),
                "disks[0].interface",
                Problem::Interface,
            ),
            (
                Box::new(|r| r.disks[0].interface.clear()),
                "disks[0].interface",
                Problem::Required,
            ),
            (
                Box::new(|r| {
                    let d = r.disks[0].clone();
                    r.disks.push(d);
                }),
                "disks[1].interface",
                Problem::Duplicate,
            ),
            (
                Box::new(|r| {
                    r.disks = vec![
                        DiskRequest {
                            size: "1".into(),
                            ..DiskRequest::default()
                        };
                        9
                    ]
                }),
                "disks",
                Problem::TooMany { max: 8 },
            ),
            (
                Box::new(|r| r.disks[0].datastore_id = "../etc".into()),
                "disks[0].datastore_id",
                Problem::RefName,
            ),
            (
                Box::new(|r| r.disks[0].disk_type = "nvme".into()),
                "disks[0].disk_type",
                Problem::DiskType,
            ),
            (
                Box::new(|r| r.network_devices[0].bridge = "br 0".into()),
                "network_devices[0].bridge",
                Problem::RefName,
            ),
            (
                Box::new(|r| r.network_devices[0].ip_address = "300.1.1.1".into()),
                "network_devices[0].ip_address",
                Problem::Ipv4,
            ),
            (
                Box::new(|r| r.network_devices[0].ip_address = "192.168.1.104".into()),
                "ip_address",
                Problem::Mismatch,
            ),
            (
                Box::new(|r| r.ip_address = "127.0.0.1".into()),
                "ip_address",
                Problem::Ipv4,
            ),
            (
                Box::new(|r| r.network_devices[0].subnet = "33".into()),
                "network_devices[0].subnet",
                Problem::Prefix,
            ),
            (
                Box::new(|r| r.network_devices[0].subnet = "255.0.255.0".into()),
                "network_devices[0].subnet",
                Problem::Prefix,
            ),
            (
                Box::new(|r| r.network_devices[0].gateway = "10.0.0.1".into()),
                "network_devices[0].gateway",
                Problem::GatewayOutside,
            ),
            (
                Box::new(|r| r.network_devices[0].gateway = "192.168.1.103".into()),
                "network_devices[0].gateway",
                Problem::GatewayOutside,
            ),
            (
                Box::new(|r| {
                    r.ip_address = "192.168.1.0".into();
                    r.network_devices[0].ip_address = "192.168.1.0".into();
                }),
                "network_devices[0].ip_address",
                Problem::HostPart,
            ),
            (
                Box::new(|r| {
                    r.network_devices.push(NicRequest {
                        gateway: "10.0.0.1".into(),
                        ..NicRequest::default()
                    })
                }),
                "network_devices[1].gateway",
                Problem::NeedsAddress,
            ),
            (
                Box::new(|r| r.network_devices = vec![NicRequest::default(); 9]),
                "network_devices",
                Problem::TooMany { max: 8 },
            ),
            (
                Box::new(|r| r.template_vm_id = Some("abc".into())),
                "template_vm_id",
                Problem::Range {
                    min: 100,
                    max: i64::from(u32::MAX),
                },
            ),
            (
                Box::new(|r| r.vm_username = "Rocky".into()),
                "vm_username",
                Problem::Username,
            ),
            (
                Box::new(|r| r.vm_username = "root".into()),
                "vm_username",
                Problem::Username,
            ),
            (
                Box::new(|r| r.vm_username = "a;reboot".into()),
                "vm_username",
                Problem::Username,
            ),
            (
                Box::new(|r| r.vm_username.clear()),
                "vm_username",
                Problem::Required,
            ),
            (
                Box::new(|r| r.vm_password.clear()),
                "vm_password",
                Problem::Required,
            ),
            (
                Box::new(|r| r.vm_password = "short".into()),
                "vm_password",
                Problem::Password,
            ),
            (
                Box::new(|r| r.vm_password = "pass\nword123".into()),
                "vm_password",
                Problem::Password,
            ),
        ];
        for (change, field, problem) in cases {
            let mut r = example();
            change(&mut r);
            assert_eq!(err(&r), (field.to_owned(), problem), "{r:?}");
        }
    }

    #[test]
    fn interfaces_and_prefixes() {
        for (s, bus, index) in [
            ("scsi0", Bus::Scsi, 0),
            ("scsi30", Bus::Scsi, 30),
            ("virtio15", Bus::Virtio, 15),
            ("sata5", Bus::Sata, 5),
            ("ide3", Bus::Ide, 3),
        ] {
            assert_eq!(Interface::parse(s), Some(Interface { bus, index }));
            assert_eq!(Interface::parse(s).map(Interface::name).as_deref(), Some(s));
        }
        for s in [
            "scsi31", "virtio16", "ide4", "scsi", "scsi-1", "scsi+1", "SCSI0", "0scsi",
        ] {
            assert_eq!(Interface::parse(s), None, "{s}");
        }
        assert_eq!(prefix("24"), Some(24));
        assert_eq!(prefix("/16"), Some(16));
        assert_eq!(prefix("255.255.255.0"), Some(24));
        assert_eq!(prefix("0.0.0.0"), Some(0));
        assert_eq!(prefix("255.255.255.255"), Some(32));
        assert_eq!(prefix("+24"), None);
        assert_eq!(prefix("024"), None);
        assert!(in_subnet(
            Ipv4Addr::new(10, 1, 2, 3),
            Ipv4Addr::new(10, 1, 0, 9),
            16
        ));
        assert!(!in_subnet(
            Ipv4Addr::new(10, 2, 2, 3),
            Ipv4Addr::new(10, 1, 0, 9),
            16
        ));
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9./:-]{0,20}",
            "\\PC{0,12}",
            Just("scsi0".to_owned()),
            Just("192.168.1.5".to_owned()),
            Just("24".to_owned()),
        ]
    }

    proptest! {
        /// Any body: an answer, never a panic; anything accepted keeps every invariant.
        #[test]
        fn never_panics(
            name in text(), cpu in any::<i64>(), memory in any::<i64>(), role in text(),
            ip in text(), disks in proptest::collection::vec((text(), text(), text(), text()), 0..10),
            nics in proptest::collection::vec((text(), text(), text(), text()), 0..10),
            template in proptest::option::of(text()), user in text(), pw in text(),
        ) {
            let req = ServerRequest {
                name, cpu, memory, role, ip_address: ip,
                disks: disks.into_iter().map(|(size, interface, datastore_id, disk_type)|
                    DiskRequest { size, interface, datastore_id, disk_type }).collect(),
                network_devices: nics.into_iter().map(|(bridge, ip_address, subnet, gateway)|
                    NicRequest { bridge, ip_address, subnet, gateway }).collect(),
                template_vm_id: template, vm_username: user, vm_password: pw,
            };
            if let Ok(s) = check(&req) {
                prop_assert!(!s.disks.is_empty() && s.disks.len() <= MAX_DISKS);
                prop_assert!(!s.nics.is_empty() && s.nics.len() <= MAX_NICS);
                for (i, d) in s.disks.iter().enumerate() {
                    prop_assert!(s.disks[..i].iter().all(|o| o.interface != d.interface));
                    prop_assert!(is_ref_name(&d.datastore));
                }
                for n in &s.nics {
                    prop_assert!(is_ref_name(&n.bridge));
                    if let Some(ip) = n.ip {
                        prop_assert!((1..=32).contains(&ip.prefix));
                        if let Some(gw) = ip.gateway {
                            prop_assert!(in_subnet(gw, ip.address, ip.prefix) && gw != ip.address);
                        }
                    }
                }
            }
        }
    }
}
