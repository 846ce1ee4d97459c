//! USB modems in sysfs: who a modem is (its USB physical path) and what its USB device looks
//! like now, under a sysfs root that is a parameter (`[dongle] sysfs_root`, `/sys` in
//! production, a fake tree in tests: [`fake`]).
//!
//! Identity: a modem is bound to its USB physical path (`1-1.3`: bus 1, port 1, port 3), not
//! to the `wwanN`/`ttyUSBN`/`enx…` names the kernel hands out, which change on every
//! re-enumeration and collide between identical sticks. [`Sysfs::usb_path_of_netdev`] and
//! [`Sysfs::usb_path_of_tty`] learn the path from configured names; [`Sysfs::resolve`] finds
//! the interface and the AT tty under a path, whatever they are called today.
//!
//! This module reads sysfs and, through a [`SysfsWriter`], writes it; the recovery steps that
//! write (re-bind, port power cycle, controller reset, mode switch) are in [`steps`]. It never
//! decides when to recover: that is the healer's.

pub mod fake;
pub mod steps;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `1-1.3`: bus, then port numbers joined by dots. Checked before any path is built from it,
/// so a configured value cannot walk out of the sysfs tree.
pub fn valid_usb_path(p: &str) -> bool {
    let Some((bus, ports)) = p.split_once('-') else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    number(bus) && ports.split('.').all(number) && ports.split('.').count() <= 7
}

/// A USB interface name (`1-1.3:1.2`) → its device's path (`1-1.3`) and its `1.2`.
fn split_interface(name: &str) -> Option<(&str, &str)> {
    let (dev, iface) = name.split_once(':')?;
    valid_usb_path(dev).then_some((dev, iface))
}

/// Writes sysfs attributes. Production writes the files; the fake tree also plays the kernel.
pub trait SysfsWriter: Send + Sync {
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
}

/// Plain file writes, as the kernel wants them (one `write`, no truncation games).
pub struct FileWriter;

impl SysfsWriter for FileWriter {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
}

/// External tools the steps may use, when installed.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// `lsusb` (usbutils): reads a hub's descriptor, which sysfs does not show.
    pub lsusb: Option<PathBuf>,
    /// `usb_modeswitch`: switches a stick out of mass-storage mode.
    pub usb_modeswitch: Option<PathBuf>,
}

impl Tools {
    /// Finds the tools on `PATH` (and in the sbin directories a service's `PATH` may lack).
    pub fn from_path() -> Self {
        Self {
            lsusb: which("lsusb"),
            usb_modeswitch: which("usb_modeswitch"),
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What a USB device looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    pub usb_path: String,
    pub vendor: String,
    pub product: String,
    pub busnum: u32,
    pub devnum: u32,
    /// `bDeviceClass` 09.
    pub is_hub: bool,
    /// Every interface is mass storage (class 08): a stick in CD-ROM mode.
    pub storage_only: bool,
}

/// The network interfaces and ttys under one USB device, by interface (`1.2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub netdevs: Vec<(String, String)>,
    pub ttys: Vec<(String, String)>,
}

impl Resolved {
    /// The tty on interface `iface` (learnt from the configured port), else the vendor's usual
    /// AT interface, else the first tty.
    pub fn at_tty(&self, iface: Option<&str>, vendor: Option<&str>) -> Option<&str> {
        let pick = |want: &str| {
            self.ttys
                .iter()
                .find(|(i, _)| i == want)
                .map(|(_, t)| t.as_str())
        };
        iface
            .and_then(pick)
            .or_else(|| vendor.and_then(usual_at_interface).and_then(pick))
            .or_else(|| self.ttys.first().map(|(_, t)| t.as_str()))
    }

    pub fn netdev(&self) -> Option<&str> {
        self.netdevs.first().map(|(_, n)| n.as_str())
    }
}

/// The AT port's interface on common modems (`idVendor`): Quectel, SIMCom and Huawei put it on
/// interface 2 (ttyUSB2), Sierra on 3, Fibocom on 2.
fn usual_at_interface(vendor: &str) -> Option<&'static str> {
    match vendor {
        "2c7c" | "05c6" | "1e0e" | "12d1" | "2cb7" => Some("1.2"),
        "1199" => Some("1.3"),
        _ => None,
    }
}

/// A sysfs tree and how to write it.
#[derive(Clone)]
pub struct Sysfs {
    root: PathBuf,
    writer: Arc<dyn SysfsWriter>,
    pub tools: Tools,
}

impl std::fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sysfs").field("root", &self.root).finish()
    }
}

impl Sysfs {
    /// The real tree (or any root) with plain file writes and the tools on `PATH`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            writer: Arc::new(FileWriter),
            tools: Tools::from_path(),
        }
    }

    pub fn with_writer(
        root: impl Into<PathBuf>,
        writer: Arc<dyn SysfsWriter>,
        tools: Tools,
    ) -> Self {
        Self {
            root: root.into(),
            writer,
            tools,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        self.writer.write(path, value)
    }

    /// `<root>/bus/usb/devices/<name>`.
    pub fn usb_dir(&self, name: &str) -> PathBuf {
        self.root.join("bus/usb/devices").join(name)
    }

    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The USB path of the device a sysfs `device` link leads into (walking up from an
    /// interface or a usb-serial port to the USB device).
    fn usb_path_above(&self, link: &Path) -> Option<String> {
        let real = std::fs::canonicalize(link).ok()?;
        real.ancestors().find_map(|dir| {
            let name = dir.file_name()?.to_str()?;
            if valid_usb_path(name) {
                return Some(name.to_owned());
            }
            None
        })
    }

    /// The USB path of network interface `netdev` (`/sys/class/net/<dev>/device`).
    pub fn usb_path_of_netdev(&self, netdev: &str) -> Option<String> {
        if !plain_name(netdev) {
            return None;
        }
        self.usb_path_above(&self.root.join("class/net").join(netdev).join("device"))
    }

    /// The USB path and interface (`1.2`) of tty `port` (`/dev/ttyUSB2` or a symlink to it:
    /// `/sys/class/tty/<tty>/device`).
    pub fn usb_interface_of_tty(&self, port: &Path) -> Option<(String, String)> {
        let real = std::fs::canonicalize(port).unwrap_or_else(|_| port.to_path_buf());
        let name = real.file_name()?.to_str()?;
        if !plain_name(name) {
            return None;
        }
        let dev =
            std::fs::canonicalize(self.root.join("class/tty").join(name).join("device")).ok()?;
        dev.ancestors().find_map(|dir| {
            let (path, iface) = split_interface(dir.file_name()?.to_str()?)?;
            Some((path.to_owned(), iface.to_owned()))
        })
    }

    pub fn usb_path_of_tty(&self, port: &Path) -> Option<String> {
        self.usb_interface_of_tty(port).map(|(p, _)| p)
    }

    /// The interfaces under USB device `usb_path` now: `net/*` and the ttys (`ttyUSB*` of
    /// usb-serial, `tty/*` of cdc-acm) of each `<path>:1.N`.
    pub fn resolve(&self, usb_path: &str) -> Option<Resolved> {
        if !valid_usb_path(usb_path) {
            return None;
        }
        let dir = self.usb_dir(usb_path);
        let entries = std::fs::read_dir(&dir).ok()?;
        let mut out = Resolved::default();
        let mut ifaces: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (dev, iface) = split_interface(&name)?;
                (dev == usb_path).then(|| (iface.to_owned(), e.path()))
            })
            .collect();
        ifaces.sort();
        for (iface, path) in ifaces {
            for name in names(&path.join("net")) {
                out.netdevs.push((iface.clone(), name));
            }
            for name in names(&path) {
                if name.starts_with("ttyUSB") {
                    out.ttys.push((iface.clone(), name));
                }
            }
            for name in names(&path.join("tty")) {
                out.ttys.push((iface.clone(), name));
            }
        }
        Some(out)
    }

    /// USB device `usb_path` (or a root hub `usbN`) as it is now; `None` when it is not there.
    pub fn device(&self, usb_path: &str) -> Option<UsbDevice> {
        if !(valid_usb_path(usb_path) || root_hub_bus(usb_path).is_some()) {
            return None;
        }
        let dir = self.usb_dir(usb_path);
        let attr = |a: &str| self.read(&dir.join(a));
        let number = |a: &str| attr(a).and_then(|v| v.parse::<u32>().ok());
        let devnum = number("devnum")?;
        let mut classes = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().into_string().unwrap_or_default();
                if name.contains(':') {
                    if let Some(c) = self.read(&e.path().join("bInterfaceClass")) {
                        classes.push(c);
                    }
                }
            }
        }
        Some(UsbDevice {
            usb_path: usb_path.to_owned(),
            vendor: attr("idVendor").unwrap_or_default(),
            product: attr("idProduct").unwrap_or_default(),
            busnum: number("busnum").unwrap_or_default(),
            devnum,
            is_hub: attr("bDeviceClass").as_deref() == Some("09"),
            storage_only: !classes.is_empty() && classes.iter().all(|c| c == "08"),
        })
    }

    /// `/sys/class/net/<dev>/operstate` (`up`, `down`, `unknown`...); `None` if no such
    /// interface.
    pub fn operstate(&self, netdev: &str) -> Option<String> {
        if !plain_name(netdev) {
            return None;
        }
        self.read(&self.root.join("class/net").join(netdev).join("operstate"))
    }
}

/// How a modem finds its interfaces again under its USB path: actors (AT and HiLink alike) ask
/// it whenever they (re)open their modem, so a re-enumerated modem is found under its new names.
#[derive(Debug, Clone)]
pub struct UsbIdentity {
    pub sysfs: Sysfs,
    pub usb_path: String,
    /// The AT tty's interface (`1.2`), learnt from the configured port; `None`: the vendor's
    /// usual one.
    pub at_interface: Option<String>,
    /// Where the device nodes are (`/dev`).
    pub dev_dir: PathBuf,
}

/// A modem's names as sysfs has them now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentNames {
    pub netdev: Option<String>,
    /// The AT tty's device node.
    pub port: Option<PathBuf>,
}

impl UsbIdentity {
    /// The netdev and AT tty under the USB path now (both `None` while the device is away).
    pub fn current(&self) -> CurrentNames {
        let Some(r) = self.sysfs.resolve(&self.usb_path) else {
            return CurrentNames::default();
        };
        let vendor = self.sysfs.device(&self.usb_path).map(|d| d.vendor);
        CurrentNames {
            netdev: r.netdev().map(str::to_owned),
            port: r
                .at_tty(self.at_interface.as_deref(), vendor.as_deref())
                .map(|t| self.dev_dir.join(t)),
        }
    }
}

/// `usbN` → N.
fn root_hub_bus(name: &str) -> Option<u32> {
    name.strip_prefix("usb")?.parse().ok()
}

/// A single path component (no `/`, not `.`/`..`): a netdev or tty name.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= 64
}

/// The entry names of `dir`, sorted; empty if it is not there.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests;
