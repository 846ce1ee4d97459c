//! Domain XML (pure): one small typed template per OS type, and the two facts edgeward reads
//! back from a live domain's XML (its VNC port, and the size it was defined with).
//!
//! Every domain gets its own `<uuid>` (the record's, so records and domains are matched by
//! uuid, never by name), its own MAC, a qcow2 disk, the OS type's ISO when there is one, a
//! virtio memballoon (balloon statistics need it) and VNC graphics that listen on 127.0.0.1
//! only (the original listened on 0.0.0.0): the console is reached through edgeward's relay.
//! Windows gets a SATA disk and an e1000 NIC, because its installer has no virtio drivers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::server_spec::{Bus, Interface};
use super::spec::OsType;

/// How the guest's CPU runs: KVM (hardware virtualisation) or QEMU's own TCG emulator, for a
/// host without usable KVM (no `/dev/kvm`, nested setups, most ARM routers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    #[default]
    Kvm,
    Tcg,
}

impl Accel {
    /// The `<domain type=…>` word.
    pub fn domain_type(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "qemu",
        }
    }

    /// The `<cpu>` line: the host's model under KVM; TCG keeps QEMU's default model (it cannot
    /// emulate every host feature).
    fn cpu(self) -> &'static str {
        match self {
            Self::Kvm => "  <cpu mode='host-model'/>\n",
            Self::Tcg => "",
        }
    }
}

/// The parameters of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub accel: Accel,
    pub name: String,
    pub uuid: String,
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    pub os_type: OsType,
    /// `52:54:00:xx:xx:xx`.
    pub mac: String,
    pub disk: PathBuf,
    /// The installer ISO, when `storage_dir/iso/<os_type>.iso` exists.
    pub iso: Option<PathBuf>,
    /// The libvirt network the NIC joins.
    pub network: String,
    /// Names the NIC's host side `ew<vmid>i0` (firewall groups key on it).
    pub vmid: u32,
    /// A fixed VNC port, or `None` for libvirt's autoport.
    pub vnc_port: Option<u16>,
}

/// The host-side name of NIC `index` of guest `vmid`: `ew<vmid>i<index>` (at most 15 bytes, the
/// kernel's limit, for every u32 vmid and index below 100). libvirt gives the tap this name, so
/// nftables rules keyed on it hold from the moment the guest starts.
pub fn tap_name(vmid: u32, index: u8) -> String {
    format!("ew{vmid}i{}", index.min(99))
}

#[cfg(test)]
#[test]
fn tap_names_fit_the_kernel_limit() {
    assert_eq!(tap_name(100, 0), "ew100i0");
    assert!(tap_name(u32::MAX, 99).len() <= 15);
}

/// Bus and model choices per OS type.
struct Devices {
    disk_bus: &'static str,
    disk_dev: &'static str,
    nic_model: &'static str,
}

fn devices(os: OsType) -> Devices {
    match os {
        OsType::Windows => Devices {
            disk_bus: "sata",
            disk_dev: "sda",
            nic_model: "e1000",
        },
        OsType::UbuntuDesktop | OsType::UbuntuServer | OsType::Kali => Devices {
            disk_bus: "virtio",
            disk_dev: "vda",
            nic_model: "virtio",
        },
    }
}

/// The disk's target name for this OS type (`vda`, or `sda` for Windows): block statistics
/// are asked for by it.
pub fn disk_target(os: OsType) -> &'static str {
    devices(os).disk_dev
}

/// The domain XML for `spec`.
pub fn domain_xml(spec: &DomainSpec) -> String {
    let d = devices(spec.os_type);
    let kib = spec.memory.saturating_mul(1024);
    let mut x = String::with_capacity(2048);
    let _ = write!(
        x,
        "<domain type='{domain_type}'>\n\
         \x20 <name>{name}</name>\n\
         \x20 <uuid>{uuid}</uuid>\n\
         \x20 <memory unit='KiB'>{kib}</memory>\n\
         \x20 <currentMemory unit='KiB'>{kib}</currentMemory>\n\
         \x20 <vcpu placement='static'>{cpu}</vcpu>\n\
         \x20 <os>\n\
         \x20   <type arch='x86_64' machine='q35'>hvm</type>\n\
         \x20   <boot dev='hd'/>\n\
         \x20   <boot dev='cdrom'/>\n\
         \x20 </os>\n\
         \x20 <features><acpi/><apic/></features>\n\
         {cpu_model}\
         \x20 <clock offset='{clock}'/>\n\
         \x20 <on_poweroff>destroy</on_poweroff>\n\
         \x20 <on_reboot>restart</on_reboot>\n\
         \x20 <on_crash>destroy</on_crash>\n\
         \x20 <devices>\n\
         \x20   <emulator>/usr/bin/qemu-system-x86_64</emulator>\n\
         \x20   <disk type='file' device='disk'>\n\
         \x20     <driver name='qemu' type='qcow2'/>\n\
         \x20     <source file='{disk}'/>\n\
         \x20     <target dev='{disk_dev}' bus='{disk_bus}'/>\n\
         \x20   </disk>\n",
        domain_type = spec.accel.domain_type(),
        cpu_model = spec.accel.cpu(),
        name = escape(&spec.name),
        uuid = escape(&spec.uuid),
        cpu = spec.cpu,
        clock = if spec.os_type == OsType::Windows {
            "localtime"
        } else {
            "utc"
        },
        disk = escape_path(&spec.disk),
        disk_dev = d.disk_dev,
        disk_bus = d.disk_bus,
    );
    if let Some(iso) = &spec.iso {
        // The CD-ROM sits on SATA for every OS type (q35 has no IDE); `sdb` keeps it clear of
        // the Windows disk.
        let _ = write!(
            x,
            "\x20   <disk type='file' device='cdrom'>\n\
             \x20     <driver name='qemu' type='raw'/>\n\
             \x20     <source file='{}'/>\n\
             \x20     <target dev='sdb' bus='sata'/>\n\
             \x20     <readonly/>\n\
             \x20   </disk>\n",
            escape_path(iso)
        );
    }
    let graphics_port = match spec.vnc_port {
        Some(p) => format!("port='{p}' autoport='no'"),
        None => "port='-1' autoport='yes'".to_owned(),
    };
    let _ = write!(
        x,
        "\x20   <interface type='network'>\n\
         \x20     <mac address='{mac}'/>\n\
         \x20     <source network='{network}'/>\n\
         \x20     <target dev='{tap}'/>\n\
         \x20     <model type='{nic}'/>\n\
         \x20   </interface>\n\
         \x20   <serial type='pty'><target port='0'/></serial>\n\
         \x20   <console type='pty'><target type='serial' port='0'/></console>\n\
         \x20   <input type='tablet' bus='usb'/>\n\
         \x20   <graphics type='vnc' {graphics_port} listen='127.0.0.1'>\n\
         \x20     <listen type='address' address='127.0.0.1'/>\n\
         \x20   </graphics>\n\
         \x20   <video><model type='virtio'/></video>\n\
         \x20   <memballoon model='virtio'>\n\
         \x20     <stats period='5'/>\n\
         \x20   </memballoon>\n\
         \x20 </devices>\n\
         </domain>\n",
        mac = escape(&spec.mac),
        network = escape(&spec.network),
        tap = tap_name(spec.vmid, 0),
        nic = d.nic_model,
    );
    x
}

/// What a seed-003 NIC joins: a libvirt network (`<interface type='network'>`) or a host
/// bridge (`<interface type='bridge'>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicSource {
    Network(String),
    Bridge(String),
}

impl NicSource {
    /// `network:<libvirt network>` (1–64 of `A-Za-z0-9-_.`) or `bridge:<host bridge>` (a Linux
    /// interface name: 1–15 bytes, no `/`, `:` or whitespace).
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.trim().split_once(':')?;
        match kind {
            "network" => (!name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            .then(|| Self::Network(name.to_owned())),
            "bridge" => (!name.is_empty()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':'))
            .then(|| Self::Bridge(name.to_owned())),
            _ => None,
        }
    }

    /// `network` or `bridge`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Network(_) => "network",
            Self::Bridge(_) => "bridge",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Network(n) | Self::Bridge(n) => n,
        }
    }
}

/// One disk of a server domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDisk {
    pub path: PathBuf,
    /// `sda`, `vdb`, `hda` ([`disk_targets`]).
    pub target: String,
    pub bus: Bus,
    /// Shown to the guest as an SSD (rotation rate 1, discard passed down).
    pub ssd: bool,
}

/// One NIC of a server domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNic {
    pub source: NicSource,
    /// `52:54:00:xx:xx:xx`.
    pub mac: String,
}

/// The parameters of a seed-003 server's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDomain {
    pub accel: Accel,
    pub name: String,
    pub uuid: String,
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    pub vmid: u32,
    /// In the request's order; the first one boots.
    pub disks: Vec<ServerDisk>,
    /// NIC `n`'s tap is `ew<vmid>i<n>`.
    pub nics: Vec<ServerNic>,
    /// The cloud-init seed image, attached read-only as [`SEED_TARGET`].
    pub seed: Option<PathBuf>,
    pub vnc_port: Option<u16>,
}

/// Where the cloud-init seed image sits: past every virtio index a request may use
/// (`virtio15` = `vdp`), so it never takes a requested disk's name.
pub const SEED_TARGET: &str = "vdz";

/// libvirt's disk names: `a`…`z`, `aa`…
fn letters(mut n: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The guest device of each interface, in the same order: `virtioN` → `vd<N>`, `ideN` → `hd<N>`
/// (`ide0` = `hda`); SCSI and SATA disks share the `sd` names, handed out in order (every
/// `scsiN` by index, then every `sataN`), so `scsi0` alone is `sda` and `sata0` alone is `sda`.
pub fn disk_targets(interfaces: &[Interface]) -> Vec<String> {
    let mut sd: Vec<Interface> = interfaces
        .iter()
        .copied()
        .filter(|i| matches!(i.bus, Bus::Scsi | Bus::Sata))
        .collect();
    sd.sort();
    interfaces
        .iter()
        .map(|i| match i.bus {
            Bus::Virtio => format!("vd{}", letters(usize::from(i.index))),
            Bus::Ide => format!("hd{}", letters(usize::from(i.index))),
            Bus::Scsi | Bus::Sata => {
                let n = sd.iter().position(|o| o == i).unwrap_or(0);
                format!("sd{}", letters(n))
            }
        })
        .collect()
}

/// The domain XML of a seed-003 server: q35 (or i440fx `pc` when a disk is on IDE, which q35
/// does not have), every disk on its bus with a virtio-scsi controller when one is on SCSI, the
/// first disk booting, every NIC on its network or bridge with its tap named `ew<vmid>i<n>`,
/// the seed image read-only, VNC on 127.0.0.1 and a memballoon, as for LIMEN VMs.
pub fn server_xml(spec: &ServerDomain) -> String {
    let kib = spec.memory.saturating_mul(1024);
    let machine = if spec.disks.iter().any(|d| d.bus == Bus::Ide) {
        "pc"
    } else {
        "q35"
    };
    let mut x = String::with_capacity(4096);
    let _ = write!(
        x,
        "<domain type='{domain_type}'>\n\
         \x20 <name>{name}</name>\n\
         \x20 <uuid>{uuid}</uuid>\n\
         \x20 <memory unit='KiB'>{kib}</memory>\n\
         \x20 <currentMemory unit='KiB'>{kib}</currentMemory>\n\
         \x20 <vcpu placement='static'>{cpu}</vcpu>\n\
         \x20 <os>\n\
         \x20   <type arch='x86_64' machine='{machine}'>hvm</type>\n\
         \x20 </os>\n\
         \x20 <features><acpi/><apic/></features>\n\
         {cpu_model}\
         \x20 <clock offset='utc'/>\n\
         \x20 <on_poweroff>destroy</on_poweroff>\n\
         \x20 <on_reboot>restart</on_reboot>\n\
         \x20 <on_crash>destroy</on_crash>\n\
         \x20 <devices>\n\
         \x20   <emulator>/usr/bin/qemu-system-x86_64</emulator>\n",
        domain_type = spec.accel.domain_type(),
        cpu_model = spec.accel.cpu(),
        name = escape(&spec.name),
        uuid = escape(&spec.uuid),
        cpu = spec.cpu,
    );
    if spec.disks.iter().any(|d| d.bus == Bus::Scsi) {
        x.push_str("    <controller type='scsi' index='0' model='virtio-scsi'/>\n");
    }
    for (i, d) in spec.disks.iter().enumerate() {
        let discard = if d.ssd { " discard='unmap'" } else { "" };
        // libvirt takes a rotation rate for SCSI, SATA and IDE disks only.
        let rotation = if d.ssd && d.bus != Bus::Virtio {
            " rotation_rate='1'"
        } else {
            ""
        };
        let boot = if i == 0 {
            "      <boot order='1'/>\n"
        } else {
            ""
        };
        let _ = write!(
            x,
            "\x20   <disk type='file' device='disk'>\n\
             \x20     <driver name='qemu' type='qcow2'{discard}/>\n\
             \x20     <source file='{path}'/>\n\
             \x20     <target dev='{dev}' bus='{bus}'{rotation}/>\n\
             {boot}\
             \x20   </disk>\n",
            path = escape_path(&d.path),
            dev = escape(&d.target),
            bus = d.bus.as_str(),
        );
    }
    if let Some(seed) = &spec.seed {
        let _ = write!(
            x,
            "\x20   <disk type='file' device='disk'>\n\
             \x20     <driver name='qemu' type='raw'/>\n\
             \x20     <source file='{}'/>\n\
             \x20     <target dev='{SEED_TARGET}' bus='virtio'/>\n\
             \x20     <readonly/>\n\
             \x20   </disk>\n",
            escape_path(seed)
        );
    }
    for (i, n) in spec.nics.iter().enumerate() {
        let (kind, attr) = match &n.source {
            NicSource::Network(_) => ("network", "network"),
            NicSource::Bridge(_) => ("bridge", "bridge"),
        };
        let _ = write!(
            x,
            "\x20   <interface type='{kind}'>\n\
             \x20     <mac address='{mac}'/>\n\
             \x20     <source {attr}='{source}'/>\n\
             \x20     <target dev='{tap}'/>\n\
             \x20     <model type='virtio'/>\n\
             \x20   </interface>\n",
            mac = escape(&n.mac),
            source = escape(n.source.name()),
            tap = tap_name(spec.vmid, u8::try_from(i).unwrap_or(u8::MAX)),
        );
    }
    let graphics_port = match spec.vnc_port {
        Some(p) => format!("port='{p}' autoport='no'"),
        None => "port='-1' autoport='yes'".to_owned(),
    };
    let _ = write!(
        x,
        "\x20   <serial type='pty'><target port='0'/></serial>\n\
         \x20   <console type='pty'><target type='serial' port='0'/></console>\n\
         \x20   <input type='tablet' bus='usb'/>\n\
         \x20   <graphics type='vnc' {graphics_port} listen='127.0.0.1'>\n\
         \x20     <listen type='address' address='127.0.0.1'/>\n\
         \x20   </graphics>\n\
         \x20   <video><model type='virtio'/></video>\n\
         \x20   <memballoon model='virtio'>\n\
         \x20     <stats period='5'/>\n\
         \x20   </memballoon>\n\
         \x20 </devices>\n\
         </domain>\n"
    );
    x
}

/// The snapshot XML: a name edgeward chose and the user's description.
pub fn snapshot_xml(libvirt_name: &str, description: &str) -> String {
    format!(
        "<domainsnapshot>\n  <name>{}</name>\n  <description>{}</description>\n</domainsnapshot>\n",
        escape(libvirt_name),
        escape(description)
    )
}

/// The ISO for `os` under `storage_dir`, when the file is there.
pub fn iso_path(storage_dir: &Path, os: OsType) -> PathBuf {
    storage_dir.join("iso").join(format!("{}.iso", os.as_str()))
}

/// The VNC port a live domain listens on: the first `<graphics type='vnc' port='N'>` with a
/// real port (autoport domains show `-1` until they run). `None` = no VNC or no port yet.
pub fn vnc_port(domain_xml: &str) -> Option<u16> {
    let mut rest = domain_xml;
    while let Some(at) = rest.find("<graphics") {
        rest = &rest[at + "<graphics".len()..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if attr(tag, "type") != Some("vnc") {
            continue;
        }
        return attr(tag, "port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0);
    }
    None
}

/// What a domain's XML says about the fields edgeward owns: uuid, vCPUs and memory in MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub uuid: Option<String>,
    pub cpu: Option<u32>,
    pub memory_mb: Option<u64>,
}

/// Reads [`Observed`] from a domain's XML (inactive or live).
pub fn observe(domain_xml: &str) -> Observed {
    let text = |tag: &str| -> Option<(&str, &str)> {
        let open = format!("<{tag}");
        let mut from = 0;
        loop {
            let start = from + domain_xml[from..].find(&open)? + open.len();
            from = start;
            let rest = &domain_xml[start..];
            // `<vcpu>` must not match `<vcpus>`.
            if !rest.starts_with(['>', ' ', '\t', '\n']) {
                continue;
            }
            let head_end = rest.find('>')?;
            let head = &rest[..head_end];
            let body = &rest[head_end + 1..];
            let body = &body[..body.find('<')?];
            return Some((head, body.trim()));
        }
    };
    let memory_mb = text("memory").and_then(|(head, body)| {
        let n: u64 = body.parse().ok()?;
        let mib = match attr(head, "unit").unwrap_or("KiB") {
            "b" | "bytes" => n / (1024 * 1024),
            "KiB" | "k" | "K" => n / 1024,
            "MiB" | "M" => n,
            "GiB" | "G" => n.saturating_mul(1024),
            _ => return None,
        };
        Some(mib)
    });
    Observed {
        uuid: text("uuid").map(|(_, b)| b.to_ascii_lowercase()),
        cpu: text("vcpu").and_then(|(_, b)| b.parse().ok()),
        memory_mb,
    }
}

/// The value of attribute `name` in a tag's head (`type='vnc' port="5901"`).
fn attr<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = head;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1].is_ascii_whitespace();
        let after = rest[at + name.len()..].trim_start();
        rest = &rest[at + name.len()..];
        if !before_ok {
            continue;
        }
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let quote = after.chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let value = &after[1..];
        return value.find(quote).map(|end| &value[..end]);
    }
}

/// XML text/attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_path(p: &Path) -> String {
    escape(&p.to_string_lossy())
}

/// A push-mode `<domainbackup>` for libvirt's backup job: QEMU copies each `(device, file)`
/// disk as it is at this instant (copy-before-write) into a new qcow2 at `file`, while the
/// guest runs on; disks not listed are not backed up.
pub fn push_backup(disks: &[(String, PathBuf)]) -> String {
    let mut out = String::from("<domainbackup mode='push'>\n  <disks>\n");
    for (dev, file) in disks {
        out.push_str(&format!(
            "    <disk name='{}' backup='yes' type='file'>\n      <target file='{}'/>\n      \
             <driver type='qcow2'/>\n    </disk>\n",
            escape(dev),
            escape_path(file)
        ));
    }
    out.push_str("  </disks>\n</domainbackup>\n");
    out
}

/// Checks a domain XML saved by a backup before it is defined again: it must be the VM's own
/// (same uuid and name, every NIC's MAC one of the VM's `macs`) and name no disk file but
/// `allowed` (the VM's disks, its cloud-init seed and edgeward's ISOs), so a restore can never
/// point a domain at another file of the host.
pub fn check_saved_xml(
    domain_xml: &str,
    uuid: &str,
    name: &str,
    macs: &[&str],
    allowed: &[&std::path::Path],
) -> Result<(), String> {
    let doc = roxmltree::Document::parse(domain_xml).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err("not a domain".into());
    }
    let child_text = |tag: &str| {
        root.children()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(str::trim)
    };
    if !child_text("uuid").is_some_and(|u| u.eq_ignore_ascii_case(uuid)) {
        return Err("its uuid is not the VM's".into());
    }
    if child_text("name") != Some(name) {
        return Err("its name is not the VM's".into());
    }
    for n in root.descendants() {
        if n.has_tag_name("interface") {
            for m in n.children().filter(|c| c.has_tag_name("mac")) {
                if !m
                    .attribute("address")
                    .is_some_and(|a| macs.iter().any(|m| a.eq_ignore_ascii_case(m)))
                {
                    return Err("a NIC's MAC is not the VM's".into());
                }
            }
        }
        if n.has_tag_name("source") && n.parent().is_some_and(|p| p.has_tag_name("disk")) {
            for key in ["file", "dev", "dir", "volume", "pool", "name", "protocol"] {
                let Some(v) = n.attribute(key) else { continue };
                if key != "file" || !allowed.iter().any(|a| std::path::Path::new(v) == *a) {
                    return Err(format!("a disk source {key}={v:?} is not the VM's"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_guests_are_qemu_domains_without_the_host_cpu_model() {
        let kvm = domain_xml(&spec(OsType::UbuntuServer));
        assert!(kvm.starts_with("<domain type='kvm'>\n"), "{kvm}");
        assert!(
            kvm.contains("\n  <cpu mode='host-model'/>\n  <clock"),
            "{kvm}"
        );
        let tcg = domain_xml(&DomainSpec {
            accel: Accel::Tcg,
            ..spec(OsType::UbuntuServer)
        });
        assert!(tcg.starts_with("<domain type='qemu'>\n"), "{tcg}");
        assert!(!tcg.contains("<cpu"), "{tcg}");
        assert!(
            tcg.contains("</features>\n  <clock offset='utc'/>"),
            "{tcg}"
        );
        let s = server_xml(&ServerDomain {
            accel: Accel::Tcg,
            ..server()
        });
        assert!(
            s.starts_with("<domain type='qemu'>\n") && !s.contains("<cpu"),
            "{s}"
        );
    }

    #[test]
    fn a_push_backup_lists_each_disk_with_its_target_escaped() {
        let x = push_backup(&[
            ("vda".into(), PathBuf::from("/d/.a.live/vda.qcow2")),
            ("sdb".into(), PathBuf::from("/d/it's&<.qcow2")),
        ]);
        assert!(x.starts_with("<domainbackup mode='push'>"), "{x}");
        assert!(x.contains("<disk name='vda' backup='yes' type='file'>\n      <target file='/d/.a.live/vda.qcow2'/>"), "{x}");
        assert!(
            x.contains("<target file='/d/it&apos;s&amp;&lt;.qcow2'/>"),
            "{x}"
        );
        assert_eq!(x.matches("<driver type='qcow2'/>").count(), 2);
        assert!(x.trim_end().ends_with("</domainbackup>"));
    }

    fn spec(os: OsType) -> DomainSpec {
        DomainSpec {
            accel: Accel::Kvm,
            name: "vm-1".into(),
            uuid: "550e8400-e29b-41d4-a716-446655440000".into(),
            cpu: 2,
            memory: 2048,
            os_type: os,
            mac: "52:54:00:aa:bb:cc".into(),
            disk: "/var/lib/libvirt/images/edgeward/550e8400.qcow2".into(),
            iso: None,
            network: "default".into(),
            vmid: 101,
            vnc_port: None,
        }
    }

    #[test]
    fn linux_template() {
        let x = domain_xml(&spec(OsType::Kali));
        assert!(x.contains("<uuid>550e8400-e29b-41d4-a716-446655440000</uuid>"));
        assert!(x.contains("<memory unit='KiB'>2097152</memory>"));
        assert!(x.contains("<vcpu placement='static'>2</vcpu>"));
        assert!(x.contains("<target dev='vda' bus='virtio'/>"));
        assert!(x.contains("<model type='virtio'/>\n    </interface>"));
        assert!(x.contains("<mac address='52:54:00:aa:bb:cc'/>"));
        assert!(x.contains("<memballoon model='virtio'>"));
        assert!(x.contains("<source network='default'/>"));
        assert!(x.contains("<target dev='ew101i0'/>"));
        assert!(x.contains("port='-1' autoport='yes' listen='127.0.0.1'"));
        assert!(!x.contains("0.0.0.0"));
        assert!(!x.contains("device='cdrom'"));
        assert_eq!(
            observe(&x),
            Observed {
                uuid: Some("550e8400-e29b-41d4-a716-446655440000".into()),
                cpu: Some(2),
                memory_mb: Some(2048)
            }
        );
    }

    #[test]
    fn windows_gets_sata_and_e1000_and_an_iso() {
        let mut s = spec(OsType::Windows);
        s.iso = Some("/srv/iso/windows.iso".into());
        s.vnc_port = Some(5901);
        let x = domain_xml(&s);
        assert!(x.contains("<target dev='sda' bus='sata'/>"));
        assert!(x.contains("<model type='e1000'/>"));
        assert!(x.contains("<source file='/srv/iso/windows.iso'/>"));
        assert!(x.contains("<target dev='sdb' bus='sata'/>"));
        assert!(x.contains("port='5901' autoport='no' listen='127.0.0.1'"));
        assert_eq!(vnc_port(&x), Some(5901));
        assert_eq!(disk_target(OsType::Windows), "sda");
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut s = spec(OsType::UbuntuServer);
        s.network = "x'/><evil a='".into();
        s.disk = "/tmp/a&b<c>.qcow2".into();
        let x = domain_xml(&s);
        assert!(x.contains("<source network='x&apos;/&gt;&lt;evil a=&apos;'/>"));
        assert!(x.contains("/tmp/a&amp;b&lt;c&gt;.qcow2"));
        let snap = snapshot_xml("7-1", "</description><x>");
        assert!(snap.contains("&lt;/description&gt;&lt;x&gt;"));
    }

    fn server() -> ServerDomain {
        ServerDomain {
            accel: Accel::Kvm,
            name: "web-1".into(),
            uuid: "550e8400-e29b-41d4-a716-446655440000".into(),
            cpu: 4,
            memory: 4096,
            vmid: 123,
            disks: vec![
                ServerDisk {
                    path: "/a/web-scsi0.qcow2".into(),
                    target: "sda".into(),
                    bus: Bus::Scsi,
                    ssd: true,
                },
                ServerDisk {
                    path: "/b/web-virtio1.qcow2".into(),
                    target: "vdb".into(),
                    bus: Bus::Virtio,
                    ssd: false,
                },
            ],
            nics: vec![
                ServerNic {
                    source: NicSource::Network("default".into()),
                    mac: "52:54:00:00:00:01".into(),
                },
                ServerNic {
                    source: NicSource::Bridge("br-lan".into()),
                    mac: "52:54:00:00:00:02".into(),
                },
            ],
            seed: Some("/a/seed.img".into()),
            vnc_port: None,
        }
    }

    #[test]
    fn server_domains_have_every_disk_and_nic() {
        let x = server_xml(&server());
        assert!(x.contains("machine='q35'"));
        assert!(x.contains("<controller type='scsi' index='0' model='virtio-scsi'/>"));
        assert!(x.contains(
            "<source file='/a/web-scsi0.qcow2'/>\n      <target dev='sda' bus='scsi' rotation_rate='1'/>\n      <boot order='1'/>"
        ));
        assert!(x.contains("<source file='/b/web-virtio1.qcow2'/>\n      <target dev='vdb' bus='virtio'/>\n    </disk>"));
        assert!(x.contains("<target dev='vdz' bus='virtio'/>\n      <readonly/>"));
        assert!(x.contains("<interface type='network'>\n      <mac address='52:54:00:00:00:01'/>\n      <source network='default'/>\n      <target dev='ew123i0'/>"));
        assert!(x.contains("<interface type='bridge'>\n      <mac address='52:54:00:00:00:02'/>\n      <source bridge='br-lan'/>\n      <target dev='ew123i1'/>"));
        assert!(!x.contains("<boot dev="));
        assert_eq!(x.matches("<boot order=").count(), 1);
        assert!(roxmltree::Document::parse(&x).is_ok());
        // IDE needs the i440fx machine, and no SCSI controller without a SCSI disk.
        let mut s = server();
        s.disks = vec![ServerDisk {
            path: "/a/d.qcow2".into(),
            target: "hda".into(),
            bus: Bus::Ide,
            ssd: false,
        }];
        s.seed = None;
        let x = server_xml(&s);
        assert!(x.contains("machine='pc'") && !x.contains("controller type='scsi'"));
        assert!(!x.contains("<readonly/>"));
    }

    #[test]
    fn disk_names_by_interface() {
        let i = |s: &str| Interface::parse(s).unwrap();
        let t = |list: &[&str]| disk_targets(&list.iter().map(|s| i(s)).collect::<Vec<_>>());
        assert_eq!(t(&["scsi0"]), ["sda"]);
        assert_eq!(t(&["virtio0"]), ["vda"]);
        assert_eq!(t(&["sata0"]), ["sda"]);
        assert_eq!(t(&["ide0"]), ["hda"]);
        assert_eq!(
            t(&["sata0", "scsi1", "scsi0", "virtio3", "ide1"]),
            ["sdc", "sdb", "sda", "vdd", "hdb"]
        );
        assert_eq!(letters(25), "z");
        assert_eq!(letters(26), "aa");
        assert_eq!(letters(27), "ab");
        assert_eq!(
            NicSource::parse("network:default"),
            Some(NicSource::Network("default".into()))
        );
        assert_eq!(
            NicSource::parse("bridge:br0"),
            Some(NicSource::Bridge("br0".into()))
        );
        for bad in [
            "br0",
            "bridge:",
            "bridge:a/b",
            "bridge:0123456789abcdef",
            "network:a b",
            "host:x",
        ] {
            assert_eq!(NicSource::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn vnc_port_from_live_xml() {
        let live = "<domain><devices><graphics type='spice' port='5930'/>\
            <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1'>\
            <listen type='address' address='127.0.0.1'/></graphics></devices></domain>";
        assert_eq!(vnc_port(live), Some(5901));
        assert_eq!(
            vnc_port("<graphics type=\"vnc\" port=\"5905\" autoport=\"yes\"/>"),
            Some(5905)
        );
        assert_eq!(
            vnc_port("<graphics type='vnc' port='-1' autoport='yes'/>"),
            None
        );
        assert_eq!(vnc_port("<graphics type='vnc' autoport='yes'/>"), None);
        assert_eq!(vnc_port("<domain/>"), None);
        assert_eq!(vnc_port("<graphics type='vnc' port='99999'/>"), None);
        assert_eq!(vnc_port("<graphics"), None);
    }

    #[test]
    fn observe_units_and_missing_fields() {
        let x =
            "<domain><uuid>ABC</uuid><memory unit='GiB'>4</memory><vcpus/><vcpu>3</vcpu></domain>";
        let o = observe(x);
        assert_eq!(o.uuid.as_deref(), Some("abc"));
        assert_eq!(o.memory_mb, Some(4096));
        assert_eq!(o.cpu, Some(3), "<vcpus/> is not <vcpu>");
        assert_eq!(
            observe("<domain/>"),
            Observed {
                uuid: None,
                cpu: None,
                memory_mb: None
            }
        );
    }

    #[test]
    fn saved_xml_must_be_the_vms_own() {
        let disk = std::path::Path::new("/d/u.qcow2");
        let good = "<domain type='kvm'><name>web</name><uuid>AB-CD</uuid><devices>\
            <disk type='file'><source file='/d/u.qcow2'/></disk>\
            <interface type='network'><mac address='52:54:00:00:00:01'/></interface>\
            </devices></domain>";
        let ok = |x: &str| check_saved_xml(x, "ab-cd", "web", &["52:54:00:00:00:01"], &[disk]);
        assert_eq!(ok(good), Ok(()));
        assert!(ok(&good.replace("AB-CD", "AB-CE")).is_err());
        assert!(ok(&good.replace("<name>web", "<name>other")).is_err());
        assert!(ok(&good.replace(":01'", ":02'")).is_err());
        assert!(ok(&good.replace("/d/u.qcow2", "/etc/shadow")).is_err());
        assert!(ok(&good.replace("source file='/d/u.qcow2'", "source dev='/dev/sda'")).is_err());
        assert!(ok("<domain").is_err());
        assert!(ok("<network/>").is_err());
    }
}
