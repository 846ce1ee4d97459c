//! The USB recovery steps, each verified: re-bind a device (`authorized` 0 → 1), power-cycle
//! its hub port (`<hub>-port<N>/disable` 1 → 0, only where the hub switches power per port or
//! has no other device to drop), reset its host controller (driver unbind/bind, only when it
//! carries nothing but modems), and switch a stick out of mass-storage mode
//! (`usb_modeswitch`). A step that cannot be taken says why ([`UsbOutcome::Skipped`]), never
//! nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{valid_usb_path, Sysfs, UsbDevice};

/// How a USB step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbOutcome {
    /// It ran and the device came back (re-enumerated / interfaces back).
    Done(String),
    /// It ran and the check failed.
    Failed(String),
    /// It could not be taken.
    Skipped(String),
}

/// The waits of the USB steps.
#[derive(Debug, Clone)]
pub struct UsbTiming {
    /// Between taking a device (or port) away and giving it back.
    pub off: Duration,
    /// How long the device may take to come back.
    pub back_within: Duration,
    /// How often to look.
    pub poll: Duration,
}

impl Default for UsbTiming {
    fn default() -> Self {
        Self {
            off: Duration::from_secs(2),
            back_within: Duration::from_secs(30),
            poll: Duration::from_millis(250),
        }
    }
}

/// Said when a write is refused: what grants it.
const RULE_HINT: &str = "edgeward's udev rule (60-edgeward-usb.rules) gives the edgeward group \
    write access to the modems' authorized and their hub ports' disable attributes";

fn write_error(path: &Path, e: &io::Error) -> UsbOutcome {
    if matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) {
        UsbOutcome::Skipped(format!(
            "no right to write {} ({e}); {RULE_HINT}",
            path.display()
        ))
    } else {
        UsbOutcome::Failed(format!("cannot write {}: {e}", path.display()))
    }
}

/// The hub a device hangs on and its port: `1-1.3` → (`1-1`, 3); `1-4` → (`usb1`, 4).
pub fn parent_port(usb_path: &str) -> Option<(String, u32)> {
    if !valid_usb_path(usb_path) {
        return None;
    }
    let (bus, ports) = usb_path.split_once('-')?;
    match ports.rsplit_once('.') {
        Some((up, port)) => Some((format!("{bus}-{up}"), port.parse().ok()?)),
        None => Some((format!("usb{bus}"), ports.parse().ok()?)),
    }
}

/// `<hub>:1.0/<hub>-port<N>/disable` (a root hub `usbB`'s interface is `B-0:1.0`).
pub fn port_disable_path(sys: &Sysfs, hub: &str, port: u32) -> PathBuf {
    let iface = match hub.strip_prefix("usb") {
        Some(bus) => format!("{bus}-0:1.0"),
        None => format!("{hub}:1.0"),
    };
    sys.usb_dir(hub)
        .join(iface)
        .join(format!("{hub}-port{port}"))
        .join("disable")
}

/// How a hub switches port power (USB 2.0 §11.23.2.1, `wHubCharacteristics` D1..D0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerSwitching {
    PerPort,
    Ganged,
    /// The hub cannot switch power at all (a port disable still disconnects the device).
    None,
    /// Not known, and why.
    Unknown(String),
}

/// `wHubCharacteristic 0x00a9` out of `lsusb -v` for one hub.
pub fn parse_hub_characteristics(lsusb: &str) -> Option<u16> {
    lsusb.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == "wHubCharacteristic").then_some(())?;
        let hex = words.next()?.strip_prefix("0x")?;
        u16::from_str_radix(hex, 16).ok()
    })
}

pub fn power_switching(characteristics: u16) -> PowerSwitching {
    match characteristics & 0b11 {
        0b00 => PowerSwitching::Ganged,
        0b01 => PowerSwitching::PerPort,
        _ => PowerSwitching::None,
    }
}

/// Reads `hub`'s descriptor through `lsusb -v -s BUS:DEV` (sysfs does not show it).
async fn hub_power_switching(sys: &Sysfs, hub: &UsbDevice) -> PowerSwitching {
    let Some(lsusb) = &sys.tools.lsusb else {
        return PowerSwitching::Unknown("lsusb (usbutils) is not installed".into());
    };
    let args = [
        "-v".to_owned(),
        "-s".to_owned(),
        format!("{}:{}", hub.busnum, hub.devnum),
    ];
    let out = match run_tool(lsusb, &args, Duration::from_secs(10)).await {
        Ok((_, stdout, _)) => stdout,
        Err(e) => return PowerSwitching::Unknown(e),
    };
    match parse_hub_characteristics(&out) {
        Some(c) => power_switching(c),
        None => PowerSwitching::Unknown(format!(
            "lsusb showed no hub descriptor for {} (bus {} device {})",
            hub.usb_path, hub.busnum, hub.devnum
        )),
    }
}

/// The other devices on `hub`'s ports (its direct children besides `usb_path`).
fn neighbours(sys: &Sysfs, hub: &str, usb_path: &str) -> Vec<String> {
    let prefix = match hub.strip_prefix("usb") {
        Some(bus) => format!("{bus}-"),
        None => format!("{hub}."),
    };
    let mut out: Vec<String> = super::names(&sys.root().join("bus/usb/devices"))
        .into_iter()
        .filter(|n| {
            valid_usb_path(n)
                && n != usb_path
                && n.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(['.', '-']))
        })
        .collect();
    out.sort();
    out
}

/// Runs `tool` with `args`, killing it after `limit`: (success, stdout, stderr).
async fn run_tool(
    tool: &Path,
    args: &[String],
    limit: Duration,
) -> Result<(bool, String, String), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let name = tool.display().to_string();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if tokio::time::Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} did not finish within {}s", limit.as_secs()));
            }
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .map_err(|e| format!("{name}: {e}"))?
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Waits until `check` holds, polling; whether it did within `t.back_within`.
async fn wait_for(t: &UsbTiming, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + t.back_within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        sleep(t.poll).await;
    }
}

fn describe(sys: &Sysfs, usb_path: &str) -> String {
    match sys.resolve(usb_path) {
        Some(r) if !r.netdevs.is_empty() || !r.ttys.is_empty() => {
            let names: Vec<&str> = r
                .netdevs
                .iter()
                .chain(&r.ttys)
                .map(|(_, n)| n.as_str())
                .collect();
            names.join(", ")
        }
        _ => "no interfaces".into(),
    }
}

fn has_interfaces(sys: &Sysfs, usb_path: &str) -> bool {
    sys.resolve(usb_path)
        .is_some_and(|r| !r.netdevs.is_empty() || !r.ttys.is_empty())
}

/// De-authorizes and re-authorizes the device (the kernel unbinds and re-probes all its
/// interfaces); done once its interfaces are back.
pub async fn rebind(sys: &Sysfs, usb_path: &str, t: &UsbTiming) -> UsbOutcome {
    if sys.device(usb_path).is_none() {
        return UsbOutcome::Skipped(format!(
            "USB device {usb_path} is not on the bus: nothing to re-bind"
        ));
    }
    let path = sys.usb_dir(usb_path).join("authorized");
    if let Err(e) = sys.write(&path, "0") {
        return write_error(&path, &e);
    }
    sleep(t.off).await;
    if let Err(e) = sys.write(&path, "1") {
        log::error!(
            "USB device {usb_path} is left de-authorized: cannot write 1 to {}: {e}",
            path.display()
        );
        return UsbOutcome::Failed(format!(
            "de-authorized {usb_path} but cannot authorize it again ({e}); it stays off the bus"
        ));
    }
    if wait_for(t, || has_interfaces(sys, usb_path)).await {
        UsbOutcome::Done(format!(
            "re-bound {usb_path}; back with {}",
            describe(sys, usb_path)
        ))
    } else {
        UsbOutcome::Failed(format!(
            "re-bound {usb_path} but its interfaces did not come back within {}s",
            t.back_within.as_secs()
        ))
    }
}

/// Power-cycles the hub port of `usb_path`; done once the device re-enumerated (a new
/// `devnum`) with its interfaces.
pub async fn power_cycle(sys: &Sysfs, usb_path: &str, t: &UsbTiming) -> UsbOutcome {
    let Some((hub, port)) = parent_port(usb_path) else {
        return UsbOutcome::Skipped(format!("{usb_path:?} is not a USB path"));
    };
    let path = port_disable_path(sys, &hub, port);
    if !path.exists() {
        return UsbOutcome::Skipped(format!(
            "{} does not exist (the kernel needs port disable support, Linux 4.20+)",
            path.display()
        ));
    }
    let Some(hub_dev) = sys.device(&hub) else {
        return UsbOutcome::Skipped(format!("hub {hub} of {usb_path} is not in sysfs"));
    };
    let others = neighbours(sys, &hub, usb_path);
    if !others.is_empty() {
        match hub_power_switching(sys, &hub_dev).await {
            PowerSwitching::PerPort | PowerSwitching::None => {}
            PowerSwitching::Ganged => {
                return UsbOutcome::Skipped(format!(
                    "hub {hub} switches power for all its ports at once (ganged): cycling port \
                     {port} would drop {}",
                    others.join(", ")
                ))
            }
            PowerSwitching::Unknown(why) => {
                return UsbOutcome::Skipped(format!(
                    "cannot tell whether hub {hub} switches power per port ({why}); cycling \
                     port {port} might drop {}",
                    others.join(", ")
                ))
            }
        }
    }
    let before = sys.device(usb_path).map(|d| d.devnum);
    if let Err(e) = sys.write(&path, "1") {
        return write_error(&path, &e);
    }
    sleep(t.off).await;
    if let Err(e) = sys.write(&path, "0") {
        log::error!(
            "hub {hub} port {port} is left disabled: cannot write 0 to {}: {e}",
            path.display()
        );
        return UsbOutcome::Failed(format!(
            "disabled hub {hub} port {port} but cannot enable it again ({e})"
        ));
    }
    let came_back = wait_for(t, || {
        sys.device(usb_path).is_some_and(|d| {
            Some(d.devnum) != before && (d.storage_only || has_interfaces(sys, usb_path))
        })
    })
    .await;
    match sys.device(usb_path) {
        Some(d) if came_back => UsbOutcome::Done(format!(
            "power-cycled hub {hub} port {port}; {usb_path} re-enumerated as device {} ({})",
            d.devnum,
            if d.storage_only {
                "in mass-storage mode".to_owned()
            } else {
                describe(sys, usb_path)
            }
        )),
        Some(d) if Some(d.devnum) == before => UsbOutcome::Failed(format!(
            "hub {hub} did not cut port {port}: {usb_path} did not re-enumerate (still device {})",
            d.devnum
        )),
        Some(_) => UsbOutcome::Failed(format!(
            "{usb_path} re-enumerated after the power cycle but its interfaces did not come back within {}s",
            t.back_within.as_secs()
        )),
        None => UsbOutcome::Failed(format!(
            "{usb_path} did not come back within {}s of the power cycle",
            t.back_within.as_secs()
        )),
    }
}

/// The PCI (or platform) device of the host controller bus `busnum` hangs on.
fn controller_dir(sys: &Sysfs, busnum: u32) -> Option<PathBuf> {
    let root_hub = std::fs::canonicalize(sys.usb_dir(&format!("usb{busnum}"))).ok()?;
    root_hub.parent().map(Path::to_path_buf)
}

/// The controller `usb_path` hangs on, by its device name (`0000:00:14.0`).
pub fn controller_of(sys: &Sysfs, usb_path: &str) -> Option<String> {
    let (bus, _) = usb_path.split_once('-')?;
    let dir = controller_dir(sys, bus.parse().ok()?)?;
    Some(dir.file_name()?.to_str()?.to_owned())
}

/// Every USB device (hubs left out) below the controller `dir`, by USB path.
fn devices_below(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in super::names(&d) {
            let p = d.join(&name);
            if p.is_symlink() {
                continue;
            }
            if valid_usb_path(&name) || super::root_hub_bus(&name).is_some() {
                let class = std::fs::read_to_string(p.join("bDeviceClass")).unwrap_or_default();
                if class.trim() != "09" {
                    out.push((name.clone(), p.clone()));
                }
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Resets the host controller `usb_path` hangs on (driver unbind, then bind), only when
/// every device it carries is one of `modems` (never the uplink NIC or a disk); done once the
/// modems are back.
pub async fn reset_controller(
    sys: &Sysfs,
    usb_path: &str,
    modems: &[String],
    t: &UsbTiming,
) -> UsbOutcome {
    let bus = usb_path
        .split_once('-')
        .and_then(|(b, _)| b.parse::<u32>().ok());
    let Some(dir) = bus.and_then(|b| controller_dir(sys, b)) else {
        return UsbOutcome::Skipped(format!("no host controller found for {usb_path}"));
    };
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let foreign: Vec<String> = devices_below(&dir)
        .into_iter()
        .filter(|(p, _)| !modems.contains(p))
        .map(|(p, d)| {
            let id = |a: &str| std::fs::read_to_string(d.join(a)).unwrap_or_default();
            format!("{p} ({}:{})", id("idVendor").trim(), id("idProduct").trim())
        })
        .collect();
    if !foreign.is_empty() {
        return UsbOutcome::Skipped(format!(
            "controller {name} also carries {}, not modems: it is never reset",
            foreign.join(", ")
        ));
    }
    let Ok(driver) = std::fs::canonicalize(dir.join("driver")) else {
        return UsbOutcome::Skipped(format!("controller {name} has no driver to re-bind"));
    };
    let unbind = driver.join("unbind");
    if let Err(e) = sys.write(&unbind, &name) {
        return write_error(&unbind, &e);
    }
    sleep(t.off).await;
    let bind = driver.join("bind");
    if let Err(e) = sys.write(&bind, &name) {
        log::error!(
            "controller {name} is left unbound: cannot write {}: {e}",
            bind.display()
        );
        return UsbOutcome::Failed(format!(
            "unbound controller {name} but cannot bind it again ({e})"
        ));
    }
    if wait_for(t, || modems.iter().all(|m| sys.device(m).is_some())).await {
        UsbOutcome::Done(format!("reset controller {name}; its modems are back"))
    } else {
        UsbOutcome::Failed(format!(
            "reset controller {name} but not all its modems came back within {}s",
            t.back_within.as_secs()
        ))
    }
}

/// The `usb_modeswitch` arguments for a stick in mass-storage mode: Huawei's "new mode"
/// message for Huawei sticks, else the device's config from the usb-modeswitch-data package.
fn modeswitch_args(dev: &UsbDevice, data_dirs: &[&Path]) -> Option<Vec<String>> {
    let mut args = vec![
        "-v".to_owned(),
        dev.vendor.clone(),
        "-p".to_owned(),
        dev.product.clone(),
    ];
    if dev.vendor == "12d1" {
        args.push("-J".into());
        return Some(args);
    }
    let id = format!("{}:{}", dev.vendor, dev.product);
    let config = data_dirs
        .iter()
        .map(|d| d.join(&id))
        .find(|p| p.is_file())?;
    args.push("-c".into());
    args.push(config.display().to_string());
    Some(args)
}

/// Switches a stick that came back in mass-storage (CD-ROM) mode back to its modem mode with
/// `usb_modeswitch`; done once it re-enumerated with a modem's interfaces.
pub async fn modeswitch(sys: &Sysfs, usb_path: &str, t: &UsbTiming) -> UsbOutcome {
    let Some(dev) = sys.device(usb_path).filter(|d| d.storage_only) else {
        return UsbOutcome::Skipped(format!("{usb_path} is not in mass-storage mode"));
    };
    let id = format!("{}:{}", dev.vendor, dev.product);
    let Some(tool) = &sys.tools.usb_modeswitch else {
        return UsbOutcome::Skipped(format!(
            "{usb_path} ({id}) is in mass-storage (CD-ROM) mode and needs usb_modeswitch to be \
             switched back: install usb-modeswitch"
        ));
    };
    let dirs = [
        Path::new("/etc/usb_modeswitch.d"),
        Path::new("/usr/share/usb_modeswitch"),
    ];
    let Some(args) = modeswitch_args(&dev, &dirs) else {
        return UsbOutcome::Skipped(format!(
            "{usb_path} ({id}) is in mass-storage mode and usb_modeswitch has no configuration \
             for it (usb-modeswitch-data)"
        ));
    };
    match run_tool(tool, &args, Duration::from_secs(30)).await {
        Ok((true, _, _)) => {}
        Ok((false, _, stderr)) => {
            return UsbOutcome::Failed(format!(
                "usb_modeswitch {} failed: {}",
                args.join(" "),
                stderr.trim()
            ))
        }
        Err(e) => return UsbOutcome::Failed(e),
    }
    if wait_for(t, || has_interfaces(sys, usb_path)).await {
        UsbOutcome::Done(format!(
            "switched {usb_path} out of mass-storage mode (usb_modeswitch {}); back with {}",
            args.join(" "),
            describe(sys, usb_path)
        ))
    } else {
        UsbOutcome::Failed(format!(
            "ran usb_modeswitch {} but {usb_path} did not come back as a modem within {}s",
            args.join(" "),
            t.back_within.as_secs()
        ))
    }
}
