//! A fake sysfs tree with the kernel's layout, for tests and the demo: USB devices under one
//! host controller (root hub `usb1`, hubs, modems with their interfaces, netdevs and ttys),
//! `/sys/bus/usb/devices`, `/sys/class/net` and `/sys/class/tty` links, hub port `disable`
//! attributes and the controller's driver. Its [`SysfsWriter`] records every write and plays
//! the kernel: `authorized` 0 takes a device's interfaces away and 1 brings them back; a port's
//! `disable` 1 takes the device off the bus and 0 re-enumerates it (a new `devnum`); driver
//! unbind/bind does the same for every device of the controller. What comes back gets NEW
//! netdev and tty names, as after a real re-enumeration, so identity must follow the USB path.
//!
//! Writes can be refused (as without the udev rule), hubs can be ganged (through a fake
//! `lsusb` script it writes) or not really cut power, and a stick can come back in
//! mass-storage mode.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{valid_usb_path, Sysfs, SysfsWriter, Tools};

/// The controller every fake device hangs on.
pub const CONTROLLER: &str = "0000:00:14.0";

/// One interface of a fake device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeInterface {
    /// `1.N`'s N.
    pub number: u32,
    /// `bInterfaceClass`: `02`/`0a` CDC, `ff` vendor, `08` mass storage.
    pub class: String,
    /// A network interface (its name is made up on every (re)appearance).
    pub net: bool,
    /// A usb-serial tty (`ttyUSB*`).
    pub tty: bool,
}

/// One fake USB device.
#[derive(Debug, Clone)]
pub struct FakeDevice {
    pub vendor: String,
    pub product: String,
    pub hub_ports: Option<u32>,
    pub interfaces: Vec<FakeInterface>,
    /// `wHubCharacteristic` the fake `lsusb` reports (hubs only).
    pub hub_characteristics: u16,
    present: bool,
    authorized: bool,
    devnum: u32,
    names: BTreeMap<u32, (Option<String>, Option<String>)>,
}

impl FakeDevice {
    /// A modem with a network interface on 1.0 (or 1.4 for `wwan`-style, not modelled) and
    /// AT/serial ttys on 1.1..=1.3, like a Quectel EC25.
    pub fn modem(vendor: &str, product: &str) -> Self {
        let iface = |number, class: &str, net, tty| FakeInterface {
            number,
            class: class.into(),
            net,
            tty,
        };
        Self {
            vendor: vendor.into(),
            product: product.into(),
            hub_ports: None,
            interfaces: vec![
                iface(0, "02", true, false),
                iface(1, "ff", false, true),
                iface(2, "ff", false, true),
                iface(3, "ff", false, true),
            ],
            hub_characteristics: 0,
            present: true,
            authorized: true,
            devnum: 0,
            names: BTreeMap::new(),
        }
    }

    /// A HiLink stick: one CDC ethernet interface, no tty.
    pub fn hilink(vendor: &str, product: &str) -> Self {
        let mut d = Self::modem(vendor, product);
        d.interfaces.truncate(1);
        d
    }

    /// Anything else (a NIC, a disk): one vendor interface.
    pub fn other(vendor: &str, product: &str) -> Self {
        let mut d = Self::modem(vendor, product);
        d.interfaces = vec![FakeInterface {
            number: 0,
            class: "08".into(),
            net: false,
            tty: false,
        }];
        d
    }

    /// A hub with `ports` ports; `per_port`: per-port power switching, else ganged.
    pub fn hub(ports: u32, per_port: bool) -> Self {
        let mut d = Self::modem("05e3", "0610");
        d.hub_ports = Some(ports);
        d.interfaces = vec![FakeInterface {
            number: 0,
            class: "09".into(),
            net: false,
            tty: false,
        }];
        d.hub_characteristics = if per_port { 0x00a9 } else { 0x00a8 };
        d
    }
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, FakeDevice>,
    writes: Vec<(String, String)>,
    denied: BTreeSet<String>,
    /// Hub ports (`1-1-port3`) whose disable does not reach the device.
    dead_ports: BTreeSet<String>,
    /// Devices that come back from a power cycle in mass-storage mode (vendor, product).
    storage_after_cycle: BTreeMap<String, (String, String)>,
    next_devnum: u32,
    next_net: u32,
    next_tty: u32,
    operstate: BTreeMap<String, String>,
    controller_bound: bool,
}

/// The fake tree; cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeSysfs {
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FakeSysfs {
    /// An empty controller with its root hub (4 ports) under `root`.
    pub fn new(root: &Path) -> io::Result<Self> {
        let fake = Self {
            root: root.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                next_devnum: 2,
                controller_bound: true,
                ..State::default()
            })),
        };
        fake.render()?;
        Ok(fake)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Plugs `device` in at `usb_path`.
    pub fn plug(&self, usb_path: &str, mut device: FakeDevice) -> io::Result<()> {
        {
            let mut s = self.state();
            device.devnum = s.next_devnum;
            s.next_devnum += 1;
            name_interfaces(&mut s, &mut device);
            s.devices.insert(usb_path.to_owned(), device);
        }
        self.render()
    }

    /// A [`Sysfs`] on this tree writing through the fake kernel, with the fake `lsusb` and
    /// `usb_modeswitch` (if given).
    pub fn sysfs(&self, usb_modeswitch: Option<PathBuf>) -> Sysfs {
        Sysfs::with_writer(
            &self.root,
            Arc::new(self.clone()),
            Tools {
                lsusb: Some(self.root.join("lsusb")),
                usb_modeswitch,
            },
        )
    }

    /// Every write so far: (path under the root, value).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.state().writes.clone()
    }

    /// Writes to paths ending in `suffix` fail with EACCES (no udev rule).
    pub fn deny(&self, suffix: &str) {
        self.state().denied.insert(suffix.to_owned());
    }

    /// Port `<hub>-port<N>`'s disable does nothing (a hub that cannot cut power).
    pub fn dead_port(&self, port: &str) {
        self.state().dead_ports.insert(port.to_owned());
    }

    /// The device at `usb_path` comes back from its next power cycle as a mass-storage device.
    pub fn storage_after_cycle(&self, usb_path: &str, vendor: &str, product: &str) {
        self.state()
            .storage_after_cycle
            .insert(usb_path.to_owned(), (vendor.to_owned(), product.to_owned()));
    }

    pub fn set_operstate(&self, netdev: &str, state: &str) -> io::Result<()> {
        self.state()
            .operstate
            .insert(netdev.to_owned(), state.to_owned());
        self.render()
    }

    /// The names the device at `usb_path` has now: (netdev, ttys).
    pub fn names(&self, usb_path: &str) -> (Option<String>, Vec<String>) {
        let s = self.state();
        let Some(d) = s
            .devices
            .get(usb_path)
            .filter(|d| d.present && d.authorized)
        else {
            return (None, Vec::new());
        };
        let net = d.names.values().find_map(|(n, _)| n.clone());
        let ttys = d.names.values().filter_map(|(_, t)| t.clone()).collect();
        (net, ttys)
    }

    /// The tty of interface `1.N` of the device at `usb_path`.
    pub fn tty(&self, usb_path: &str, iface: u32) -> Option<String> {
        let s = self.state();
        s.devices.get(usb_path)?.names.get(&iface)?.1.clone()
    }

    /// Simulates a re-enumeration by the kernel on its own (a modem rebooting): the device
    /// goes away and comes back with new names and a new devnum.
    pub fn reenumerate(&self, usb_path: &str) -> io::Result<()> {
        {
            let mut s = self.state();
            let mut st = std::mem::take(&mut *s);
            if let Some(mut d) = st.devices.remove(usb_path) {
                d.devnum = st.next_devnum;
                st.next_devnum += 1;
                name_interfaces(&mut st, &mut d);
                st.devices.insert(usb_path.to_owned(), d);
            }
            *s = st;
        }
        self.render()
    }

    /// Where the device at `usb_path` lives (`devices/.../usb1/1-1/1-1.3`).
    pub fn device_dir(&self, usb_path: &str) -> PathBuf {
        let mut chain = vec![usb_path.to_owned()];
        let mut at = usb_path.to_owned();
        while let Some((hub, _)) = super::steps::parent_port(&at) {
            if hub.starts_with("usb") {
                break;
            }
            chain.push(hub.clone());
            at = hub;
        }
        let mut dir = self.controller_dir().join("usb1");
        for p in chain.iter().rev() {
            dir = dir.join(p);
        }
        dir
    }

    fn controller_dir(&self) -> PathBuf {
        self.root.join("devices/pci0000:00").join(CONTROLLER)
    }

    /// Rebuilds the whole tree from the model.
    fn render(&self) -> io::Result<()> {
        let s = self.state();
        for d in ["devices", "bus", "class"] {
            let p = self.root.join(d);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
        let ctrl = self.controller_dir();
        let driver = self.root.join("bus/pci/drivers/xhci_hcd");
        std::fs::create_dir_all(&driver)?;
        std::fs::create_dir_all(&ctrl)?;
        for f in ["bind", "unbind"] {
            std::fs::write(driver.join(f), "")?;
        }
        std::os::unix::fs::symlink(&driver, ctrl.join("driver"))?;
        let usb_devices = self.root.join("bus/usb/devices");
        let class_net = self.root.join("class/net");
        let class_tty = self.root.join("class/tty");
        for d in [&usb_devices, &class_net, &class_tty] {
            std::fs::create_dir_all(d)?;
        }
        if !s.controller_bound {
            return Ok(());
        }
        // The root hub.
        let rh = ctrl.join("usb1");
        attrs(
            &rh,
            &[
                ("busnum", "1"),
                ("devnum", "1"),
                ("bDeviceClass", "09"),
                ("idVendor", "1d6b"),
                ("idProduct", "0002"),
                ("authorized", "1"),
            ],
        )?;
        ports(&rh.join("1-0:1.0"), "usb1", 4)?;
        std::os::unix::fs::symlink(&rh, usb_devices.join("usb1"))?;
        for (path, d) in &s.devices {
            if !d.present {
                continue;
            }
            let dir = self.device_dir(path);
            let devnum = d.devnum.to_string();
            attrs(
                &dir,
                &[
                    ("busnum", "1"),
                    ("devnum", &devnum),
                    (
                        "bDeviceClass",
                        if d.hub_ports.is_some() { "09" } else { "00" },
                    ),
                    ("idVendor", &d.vendor),
                    ("idProduct", &d.product),
                    ("authorized", if d.authorized { "1" } else { "0" }),
                    (
                        "uevent",
                        &format!("DEVNUM={devnum:0>3}\nPRODUCT={}/{}\n", d.vendor, d.product),
                    ),
                ],
            )?;
            std::os::unix::fs::symlink(&dir, usb_devices.join(path))?;
            // `port`: the hub port the device hangs on (what udev rules reach through).
            if let Some((hub, n)) = super::steps::parent_port(path) {
                let hub_dir = if hub.starts_with("usb") {
                    rh.clone()
                } else {
                    self.device_dir(&hub)
                };
                let iface = match hub.strip_prefix("usb") {
                    Some(bus) => format!("{bus}-0:1.0"),
                    None => format!("{hub}:1.0"),
                };
                std::os::unix::fs::symlink(
                    hub_dir.join(iface).join(format!("{hub}-port{n}")),
                    dir.join("port"),
                )?;
            }
            if let Some(n) = d.hub_ports {
                ports(&dir.join(format!("{path}:1.0")), path, n)?;
            }
            if !d.authorized {
                continue;
            }
            for i in &d.interfaces {
                let name = format!("{path}:1.{}", i.number);
                let idir = dir.join(&name);
                attrs(
                    &idir,
                    &[
                        ("bInterfaceClass", &i.class),
                        ("bInterfaceNumber", &format!("{:02}", i.number)),
                    ],
                )?;
                std::os::unix::fs::symlink(&idir, usb_devices.join(&name))?;
                let (net, tty) = d.names.get(&i.number).cloned().unwrap_or_default();
                if let Some(net) = net {
                    let ndir = idir.join("net").join(&net);
                    let state = s.operstate.get(&net).map_or("up", String::as_str);
                    attrs(&ndir, &[("operstate", state)])?;
                    std::os::unix::fs::symlink(&idir, ndir.join("device"))?;
                    std::os::unix::fs::symlink(&ndir, class_net.join(&net))?;
                }
                if let Some(tty) = tty {
                    let port = idir.join(&tty);
                    let tdir = port.join("tty").join(&tty);
                    attrs(&tdir, &[("dev", "188:0")])?;
                    std::os::unix::fs::symlink(&port, tdir.join("device"))?;
                    std::os::unix::fs::symlink(&tdir, class_tty.join(&tty))?;
                }
            }
        }
        self.write_lsusb(&s)
    }

    /// A fake `lsusb -v -s BUS:DEV` answering each hub's descriptor.
    fn write_lsusb(&self, s: &State) -> io::Result<()> {
        let mut script = String::from("#!/bin/sh\n# fake lsusb: -v -s BUS:DEV\ncase \"$3\" in\n");
        script.push_str("  1:1) c=0x00a9 ;;\n");
        for d in s
            .devices
            .values()
            .filter(|d| d.present && d.hub_ports.is_some())
        {
            script.push_str(&format!(
                "  1:{}) c=0x{:04x} ;;\n",
                d.devnum, d.hub_characteristics
            ));
        }
        script.push_str("  *) exit 1 ;;\nesac\necho \"Hub Descriptor:\"\necho \"  bLength               9\"\necho \"  wHubCharacteristic $c\"\n");
        let path = self.root.join("lsusb");
        std::fs::write(&path, script)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
    }

    /// The kernel's answer to a write of `value` to `rel`.
    fn react(&self, s: &mut State, rel: &str, value: &str) {
        let parts: Vec<&str> = rel.split('/').collect();
        let on = value.trim() == "1";
        // .../<usb path>/authorized
        if parts.last() == Some(&"authorized") {
            if let Some(path) = parts.iter().rev().nth(1).filter(|p| valid_usb_path(p)) {
                let mut st = std::mem::take(s);
                if let Some(mut d) = st.devices.remove(*path) {
                    if on && !d.authorized {
                        name_interfaces(&mut st, &mut d);
                    }
                    d.authorized = on;
                    st.devices.insert((*path).to_owned(), d);
                }
                *s = st;
            }
            return;
        }
        // .../<hub>-port<N>/disable
        if parts.last() == Some(&"disable") {
            let Some(port) = parts.iter().rev().nth(1) else {
                return;
            };
            if s.dead_ports.contains(*port) {
                return;
            }
            let Some((hub, n)) = port.rsplit_once("-port") else {
                return;
            };
            let child = match hub.strip_prefix("usb") {
                Some(bus) => format!("{bus}-{n}"),
                None => format!("{hub}.{n}"),
            };
            let mut st = std::mem::take(s);
            if let Some(mut d) = st.devices.remove(&child) {
                if on {
                    d.present = false;
                } else if !d.present {
                    d.present = true;
                    d.devnum = st.next_devnum;
                    st.next_devnum += 1;
                    if let Some((v, p)) = st.storage_after_cycle.remove(&child) {
                        d = FakeDevice {
                            devnum: d.devnum,
                            ..FakeDevice::other(&v, &p)
                        };
                    }
                    name_interfaces(&mut st, &mut d);
                }
                st.devices.insert(child, d);
            }
            *s = st;
            return;
        }
        if rel.ends_with("drivers/xhci_hcd/unbind") && value == CONTROLLER {
            s.controller_bound = false;
        } else if rel.ends_with("drivers/xhci_hcd/bind")
            && value == CONTROLLER
            && !s.controller_bound
        {
            s.controller_bound = true;
            let mut st = std::mem::take(s);
            let paths: Vec<String> = st.devices.keys().cloned().collect();
            for p in paths {
                if let Some(mut d) = st.devices.remove(&p) {
                    d.devnum = st.next_devnum;
                    st.next_devnum += 1;
                    name_interfaces(&mut st, &mut d);
                    st.devices.insert(p, d);
                }
            }
            *s = st;
        }
    }

    /// Switches a stick in mass-storage mode back to a modem (what `usb_modeswitch` does).
    pub fn switch_to_modem(&self, usb_path: &str, device: FakeDevice) -> io::Result<()> {
        {
            let mut s = self.state();
            let mut st = std::mem::take(&mut *s);
            let mut d = device;
            d.devnum = st.next_devnum;
            st.next_devnum += 1;
            name_interfaces(&mut st, &mut d);
            st.devices.insert(usb_path.to_owned(), d);
            *s = st;
        }
        self.render()
    }
}

impl SysfsWriter for FakeSysfs {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| io::Error::other(format!("{} is outside the fake tree", path.display())))?
            .display()
            .to_string();
        {
            let mut s = self.state();
            if s.denied.iter().any(|d| rel.ends_with(d.as_str())) {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            if !path.exists() {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            s.writes.push((rel.clone(), value.to_owned()));
            self.react(&mut s, &rel, value);
        }
        self.render()
    }
}

/// New names for every interface of `d` that has a netdev or a tty.
fn name_interfaces(s: &mut State, d: &mut FakeDevice) {
    d.names.clear();
    for i in &d.interfaces {
        let net = i.net.then(|| {
            s.next_net += 1;
            format!("wwan{}", s.next_net - 1)
        });
        let tty = i.tty.then(|| {
            s.next_tty += 1;
            format!("ttyUSB{}", s.next_tty - 1)
        });
        d.names.insert(i.number, (net, tty));
    }
}

fn attrs(dir: &Path, values: &[(&str, &str)]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (k, v) in values {
        std::fs::write(dir.join(k), format!("{v}\n"))?;
    }
    Ok(())
}

/// A hub interface's port directories with their `disable` attributes.
fn ports(iface: &Path, hub: &str, n: u32) -> io::Result<()> {
    for p in 1..=n {
        attrs(&iface.join(format!("{hub}-port{p}")), &[("disable", "0")])?;
    }
    Ok(())
}
