use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::super::at::ErrorCode;
use super::super::profile::Profile;
use super::*;

const OLD: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const NEW: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99));

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn cmd(text: &str, timeout: u64) -> Command {
    Command {
        cmd: text.to_string(),
        timeout: secs(timeout),
        ignore_error: false,
        pause: Duration::ZERO,
        reboots: false,
    }
}

fn soft() -> Step {
    Step {
        name: "soft".into(),
        kind: StepKind::Soft,
        commands: vec![
            Command {
                ignore_error: true,
                ..cmd("AT+CGACT=0,1", 60)
            },
            cmd("AT+CGACT=1,1", 150),
        ],
        settle: secs(2),
        wait_registration: None,
        redial: vec![],
        wait_address: secs(30),
        repeat: 1,
    }
}

fn airplane() -> Step {
    Step {
        name: "airplane".into(),
        kind: StepKind::Airplane,
        commands: vec![
            Command {
                pause: secs(3),
                ..cmd("AT+CFUN=4", 30)
            },
            cmd("AT+CFUN=1", 30),
        ],
        settle: secs(3),
        wait_registration: Some(secs(90)),
        redial: vec![],
        wait_address: secs(60),
        repeat: 0,
    }
}

fn reset() -> Step {
    Step {
        name: "reset".into(),
        kind: StepKind::Reset,
        commands: vec![Command {
            reboots: true,
            ..cmd("AT+CFUN=1,1", 15)
        }],
        settle: secs(20),
        wait_registration: Some(secs(120)),
        redial: vec![],
        wait_address: secs(90),
        repeat: 0,
    }
}

fn ladder3() -> Vec<Step> {
    vec![soft(), airplane(), reset()]
}

/// How the fake modem answers one action.
enum Resp {
    Final(FinalResult),
    /// No answer: the shell's timer fires after the action's timeout.
    Silent,
    Reg(RegStat),
    Addr(Option<IpAddr>),
}

fn ok() -> Resp {
    Resp::Final(FinalResult::Ok)
}

struct Run {
    trace: Vec<String>,
    outcome: Outcome,
    /// Seconds since the start when the ladder finished.
    at: Duration,
}

/// Plays the shell: performs each action against `modem`, moving the fake clock (1s per
/// command answer, 100ms per query, the full timeout for silence) and recording a trace.
fn drive(ladder: Ladder, t0: Instant, modem: impl FnMut(&Action) -> Resp) -> Run {
    drive_from(ladder, t0, t0, modem)
}

/// [`drive`] from `now` on (a ladder already part-way through), times still counted from `t0`.
fn drive_from(
    mut ladder: Ladder,
    t0: Instant,
    mut now: Instant,
    mut modem: impl FnMut(&Action) -> Resp,
) -> Run {
    let mut trace = Vec::new();
    for _ in 0..10_000 {
        let action = ladder
            .poll_action(now)
            .expect("the shell answers everything, so the ladder is never pending here");
        match &action {
            Action::Done(outcome) => {
                return Run {
                    trace,
                    outcome: outcome.clone(),
                    at: now - t0,
                }
            }
            Action::Wait { until } => {
                assert!(*until > now, "a wait must be in the future");
                trace.push(format!("wait {}", format_duration(*until - t0)));
                now = *until;
            }
            Action::Send { cmd, timeout } => {
                trace.push(cmd.clone());
                match modem(&action) {
                    Resp::Final(result) => {
                        now += secs(1);
                        ladder.on_response(result, now);
                    }
                    Resp::Silent => {
                        now += *timeout;
                        ladder.on_timeout(now);
                    }
                    _ => panic!("a command gets a final result or silence"),
                }
            }
            Action::QueryRegistration | Action::QueryAddress => {
                let reg = matches!(action, Action::QueryRegistration);
                trace.push(if reg { "?reg" } else { "?addr" }.to_string());
                now += Duration::from_millis(100);
                match modem(&action) {
                    Resp::Reg(stat) if reg => ladder.on_registration(stat, now),
                    Resp::Addr(ip) if !reg => ladder.on_address(ip, now),
                    Resp::Silent => {
                        now += secs(10);
                        ladder.on_timeout(now);
                    }
                    _ => panic!("wrong answer kind for {action:?}"),
                }
            }
        }
    }
    panic!("the ladder did not finish");
}

fn changed(run: &Run) -> (IpAddr, &str, u32) {
    match &run.outcome {
        Outcome::Changed {
            ip, step, attempts, ..
        } => (*ip, step.as_str(), *attempts),
        other => panic!("expected a change, got {other:?}"),
    }
}

fn failed(run: &Run) -> &str {
    match &run.outcome {
        Outcome::Failed { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn new_ladder(steps: Vec<Step>, old: Option<IpAddr>) -> (Ladder, Instant) {
    let t0 = Instant::now();
    (Ladder::new(steps, old, Limits::default(), t0), t0)
}

#[test]
fn soft_rung_changes_the_address() {
    let (ladder, t0) = new_ladder(ladder3(), Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(Some(NEW)),
        _ => ok(),
    });
    assert_eq!(changed(&run), (NEW, "soft", 1));
    assert_eq!(
        run.trace,
        ["AT+CGACT=0,1", "AT+CGACT=1,1", "wait 4s", "?addr"]
    );
    assert_eq!(run.at, Duration::from_millis(4100));
    assert!(
        matches!(run.outcome, Outcome::Changed { kind: StepKind::Soft, elapsed, .. } if elapsed == run.at)
    );
}

#[test]
fn address_comes_late_and_is_polled() {
    let (ladder, t0) = new_ladder(ladder3(), Some(OLD));
    let mut polls = 0;
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => {
            polls += 1;
            // No context yet, then an unusable 0.0.0.0, then the new address.
            Resp::Addr(match polls {
                1 => None,
                2 => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                _ => Some(NEW),
            })
        }
        _ => ok(),
    });
    assert_eq!(changed(&run).0, NEW);
    assert_eq!(
        run.trace,
        [
            "AT+CGACT=0,1",
            "AT+CGACT=1,1",
            "wait 4s",
            "?addr",
            "wait 6100ms",
            "?addr",
            "wait 8200ms",
            "?addr"
        ]
    );
}

#[test]
fn unchanged_repeats_then_climbs_to_airplane() {
    let (ladder, t0) = new_ladder(ladder3(), Some(OLD));
    let mut cfun_done = false;
    let mut reg_queries = 0;
    let run = drive(ladder, t0, |a| match a {
        Action::Send { cmd, .. } => {
            if cmd == "AT+CFUN=1" {
                cfun_done = true;
            }
            ok()
        }
        Action::QueryRegistration => {
            reg_queries += 1;
            Resp::Reg(if reg_queries < 3 {
                RegStat::Searching
            } else {
                RegStat::Home
            })
        }
        Action::QueryAddress => Resp::Addr(Some(if cfun_done { NEW } else { OLD })),
        Action::Wait { .. } | Action::Done(_) => unreachable!(),
    });
    assert_eq!(changed(&run), (NEW, "airplane", 3));
    let sent: Vec<&str> = run
        .trace
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("AT"))
        .collect();
    // Soft twice (repeat = 1), then airplane.
    assert_eq!(
        sent,
        [
            "AT+CGACT=0,1",
            "AT+CGACT=1,1",
            "AT+CGACT=0,1",
            "AT+CGACT=1,1",
            "AT+CFUN=4",
            "AT+CFUN=1"
        ]
    );
    assert_eq!(run.trace.iter().filter(|t| *t == "?reg").count(), 3);
}

#[test]
fn refused_command_climbs_without_repeat_and_errors_can_be_ignored() {
    let (ladder, t0) = new_ladder(ladder3(), Some(OLD));
    let mut sent = Vec::new();
    let run = drive(ladder, t0, |a| match a {
        Action::Send { cmd, .. } => {
            sent.push(cmd.clone());
            match cmd.as_str() {
                // Deactivating is allowed to fail (ignore_error); activating is not.
                "AT+CGACT=0,1" => Resp::Final(FinalResult::Error),
                "AT+CGACT=1,1" => Resp::Final(FinalResult::CmeError(ErrorCode::Numeric(30))),
                _ => ok(),
            }
        }
        Action::QueryRegistration => Resp::Reg(RegStat::Roaming),
        Action::QueryAddress => Resp::Addr(Some(NEW)),
        _ => unreachable!(),
    });
    assert_eq!(changed(&run), (NEW, "airplane", 2));
    assert_eq!(
        sent,
        ["AT+CGACT=0,1", "AT+CGACT=1,1", "AT+CFUN=4", "AT+CFUN=1"]
    );
}

#[test]
fn silence_fails_the_rung_with_a_human_reason() {
    let (ladder, t0) = new_ladder(vec![airplane()], Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::Send { cmd, .. } if cmd == "AT+CFUN=4" => Resp::Silent,
        _ => ok(),
    });
    assert_eq!(failed(&run), "modem did not answer AT+CFUN=4 within 30s");
    assert_eq!(run.at, secs(30));
}

#[test]
fn polling_past_a_command_deadline_counts_as_a_timeout() {
    let (mut ladder, t0) = new_ladder(vec![airplane()], Some(OLD));
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    // No answer yet: nothing to do.
    assert_eq!(ladder.poll_action(t0 + secs(29)), None);
    assert_eq!(
        ladder.poll_action(t0 + secs(30)),
        Some(Action::Done(Outcome::Failed {
            reason: "modem did not answer AT+CFUN=4 within 30s".into(),
            attempts: 1,
            elapsed: secs(30),
        }))
    );
}

#[test]
fn reset_rung_survives_the_port_vanishing() {
    let (mut ladder, t0) = new_ladder(vec![reset()], Some(OLD));
    assert_eq!(
        ladder.poll_action(t0),
        Some(Action::Send {
            cmd: "AT+CFUN=1,1".into(),
            timeout: secs(15)
        })
    );
    // The modem reboots before answering: the port goes away.
    ladder.on_port_gone(t0 + secs(1));
    let progress = ladder.current_step().unwrap();
    assert_eq!(
        (progress.name.as_str(), progress.kind),
        ("reset", StepKind::Reset)
    );
    assert_eq!(progress.activity, "waiting for the port to come back");
    assert_eq!(
        ladder.poll_action(t0 + secs(2)),
        Some(Action::Wait {
            until: t0 + secs(61)
        })
    );
    ladder.on_port_back(t0 + secs(25));
    // Settle (20s) restarts from the port's return, then registration is awaited.
    assert_eq!(
        ladder.poll_action(t0 + secs(25)),
        Some(Action::Wait {
            until: t0 + secs(45)
        })
    );
    assert_eq!(
        ladder.poll_action(t0 + secs(45)),
        Some(Action::QueryRegistration)
    );
    // A URC reports registration while the query is out; the late query answer is ignored.
    ladder.on_registration(RegStat::Home, t0 + secs(46));
    ladder.on_registration(RegStat::Searching, t0 + secs(46));
    assert_eq!(
        ladder.poll_action(t0 + secs(46)),
        Some(Action::QueryAddress)
    );
    ladder.on_address(Some(NEW), t0 + secs(47));
    assert!(ladder.is_done());
    assert_eq!(
        ladder.poll_action(t0 + secs(48)),
        Some(Action::Done(Outcome::Changed {
            ip: NEW,
            step: "reset".into(),
            kind: StepKind::Reset,
            attempts: 1,
            elapsed: secs(47),
        }))
    );
    assert_eq!(ladder.current_step(), None);
}

#[test]
fn reboot_command_without_answer_is_not_a_failure() {
    let (ladder, t0) = new_ladder(vec![reset()], Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::Send { .. } => Resp::Silent,
        Action::QueryRegistration => Resp::Reg(RegStat::Home),
        Action::QueryAddress => Resp::Addr(Some(NEW)),
        _ => unreachable!(),
    });
    assert_eq!(changed(&run), (NEW, "reset", 1));
    assert_eq!(run.trace, ["AT+CFUN=1,1", "wait 35s", "?reg", "?addr"]);
}

#[test]
fn port_that_never_returns_fails_the_toggle() {
    let (mut ladder, t0) = new_ladder(ladder3(), Some(OLD));
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_port_gone(t0 + secs(1));
    // Gone twice is still gone from the first time.
    ladder.on_port_gone(t0 + secs(30));
    assert_eq!(
        ladder.poll_action(t0 + secs(61)),
        Some(Action::Done(Outcome::Failed {
            reason: "port vanished and did not come back within 1m".into(),
            attempts: 1,
            elapsed: secs(61),
        }))
    );
}

#[test]
fn every_rung_unchanged_fails_with_every_reason() {
    let (ladder, t0) = new_ladder(ladder3(), Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::QueryRegistration => Resp::Reg(RegStat::Home),
        Action::QueryAddress => Resp::Addr(Some(OLD)),
        _ => ok(),
    });
    assert_eq!(failed(&run), "address unchanged after soft (2×); address unchanged after airplane; address unchanged after reset");
    assert!(matches!(run.outcome, Outcome::Failed { attempts: 4, .. }));
}

#[test]
fn attempts_are_bounded() {
    let t0 = Instant::now();
    let limits = Limits {
        max_attempts: 2,
        ..Limits::default()
    };
    let ladder = Ladder::new(ladder3(), Some(OLD), limits, t0);
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(Some(OLD)),
        _ => ok(),
    });
    assert_eq!(
        failed(&run),
        "gave up after 2 attempts: address unchanged after soft (2×)"
    );
}

#[test]
fn total_time_is_bounded() {
    let t0 = Instant::now();
    let limits = Limits {
        max_total: secs(100),
        ..Limits::default()
    };
    let ladder = Ladder::new(ladder3(), Some(OLD), limits, t0);
    // The modem never registers after airplane mode.
    let run = drive(ladder, t0, |a| match a {
        Action::QueryRegistration => Resp::Reg(RegStat::Searching),
        Action::QueryAddress => Resp::Addr(Some(OLD)),
        _ => ok(),
    });
    assert_eq!(
        failed(&run),
        "toggle did not finish within 1m40s (address unchanged after soft (2×))"
    );
    assert_eq!(run.at, secs(100));
}

#[test]
fn no_registration_climbs_with_a_reason() {
    let (ladder, t0) = new_ladder(vec![airplane()], Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::QueryRegistration => Resp::Reg(RegStat::Denied),
        _ => ok(),
    });
    assert_eq!(
        failed(&run),
        "modem did not register within 1m30s after airplane"
    );
}

#[test]
fn no_address_climbs_with_a_reason() {
    let (ladder, t0) = new_ladder(vec![soft()], Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(None),
        _ => ok(),
    });
    assert_eq!(failed(&run), "no address within 30s after soft");
}

#[test]
fn unanswered_queries_are_retried() {
    let (ladder, t0) = new_ladder(vec![soft()], Some(OLD));
    let mut n = 0;
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => {
            n += 1;
            if n == 1 {
                Resp::Silent
            } else {
                Resp::Addr(Some(NEW))
            }
        }
        _ => ok(),
    });
    assert_eq!(changed(&run).0, NEW);
    assert_eq!(
        run.trace,
        [
            "AT+CGACT=0,1",
            "AT+CGACT=1,1",
            "wait 4s",
            "?addr",
            "wait 16100ms",
            "?addr"
        ]
    );
}

#[test]
fn query_overdue_at_poll_is_dropped_and_retried() {
    let (mut ladder, t0) = new_ladder(vec![soft()], Some(OLD));
    ladder.poll_action(t0);
    ladder.on_response(FinalResult::Ok, t0);
    ladder.poll_action(t0);
    ladder.on_response(FinalResult::Ok, t0);
    assert_eq!(
        ladder.poll_action(t0),
        Some(Action::Wait {
            until: t0 + secs(2)
        })
    );
    assert_eq!(ladder.poll_action(t0 + secs(2)), Some(Action::QueryAddress));
    assert_eq!(ladder.poll_action(t0 + secs(5)), None);
    // query_timeout is 10s: at 12s the query is given up, the next one goes at 14s.
    assert_eq!(
        ladder.poll_action(t0 + secs(12)),
        Some(Action::Wait {
            until: t0 + secs(14)
        })
    );
    // A late answer to the dropped query is ignored.
    ladder.on_address(Some(NEW), t0 + secs(13));
    assert!(!ladder.is_done());
    assert_eq!(
        ladder.poll_action(t0 + secs(14)),
        Some(Action::QueryAddress)
    );
    ladder.on_address(Some(NEW), t0 + secs(14));
    assert!(ladder.is_done());
}

#[test]
fn unknown_old_address_accepts_any_valid_one() {
    let (ladder, t0) = new_ladder(ladder3(), None);
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(Some(OLD)),
        _ => ok(),
    });
    assert_eq!(changed(&run), (OLD, "soft", 1));
}

#[test]
fn carrier_nat_addresses_count_unless_public_is_required() {
    let cgnat = IpAddr::V4(Ipv4Addr::new(100, 72, 1, 2));
    let (ladder, t0) = new_ladder(vec![soft()], Some(OLD));
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(Some(cgnat)),
        _ => ok(),
    });
    assert_eq!(changed(&run).0, cgnat);

    let t0 = Instant::now();
    let limits = Limits {
        require_public: true,
        ..Limits::default()
    };
    let ladder = Ladder::new(vec![soft()], Some(OLD), limits, t0);
    let run = drive(ladder, t0, |a| match a {
        Action::QueryAddress => Resp::Addr(Some(cgnat)),
        _ => ok(),
    });
    assert_eq!(failed(&run), "no address within 30s after soft");
}

#[test]
fn address_validity() {
    let v = |s: &str, public: bool| valid_address(s.parse().unwrap(), public);
    for bad in [
        "0.0.0.0",
        "127.0.0.1",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "0.1.2.3",
        "::",
        "::1",
        "fe80::1",
        "ff02::1",
    ] {
        assert!(!v(bad, false), "{bad}");
    }
    for private in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.8.100",
        "100.64.0.1",
        "100.127.255.254",
        "fd00::1",
    ] {
        assert!(v(private, false), "{private}");
        assert!(!v(private, true), "{private}");
    }
    for public in [
        "175.223.44.204",
        "203.0.113.5",
        "198.51.100.1",
        "100.128.0.1",
        "2001:db8::1",
    ] {
        assert!(v(public, true), "{public}");
    }
}

#[test]
fn redial_runs_after_registration() {
    let huawei = Profile::builtin("huawei").unwrap();
    let steps = huawei.ladder_for(&huawei.vars("internet"));
    let (ladder, t0) = new_ladder(steps, Some(OLD));
    let mut cfun = false;
    let run = drive(ladder, t0, |a| match a {
        Action::Send { cmd, .. } => {
            cfun |= cmd == "AT+CFUN=1";
            ok()
        }
        Action::QueryRegistration => Resp::Reg(RegStat::Home),
        Action::QueryAddress => Resp::Addr(Some(if cfun { NEW } else { OLD })),
        _ => unreachable!(),
    });
    assert_eq!(changed(&run), (NEW, "airplane", 3));
    let tail: Vec<&str> = run
        .trace
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "wait 18200ms",
            "AT+CFUN=1",
            "wait 22200ms",
            "?reg",
            "AT^NDISDUP=1,1,\"internet\"",
            "?addr"
        ]
    );
}

#[test]
fn pause_between_commands_is_a_wait() {
    let (mut ladder, t0) = new_ladder(vec![airplane()], Some(OLD));
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_response(FinalResult::Ok, t0 + secs(1));
    assert_eq!(
        ladder.current_step().unwrap().activity,
        "pausing between commands"
    );
    assert_eq!(
        ladder.poll_action(t0 + secs(1)),
        Some(Action::Wait {
            until: t0 + secs(4)
        })
    );
    assert_eq!(
        ladder.poll_action(t0 + secs(4)),
        Some(Action::Send {
            cmd: "AT+CFUN=1".into(),
            timeout: secs(30)
        })
    );
    assert_eq!(ladder.current_step().unwrap().activity, "sending AT+CFUN=1");
}

#[test]
fn status_and_sticky_done() {
    let (mut ladder, t0) = new_ladder(ladder3(), Some(OLD));
    assert_eq!(ladder.started_at(), t0);
    assert_eq!(ladder.current_step(), None);
    ladder.poll_action(t0);
    let p = ladder.current_step().unwrap();
    assert_eq!((p.index, p.name.as_str(), p.attempt), (0, "soft", 1));
    assert_eq!(p.activity, "sending AT+CGACT=0,1");
    // Events that do not fit the phase change nothing.
    ladder.on_address(Some(NEW), t0);
    ladder.on_registration(RegStat::Home, t0);
    ladder.on_port_back(t0);
    assert!(!ladder.is_done());
    ladder.on_port_gone(t0);
    let done = ladder.poll_action(t0 + secs(3600));
    assert!(matches!(done, Some(Action::Done(Outcome::Failed { .. }))));
    ladder.on_port_back(t0 + secs(3601));
    ladder.on_response(FinalResult::Ok, t0 + secs(3601));
    ladder.on_timeout(t0 + secs(3601));
    assert_eq!(ladder.poll_action(t0 + secs(3602)), done);
}

#[test]
fn no_steps_fails_at_once() {
    let (mut ladder, t0) = new_ladder(vec![], Some(OLD));
    assert_eq!(
        ladder.poll_action(t0),
        Some(Action::Done(Outcome::Failed {
            reason: "no toggle steps configured".into(),
            attempts: 0,
            elapsed: Duration::ZERO,
        }))
    );
}

#[test]
fn every_builtin_ladder_can_succeed_at_each_rung() {
    for profile in Profile::builtins().unwrap() {
        let steps = profile.ladder_for(&profile.vars("internet"));
        for (rung, step) in steps.iter().enumerate() {
            let (ladder, t0) = new_ladder(steps.clone(), Some(OLD));
            let mut current = 0usize;
            let run = drive(ladder, t0, |a| match a {
                Action::Send { cmd, .. } => {
                    // The first command of a rung names it (redial commands may repeat a soft rung's).
                    if let Some(i) = steps
                        .iter()
                        .position(|s| s.commands.first().is_some_and(|c| &c.cmd == cmd))
                    {
                        current = i;
                    }
                    ok()
                }
                Action::QueryRegistration => Resp::Reg(RegStat::Home),
                Action::QueryAddress => Resp::Addr(Some(if current == rung { NEW } else { OLD })),
                _ => unreachable!(),
            });
            let (ip, name, _) = changed(&run);
            assert_eq!(
                (ip, name),
                (NEW, step.name.as_str()),
                "{} rung {rung}",
                profile.name
            );
        }
    }
}

/// Everything the shell can tell the ladder, for the property test.
#[derive(Debug, Clone)]
enum Event {
    Poll,
    Response(bool),
    Timeout,
    Registration(bool),
    Address(Option<u8>),
    PortGone,
    PortBack,
    Abort,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Poll),
        2 => any::<bool>().prop_map(Event::Response),
        1 => Just(Event::Timeout),
        1 => any::<bool>().prop_map(Event::Registration),
        2 => prop::option::of(0u8..3).prop_map(Event::Address),
        1 => Just(Event::PortGone),
        1 => Just(Event::PortBack),
        1 => Just(Event::Abort),
    ]
}

proptest! {
    /// Whatever the shell reports, and whenever, the ladder never panics, never asks to wait
    /// past its deadline (the restore's, once aborted), and is done with a reason once the
    /// deadline has passed; an abort before the end always ends it aborted.
    #[test]
    fn any_event_sequence_ends_by_the_deadline(
        events in prop::collection::vec((event(), 0u64..40_000), 0..200),
        profile in prop::sample::select(vec!["generic", "quectel", "huawei", "fibocom"]),
    ) {
        let p = Profile::builtin(profile).unwrap();
        let t0 = Instant::now();
        let limits = Limits::default();
        let budget = limits.restore_budget;
        let mut deadline = t0 + limits.max_total;
        let vars = p.vars("apn");
        let mut ladder = Ladder::new(p.ladder_for(&vars), Some(OLD), limits, t0)
            .with_restore(p.restore_for(&vars));
        let mut now = t0;
        let mut aborted_live = false;
        for (event, step_ms) in events {
            now += Duration::from_millis(step_ms);
            match event {
                Event::Poll => {
                    if let Some(Action::Wait { until }) = ladder.poll_action(now) {
                        prop_assert!(until > now && until <= deadline);
                    }
                }
                Event::Response(ok) => ladder.on_response(
                    if ok { FinalResult::Ok } else { FinalResult::Error },
                    now,
                ),
                Event::Timeout => ladder.on_timeout(now),
                Event::Registration(reg) => ladder.on_registration(
                    if reg { RegStat::Home } else { RegStat::Searching },
                    now,
                ),
                Event::Address(ip) => ladder.on_address(
                    ip.map(|last| IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7 + last))),
                    now,
                ),
                Event::PortGone => ladder.on_port_gone(now),
                Event::PortBack => ladder.on_port_back(now),
                Event::Abort => {
                    // Done is only known by polling; the ladder may have finished unseen.
                    let finished = matches!(ladder.poll_action(now), Some(Action::Done(_)));
                    if !finished && !aborted_live {
                        aborted_live = true;
                        deadline = now + budget;
                    }
                    ladder.abort(now);
                }
            }
        }
        match ladder.poll_action(deadline.max(now)) {
            Some(Action::Done(Outcome::Aborted { reason, .. })) => {
                prop_assert!(aborted_live);
                prop_assert!(reason.contains("shutting down"));
            }
            Some(Action::Done(Outcome::Failed { reason, .. })) => {
                prop_assert!(!aborted_live);
                prop_assert!(!reason.is_empty());
            }
            Some(Action::Done(Outcome::Changed { ip, .. })) => {
                prop_assert!(!aborted_live);
                prop_assert_ne!(ip, OLD);
            }
            other => prop_assert!(false, "not done at the deadline: {:?}", other),
        }
    }
}

// ---- abort and restore (edgeward stopping mid-toggle) ----

fn generic_restore() -> Restore {
    let p = Profile::builtin("generic").unwrap();
    p.restore_for(&p.vars("apn"))
}

fn aborted(run: &Run) -> (&str, bool) {
    match &run.outcome {
        Outcome::Aborted {
            reason, restored, ..
        } => (reason.as_str(), *restored),
        other => panic!("expected an abort, got {other:?}"),
    }
}

/// Runs the airplane rung until it has sent `AT+CFUN=4` and is pausing: radio off, no data.
fn airplane_paused() -> (Ladder, Instant, Instant) {
    let t0 = Instant::now();
    let mut ladder = Ladder::new(vec![airplane()], Some(OLD), Limits::default(), t0)
        .with_restore(generic_restore());
    let Some(Action::Send { cmd, .. }) = ladder.poll_action(t0) else {
        panic!("the rung starts with a command");
    };
    assert_eq!(cmd, "AT+CFUN=4");
    let now = t0 + secs(1);
    ladder.on_response(FinalResult::Ok, now);
    assert!(matches!(ladder.poll_action(now), Some(Action::Wait { .. })));
    (ladder, t0, now)
}

#[test]
fn abort_mid_airplane_turns_the_radio_on_and_the_data_call_up() {
    let (mut ladder, t0, now) = airplane_paused();
    ladder.abort(now);
    assert!(ladder.is_restoring());
    let progress = ladder.current_step().unwrap();
    assert_eq!(progress.activity, "restoring: sending AT+CFUN=1");
    let mut reg = 0;
    let run = drive_from(ladder, t0, now, |a| match a {
        Action::QueryRegistration => {
            reg += 1;
            Resp::Reg(if reg < 2 {
                RegStat::Searching
            } else {
                RegStat::Home
            })
        }
        Action::QueryAddress => panic!("a restore does not look for a new address"),
        _ => ok(),
    });
    assert_eq!(
        run.trace,
        ["AT+CFUN=1", "?reg", "wait 4100ms", "?reg", "AT+CGACT=1,1"]
    );
    let (reason, restored) = aborted(&run);
    assert!(restored, "{reason}");
    assert!(
        reason.contains("shutting down")
            && reason.contains("during airplane (pausing between commands)")
            && reason.contains("modem restored (AT+CFUN=1, AT+CGACT=1,1)"),
        "{reason}"
    );
}

#[test]
fn abort_with_an_answer_outstanding_restores_at_once() {
    let t0 = Instant::now();
    let mut ladder =
        Ladder::new(ladder3(), Some(OLD), Limits::default(), t0).with_restore(generic_restore());
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_response(FinalResult::Ok, t0 + secs(1));
    // The deactivation was answered; the re-activation is in flight (it can take 150s).
    let now = t0 + secs(3);
    let Some(Action::Send { cmd, .. }) = ladder.poll_action(now) else {
        panic!("second command");
    };
    assert_eq!(cmd, "AT+CGACT=1,1");
    assert_eq!(ladder.poll_action(now), None, "an answer is outstanding");
    let now = now + secs(1);
    ladder.abort(now);
    // The outstanding answer is the shell's to drop; the ladder moves on to the restore.
    let Some(Action::Send { cmd, timeout }) = ladder.poll_action(now) else {
        panic!("the restore starts with a command");
    };
    assert_eq!((cmd.as_str(), timeout), ("AT+CFUN=1", secs(5)));
    ladder.on_response(FinalResult::Ok, now + secs(1));
    let run = drive_from(ladder, t0, now + secs(1), |a| match a {
        Action::QueryRegistration => Resp::Reg(RegStat::Home),
        _ => ok(),
    });
    assert_eq!(run.trace, ["?reg", "AT+CGACT=1,1"]);
    let (reason, restored) = aborted(&run);
    assert!(restored);
    assert!(
        reason.contains("during soft (sending AT+CGACT=1,1)"),
        "{reason}"
    );
}

#[test]
fn abort_before_the_first_command_leaves_the_modem_alone() {
    let t0 = Instant::now();
    let mut ladder =
        Ladder::new(ladder3(), Some(OLD), Limits::default(), t0).with_restore(generic_restore());
    ladder.abort(t0);
    let Some(Action::Done(Outcome::Aborted {
        reason, restored, ..
    })) = ladder.poll_action(t0)
    else {
        panic!("done at once");
    };
    assert!(restored);
    assert!(reason.contains("before it touched the modem"), "{reason}");
    // Idempotent, and nothing changes after.
    ladder.abort(t0 + secs(1));
    assert!(matches!(
        ladder.poll_action(t0 + secs(2)),
        Some(Action::Done(Outcome::Aborted { .. }))
    ));
}

#[test]
fn abort_after_the_end_changes_nothing() {
    let (mut ladder, t0) = new_ladder(vec![soft()], Some(OLD));
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_response(FinalResult::Ok, t0 + secs(1));
    let late = t0 + secs(100_000);
    assert!(matches!(
        ladder.poll_action(late),
        Some(Action::Done(Outcome::Failed { .. }))
    ));
    ladder.abort(late);
    assert!(matches!(
        ladder.poll_action(late),
        Some(Action::Done(Outcome::Failed { .. }))
    ));
    let (mut ladder, t0) = new_ladder(vec![], Some(OLD));
    assert!(matches!(
        ladder.poll_action(t0),
        Some(Action::Done(Outcome::Failed { .. }))
    ));
    ladder.abort(t0);
    assert!(matches!(
        ladder.poll_action(t0),
        Some(Action::Done(Outcome::Failed { .. }))
    ));
}

#[test]
fn a_silent_modem_ends_the_restore_at_its_first_command() {
    let (mut ladder, t0, now) = airplane_paused();
    ladder.abort(now);
    let run = drive_from(ladder, t0, now, |_| Resp::Silent);
    assert_eq!(run.trace, ["AT+CFUN=1"]);
    // One command timeout, not the whole budget.
    assert_eq!(run.at, secs(1) + secs(5));
    let (reason, restored) = aborted(&run);
    assert!(!restored);
    assert!(
        reason.contains("restore incomplete: modem did not answer AT+CFUN=1"),
        "{reason}"
    );
}

#[test]
fn the_port_vanishing_ends_the_restore() {
    let (mut ladder, _t0, now) = airplane_paused();
    ladder.abort(now);
    assert!(matches!(ladder.poll_action(now), Some(Action::Send { .. })));
    ladder.on_port_gone(now);
    let Some(Action::Done(Outcome::Aborted {
        reason, restored, ..
    })) = ladder.poll_action(now)
    else {
        panic!("done when the port is gone");
    };
    assert!(!restored);
    assert!(reason.contains("the port vanished"), "{reason}");
}

#[test]
fn the_restore_fits_its_budget_whatever_the_profile_says() {
    let t0 = Instant::now();
    let limits = Limits {
        restore_budget: secs(3),
        ..Limits::default()
    };
    let mut restore = generic_restore();
    restore.wait_registration = Some(secs(3600));
    let mut ladder = Ladder::new(vec![airplane()], Some(OLD), limits, t0).with_restore(restore);
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_response(FinalResult::Ok, t0 + secs(1));
    let start = t0 + secs(1);
    ladder.abort(start);
    // The command's own 5s is cut to what is left of the budget.
    let Some(Action::Send { timeout, .. }) = ladder.poll_action(start) else {
        panic!("restore command");
    };
    assert_eq!(timeout, secs(3));
    ladder.on_response(FinalResult::Ok, start + Duration::from_millis(500));
    // Never registers: every wait stays inside the budget, and it ends at the budget.
    let mut now = start + Duration::from_millis(500);
    loop {
        match ladder.poll_action(now) {
            Some(Action::QueryRegistration) => {
                now += Duration::from_millis(100);
                ladder.on_registration(RegStat::Searching, now);
            }
            Some(Action::Wait { until }) => {
                assert!(until <= start + secs(3), "wait past the budget");
                now = until;
            }
            Some(Action::Done(Outcome::Aborted {
                reason, restored, ..
            })) => {
                assert!(!restored);
                assert!(
                    reason.contains("restore did not finish within 3s"),
                    "{reason}"
                );
                assert!(now <= start + secs(3));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_abort_just_before_the_toggle_deadline_still_restores() {
    let t0 = Instant::now();
    let limits = Limits {
        max_total: secs(2),
        ..Limits::default()
    };
    let mut ladder =
        Ladder::new(vec![airplane()], Some(OLD), limits, t0).with_restore(generic_restore());
    assert!(matches!(ladder.poll_action(t0), Some(Action::Send { .. })));
    ladder.on_response(FinalResult::Ok, t0 + secs(1));
    let at = t0 + Duration::from_millis(1999);
    ladder.abort(at);
    let run = drive_from(ladder, t0, at, |a| match a {
        Action::QueryRegistration => Resp::Reg(RegStat::Home),
        _ => ok(),
    });
    assert_eq!(run.trace, ["AT+CFUN=1", "?reg", "AT+CGACT=1,1"]);
    assert!(aborted(&run).1);
}

#[test]
fn no_configured_duration_can_overflow_the_clock() {
    let huge = Duration::MAX;
    let t0 = Instant::now();
    assert!(later(t0, huge) > t0);
    assert_eq!(later(t0, secs(1)), t0 + secs(1));
    let limits = Limits {
        max_total: huge,
        max_attempts: u32::MAX,
        poll_interval: huge,
        query_timeout: huge,
        port_return: huge,
        require_public: false,
        restore_budget: huge,
    };
    let step = Step {
        name: "huge".into(),
        kind: StepKind::Airplane,
        commands: vec![Command {
            pause: huge,
            ..cmd("AT+CFUN=4", 1)
        }],
        settle: huge,
        wait_registration: Some(huge),
        redial: vec![],
        wait_address: huge,
        repeat: u32::MAX,
    };
    let mut restore = generic_restore();
    restore.wait_registration = Some(huge);
    restore.commands[0].timeout = huge;
    restore.commands[0].pause = huge;
    let mut ladder = Ladder::new(vec![step], Some(OLD), limits, t0).with_restore(restore);
    let mut now = t0;
    for i in 0..40u32 {
        match ladder.poll_action(now) {
            Some(Action::Wait { until }) => now = until.min(now + secs(3600)),
            Some(Action::Send { .. }) => ladder.on_response(FinalResult::Ok, now),
            Some(Action::QueryRegistration) => ladder.on_timeout(now),
            Some(Action::QueryAddress) => ladder.on_address(Some(OLD), now),
            Some(Action::Done(_)) => break,
            None => ladder.on_timeout(now),
        }
        if i % 7 == 3 {
            ladder.on_port_gone(now);
            ladder.on_port_back(now);
        }
        if i == 20 {
            ladder.abort(now);
        }
        now += secs(1);
    }
}
