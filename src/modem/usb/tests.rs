use std::path::Path;
use std::time::Duration;

use super::fake::{FakeDevice, FakeSysfs};
use super::steps::{self, UsbOutcome, UsbTiming};
use super::*;

fn quick() -> UsbTiming {
    UsbTiming {
        off: Duration::from_millis(5),
        back_within: Duration::from_millis(300),
        poll: Duration::from_millis(5),
    }
}

/// A per-port hub at 1-1 with a Quectel at 1-1.3 and a SIMCom at 1-1.4.
fn tree(dir: &Path, per_port: bool) -> FakeSysfs {
    let fake = FakeSysfs::new(dir).unwrap();
    fake.plug("1-1", FakeDevice::hub(4, per_port)).unwrap();
    fake.plug("1-1.3", FakeDevice::modem("2c7c", "0125"))
        .unwrap();
    fake.plug("1-1.4", FakeDevice::modem("1e0e", "9001"))
        .unwrap();
    fake
}

#[test]
fn usb_paths_are_checked_before_any_path_is_built() {
    for good in ["1-1", "1-1.3", "2-4.1.2", "10-3"] {
        assert!(valid_usb_path(good), "{good}");
    }
    for bad in [
        "", "1", "1-", "-1", "1-1.", "1-1..2", "../1-1", "1-1/..", "usb1", "1-1:1.0", "a-1",
    ] {
        assert!(!valid_usb_path(bad), "{bad}");
    }
    assert_eq!(steps::parent_port("1-1.3"), Some(("1-1".into(), 3)));
    assert_eq!(steps::parent_port("1-4"), Some(("usb1".into(), 4)));
    assert_eq!(steps::parent_port("2-1.2.4"), Some(("2-1.2".into(), 4)));
    assert_eq!(steps::parent_port("../x"), None);
}

#[test]
fn identity_is_learnt_from_the_netdev_or_the_tty_and_found_again_from_the_usb_path() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    let (net, ttys) = fake.names("1-1.3");
    let net = net.unwrap();
    assert_eq!(sys.usb_path_of_netdev(&net).as_deref(), Some("1-1.3"));
    let at = fake.tty("1-1.3", 2).unwrap();
    assert_eq!(
        sys.usb_interface_of_tty(Path::new(&format!("/dev/{at}"))),
        Some(("1-1.3".to_owned(), "1.2".to_owned()))
    );
    assert_eq!(sys.usb_path_of_netdev("nope"), None);
    assert_eq!(sys.usb_path_of_netdev("../../etc"), None);
    let r = sys.resolve("1-1.3").unwrap();
    assert_eq!(r.netdev(), Some(net.as_str()));
    assert_eq!(r.ttys.len(), 3);
    assert_eq!(
        r.ttys.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        ttys
    );
    assert_eq!(r.at_tty(Some("1.2"), None), Some(at.as_str()));
    // Without a learnt interface the vendor's usual AT interface (Quectel: 1.2) is taken.
    assert_eq!(r.at_tty(None, Some("2c7c")), Some(at.as_str()));
    let dev = sys.device("1-1.3").unwrap();
    assert_eq!(
        (dev.vendor.as_str(), dev.is_hub, dev.storage_only),
        ("2c7c", false, false)
    );
    assert!(sys.device("1-1").unwrap().is_hub);
    assert_eq!(sys.operstate(&net).as_deref(), Some("up"));
    fake.set_operstate(&net, "down").unwrap();
    assert_eq!(sys.operstate(&net).as_deref(), Some("down"));
}

#[test]
fn after_a_re_enumeration_the_usb_path_finds_the_new_names() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    let before = sys.resolve("1-1.3").unwrap();
    let other = sys.resolve("1-1.4").unwrap();
    fake.reenumerate("1-1.3").unwrap();
    let after = sys.resolve("1-1.3").unwrap();
    assert_ne!(before.netdev(), after.netdev());
    assert_ne!(
        before.at_tty(Some("1.2"), None),
        after.at_tty(Some("1.2"), None)
    );
    // The old name is gone (or someone else's), never this modem's.
    assert_eq!(sys.usb_path_of_netdev(before.netdev().unwrap()), None);
    assert_eq!(
        sys.usb_path_of_netdev(after.netdev().unwrap()).as_deref(),
        Some("1-1.3")
    );
    assert_eq!(
        sys.resolve("1-1.4").unwrap(),
        other,
        "the neighbour keeps its names"
    );
}

#[tokio::test]
async fn rebind_writes_authorized_0_then_1_and_waits_for_the_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    let old = fake.names("1-1.3").0.unwrap();
    let out = steps::rebind(&sys, "1-1.3", &quick()).await;
    let UsbOutcome::Done(detail) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        fake.writes(),
        vec![
            (
                "bus/usb/devices/1-1.3/authorized".to_owned(),
                "0".to_owned()
            ),
            (
                "bus/usb/devices/1-1.3/authorized".to_owned(),
                "1".to_owned()
            ),
        ]
    );
    let new = fake.names("1-1.3").0.unwrap();
    assert_ne!(old, new);
    assert!(detail.contains(&new), "{detail}");
}

#[tokio::test]
async fn a_refused_write_is_a_skipped_step_that_says_what_grants_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    fake.deny("/authorized");
    fake.deny("/disable");
    let sys = fake.sysfs(None);
    let out = steps::rebind(&sys, "1-1.3", &quick()).await;
    let UsbOutcome::Skipped(why) = out else {
        panic!("{out:?}")
    };
    assert!(
        why.contains("no right to write") && why.contains("1-1.3/authorized"),
        "{why}"
    );
    assert!(why.contains("udev rule"), "{why}");
    let out = steps::power_cycle(&sys, "1-1.3", &quick()).await;
    assert!(
        matches!(&out, UsbOutcome::Skipped(w) if w.contains("1-1-port3/disable")),
        "{out:?}"
    );
    assert!(fake.writes().is_empty());
    let out = steps::rebind(&sys, "1-2", &quick()).await;
    assert!(
        matches!(&out, UsbOutcome::Skipped(w) if w.contains("not on the bus")),
        "{out:?}"
    );
}

#[tokio::test]
async fn power_cycle_re_enumerates_the_device_on_a_per_port_hub() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    let before = sys.device("1-1.3").unwrap().devnum;
    let neighbour = fake.names("1-1.4");
    let out = steps::power_cycle(&sys, "1-1.3", &quick()).await;
    assert!(
        matches!(&out, UsbOutcome::Done(d) if d.contains("re-enumerated")),
        "{out:?}"
    );
    let p = "bus/usb/devices/1-1/1-1:1.0/1-1-port3/disable".to_owned();
    assert_eq!(
        fake.writes(),
        vec![(p.clone(), "1".into()), (p, "0".into())]
    );
    assert_ne!(sys.device("1-1.3").unwrap().devnum, before);
    assert_eq!(
        fake.names("1-1.4"),
        neighbour,
        "the neighbour was not touched"
    );
}

#[tokio::test]
async fn a_ganged_hub_is_not_cycled_while_it_carries_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), false);
    let sys = fake.sysfs(None);
    let out = steps::power_cycle(&sys, "1-1.3", &quick()).await;
    let UsbOutcome::Skipped(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("ganged") && why.contains("1-1.4"), "{why}");
    assert!(fake.writes().is_empty());
    // Without lsusb nobody can tell: skipped too, and said why.
    let mut blind = sys.clone();
    blind.tools.lsusb = None;
    let out = steps::power_cycle(&blind, "1-1.3", &quick()).await;
    assert!(
        matches!(&out, UsbOutcome::Skipped(w) if w.contains("lsusb")),
        "{out:?}"
    );

    // Alone on a ganged hub, a modem can be cycled.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path()).unwrap();
    fake.plug("1-2", FakeDevice::hub(4, false)).unwrap();
    fake.plug("1-2.1", FakeDevice::modem("2c7c", "0125"))
        .unwrap();
    let out = steps::power_cycle(&fake.sysfs(None), "1-2.1", &quick()).await;
    assert!(matches!(out, UsbOutcome::Done(_)), "{out:?}");
}

#[tokio::test]
async fn a_hub_that_does_not_cut_power_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    fake.dead_port("1-1-port3");
    let sys = fake.sysfs(None);
    let out = steps::power_cycle(&sys, "1-1.3", &quick()).await;
    let UsbOutcome::Failed(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("did not re-enumerate"), "{why}");
    // Writes were made and undone.
    assert_eq!(fake.writes().last().unwrap().1, "0");
}

#[tokio::test]
async fn a_stick_back_in_mass_storage_mode_is_switched_or_says_it_needs_usb_modeswitch() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path()).unwrap();
    fake.plug("1-3", FakeDevice::hilink("12d1", "14dc"))
        .unwrap();
    fake.storage_after_cycle("1-3", "12d1", "1f01");
    let sys = fake.sysfs(None);
    let out = steps::power_cycle(&sys, "1-3", &quick()).await;
    assert!(
        matches!(&out, UsbOutcome::Done(d) if d.contains("mass-storage")),
        "{out:?}"
    );
    assert!(sys.device("1-3").unwrap().storage_only);

    let out = steps::modeswitch(&sys, "1-3", &quick()).await;
    let UsbOutcome::Skipped(why) = out else {
        panic!("{out:?}")
    };
    assert!(
        why.contains("needs usb_modeswitch") && why.contains("12d1:1f01"),
        "{why}"
    );

    // With usb_modeswitch (a script recording its arguments), Huawei's message is sent.
    let args = dir.path().join("args");
    let tool = dir.path().join("usb_modeswitch");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\necho \"$@\" > {}\n", args.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sys = fake.sysfs(Some(tool));
    let switcher = {
        let fake = fake.clone();
        let args = args.clone();
        tokio::spawn(async move {
            while !args.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            fake.switch_to_modem("1-3", FakeDevice::hilink("12d1", "14dc"))
                .unwrap();
        })
    };
    let out = steps::modeswitch(&sys, "1-3", &quick()).await;
    switcher.await.unwrap();
    assert!(matches!(&out, UsbOutcome::Done(_)), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&args).unwrap().trim(),
        "-v 12d1 -p 1f01 -J"
    );
}

#[tokio::test]
async fn the_controller_is_reset_only_when_it_carries_nothing_but_modems() {
    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    assert_eq!(
        steps::controller_of(&sys, "1-1.3").as_deref(),
        Some(fake::CONTROLLER)
    );
    fake.plug("1-2", FakeDevice::other("0bda", "8153")).unwrap();
    let modems = vec!["1-1.3".to_owned(), "1-1.4".to_owned()];
    let out = steps::reset_controller(&sys, "1-1.3", &modems, &quick()).await;
    let UsbOutcome::Skipped(why) = out else {
        panic!("{out:?}")
    };
    assert!(why.contains("1-2 (0bda:8153)"), "{why}");
    assert!(fake.writes().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let fake = tree(dir.path(), true);
    let sys = fake.sysfs(None);
    let before = sys.device("1-1.3").unwrap().devnum;
    let out = steps::reset_controller(&sys, "1-1.3", &modems, &quick()).await;
    assert!(matches!(out, UsbOutcome::Done(_)), "{out:?}");
    let w = fake.writes();
    assert_eq!(
        w[0],
        (
            "bus/pci/drivers/xhci_hcd/unbind".into(),
            fake::CONTROLLER.into()
        )
    );
    assert_eq!(
        w[1],
        (
            "bus/pci/drivers/xhci_hcd/bind".into(),
            fake::CONTROLLER.into()
        )
    );
    assert_ne!(sys.device("1-1.3").unwrap().devnum, before);
}

#[test]
fn hub_characteristics_come_from_lsusb_output() {
    let out = "Hub Descriptor:\n  bLength               9\n  bDescriptorType      41\n  nNbrPorts             4\n  wHubCharacteristic 0x00e9\n    Per-port power switching\n";
    assert_eq!(steps::parse_hub_characteristics(out), Some(0x00e9));
    assert_eq!(
        steps::power_switching(0x00e9),
        steps::PowerSwitching::PerPort
    );
    assert_eq!(
        steps::power_switching(0x00e0),
        steps::PowerSwitching::Ganged
    );
    assert_eq!(steps::power_switching(0x000a), steps::PowerSwitching::None);
    assert_eq!(
        steps::parse_hub_characteristics("Device Descriptor:\n"),
        None
    );
    assert_eq!(
        steps::parse_hub_characteristics("  wHubCharacteristic 0xzz\n"),
        None
    );
}
