use super::*;
use crate::modem::heal::status::RecoveryStatus;
use crate::modem::parse::RegStat;

fn healthy() -> ModemStatus {
    ModemStatus {
        number: 1,
        port: "/dev/ttyUSB2".into(),
        profile: "generic".into(),
        netdev: "wwan0".into(),
        port_state: PortState::Open,
        port_error: None,
        manufacturer: None,
        model: None,
        revision: None,
        imei: None,
        iccid: None,
        registration: Some(RegStat::Home),
        operator: None,
        signal: None,
        ip: Some("100.64.0.1".parse().unwrap()),
        toggle: None,
        last_toggle: None,
        toggle_count: 0,
        toggle_failures: 0,
        port_opens: 1,
        garbage_lines: 0,
        usb_path: None,
        recovery: None,
    }
}

fn failed(v: Verdict) -> String {
    match v {
        Verdict::Failed(why) => why,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_probe_wants_registration_an_address_and_the_interface_up() {
    let s = healthy();
    assert_eq!(judge(&s, false, Some("up")), Verdict::Healthy);
    assert_eq!(judge(&s, false, Some("unknown")), Verdict::Healthy);
    assert!(failed(judge(&s, false, Some("down"))).contains("wwan0 is down"));
    assert!(failed(judge(&s, false, None)).contains("does not exist"));
    let mut s2 = s.clone();
    s2.registration = Some(RegStat::Searching);
    assert!(failed(judge(&s2, false, Some("up"))).contains("not registered"));
    s2.registration = None;
    assert!(failed(judge(&s2, false, Some("up"))).contains("registration unknown"));
    let mut s3 = s.clone();
    s3.ip = None;
    assert!(failed(judge(&s3, false, Some("up"))).contains("no address"));
    let mut s4 = s.clone();
    s4.port_state = PortState::Absent;
    s4.port_error = Some("No such file".into());
    assert!(failed(judge(&s4, false, Some("up"))).contains("No such file"));
}

#[test]
fn a_toggling_or_recovering_modem_is_not_probed() {
    let mut s = healthy();
    s.ip = None;
    assert_eq!(judge(&s, true, Some("down")), Verdict::Skipped);
    let mut r = RecoveryStatus::new();
    r.state = crate::modem::heal::HealthState::Recovering;
    s.recovery = Some(r);
    assert_eq!(judge(&s, false, Some("down")), Verdict::Skipped);
}

#[test]
fn a_recovering_modem_is_not_ready_for_a_lease() {
    let mut s = healthy();
    assert!(s.is_ready());
    let mut r = RecoveryStatus::new();
    r.state = crate::modem::heal::HealthState::Recovering;
    s.recovery = Some(r.clone());
    assert!(!s.is_ready());
    r.state = crate::modem::heal::HealthState::CoolingDown;
    s.recovery = Some(r);
    assert!(s.is_ready(), "only a running step takes it out");
}
