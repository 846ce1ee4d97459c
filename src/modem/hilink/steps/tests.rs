//! The HiLink rungs driven through the shared ladder with a fake clock and a scripted stick.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::modem::at::FinalResult;
use crate::modem::ladder::{Action, Ladder, Limits, Outcome};
use crate::modem::parse::RegStat;

/// A pure stand-in for a stick: which ops change the address, which fail.
struct Stick {
    ip: IpAddr,
    next: u8,
    /// Ops that answer OK but change nothing (a stuck mode flip).
    inert: Vec<Op>,
    /// Ops the stick refuses, with the error text.
    refuses: Vec<(Op, &'static str)>,
    log: Vec<Op>,
}

impl Stick {
    fn new() -> Self {
        Self {
            ip: "10.61.0.1".parse().unwrap(),
            next: 2,
            inert: Vec::new(),
            refuses: Vec::new(),
            log: Vec::new(),
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_total: Duration::from_secs(80),
        ..Limits::default()
    }
}

/// Runs a whole toggle; returns the outcome and the simulated time it took.
fn run(stick: &mut Stick, limits: Limits) -> (Outcome, Duration) {
    let start = Instant::now();
    let mut now = start;
    let mut ladder =
        Ladder::new(ladder(1.0), Some(stick.ip), limits, now).with_restore(restore(1.0));
    for _ in 0..10_000 {
        match ladder.poll_action(now) {
            Some(Action::Done(o)) => return (o, now - start),
            Some(Action::Send { cmd, .. }) => {
                let op = Op::parse(&cmd).expect("a HiLink op");
                stick.log.push(op);
                now += Duration::from_millis(200);
                if let Some((_, why)) = stick.refuses.iter().find(|(o, _)| *o == op) {
                    ladder.on_failure(why, now);
                    continue;
                }
                if matches!(op, Op::DataOn | Op::FlipNetMode | Op::Reboot)
                    && !stick.inert.contains(&op)
                {
                    stick.ip = format!("10.61.0.{}", stick.next).parse().unwrap();
                    stick.next += 1;
                }
                ladder.on_response(FinalResult::Ok, now);
            }
            Some(Action::Wait { until }) => now = until.max(now + Duration::from_millis(1)),
            Some(Action::QueryRegistration) => {
                now += Duration::from_millis(100);
                ladder.on_registration(RegStat::Home, now);
            }
            Some(Action::QueryAddress) => {
                now += Duration::from_millis(100);
                ladder.on_address(Some(stick.ip), now);
            }
            None => {
                now += Duration::from_millis(100);
                ladder.on_timeout(now);
            }
        }
    }
    panic!("the ladder never finished")
}

#[test]
fn a_working_flip_is_the_first_and_only_step() {
    let mut stick = Stick::new();
    let (o, took) = run(&mut stick, limits());
    let Outcome::Changed { step, .. } = o else {
        panic!("{o:?}")
    };
    assert_eq!(step, NET_MODE);
    assert_eq!(stick.log, [Op::FlipNetMode]);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_stuck_flip_is_tried_twice_then_the_data_switch_changes_the_address() {
    let mut stick = Stick::new();
    stick.inert = vec![Op::FlipNetMode];
    let (o, took) = run(&mut stick, limits());
    let Outcome::Changed { step, attempts, .. } = o else {
        panic!("{o:?}")
    };
    assert_eq!(step, MOBILE_DATA);
    assert_eq!(attempts, 3);
    assert_eq!(
        stick.log,
        [Op::FlipNetMode, Op::FlipNetMode, Op::DataOff, Op::DataOn]
    );
    assert!(took < Duration::from_secs(80), "{took:?}");
}

#[test]
fn with_flip_and_data_stuck_the_reboot_changes_it_within_the_budget() {
    let mut stick = Stick::new();
    stick.inert = vec![Op::FlipNetMode, Op::DataOn];
    let (o, took) = run(&mut stick, limits());
    let Outcome::Changed { step, .. } = o else {
        panic!("{o:?}")
    };
    assert_eq!(step, REBOOT);
    assert!(took < Duration::from_secs(80), "{took:?}");
}

#[test]
fn every_step_s_failure_is_in_the_reason_and_the_toggle_ends_before_clients_give_up() {
    let mut stick = Stick::new();
    stick.refuses = vec![
        (
            Op::FlipNetMode,
            "/api/net/net-mode answered error 100003 (login required)",
        ),
        (Op::DataOff, "no answer within 10s"),
    ];
    stick.inert = vec![Op::Reboot];
    let (o, took) = run(&mut stick, limits());
    let Outcome::Failed { reason, .. } = o else {
        panic!("{o:?}")
    };
    assert!(
        reason.contains("network mode flip failed: /api/net/net-mode answered error 100003"),
        "{reason}"
    );
    assert!(
        reason.contains("mobile data off failed: no answer"),
        "{reason}"
    );
    assert!(
        reason.contains("address unchanged after reboot"),
        "{reason}"
    );
    assert!(took <= Duration::from_secs(80), "{took:?}");
}

#[test]
fn the_default_toggle_timeout_fits_a_90s_client() {
    let d = crate::config::DongleConfig::default();
    assert!(d.toggle_timeout.get() < Duration::from_secs(90));
    // The first rung's worst case fits in it whole, so a flip is always given its chance;
    // how far the ladder climbs after that is the budget's call (see the tests above).
    let steps = ladder(1.0);
    assert!(rung_budget(&steps[0]) < d.toggle_timeout.get());
}

#[test]
fn ops_and_recovery_rungs() {
    for (op, name) in OPS {
        assert_eq!(Op::parse(name), Some(op));
        assert_eq!(op.name(), name);
    }
    assert_eq!(Op::parse("AT+CFUN=0"), None);
    let steps = ladder(1.0);
    let reconnect = recovery_rung(&steps, RecoverStep::Reconnect).unwrap();
    assert_eq!(reconnect.commands[0].cmd, "mobile data off");
    let reboot = recovery_rung(&steps, RecoverStep::Reboot).unwrap();
    assert!(reboot.commands[0].reboots);
    let fast = ladder(0.01);
    assert!(
        fast[0].settle > Duration::from_millis(29) && fast[0].settle <= Duration::from_millis(30)
    );
}
