use super::*;

const MIN: u64 = 60_000;

fn fail(why: &str) -> Verdict {
    Verdict::Failed(why.into())
}

fn runs(cmds: &[Command]) -> Vec<(u32, HealStep)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Run { modem, step } => Some((*modem, *step)),
            Command::ResetController { .. } => None,
        })
        .collect()
}

/// Every modem but `sick` probes healthy; `sick` fails.
fn round(h: &mut Healer, sick: &[u32], now: u64) -> Vec<Command> {
    let all: Vec<u32> = h.modems.keys().copied().collect();
    for n in all {
        let v = if sick.contains(&n) {
            fail("not registered")
        } else {
            Verdict::Healthy
        };
        h.on_probe(n, v, now);
    }
    h.poll(now)
}

fn done(h: &mut Healer, n: u32, step: HealStep, r: StepResult, now: u64) {
    h.on_step_done(
        n,
        step,
        r,
        format!("{} {}", step.as_str(), r.as_str()),
        10,
        now,
    );
}

#[test]
fn recovery_starts_only_after_enough_failures_in_a_row() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    assert!(round(&mut h, &[1], 0).is_empty());
    assert_eq!(h.status(1).unwrap().state, HealthState::Failing);
    // A healthy probe in between starts the count again.
    assert!(round(&mut h, &[], MIN).is_empty());
    assert!(round(&mut h, &[1], 2 * MIN).is_empty());
    assert_eq!(
        runs(&round(&mut h, &[1], 3 * MIN)),
        vec![(1, HealStep::Reconnect)]
    );
    let s = h.status(1).unwrap();
    assert_eq!(s.state, HealthState::Recovering);
    assert_eq!(s.recoveries, 1);
    assert_eq!(s.current, Some((HealStep::Reconnect, 3 * MIN)));
}

#[test]
fn the_ladder_climbs_step_by_step_and_stops_at_the_first_that_helps() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    round(&mut h, &[1], 0);
    assert_eq!(
        runs(&round(&mut h, &[1], MIN)),
        vec![(1, HealStep::Reconnect)]
    );
    // Probes during a recovery change nothing; nor does polling while the step runs.
    assert!(round(&mut h, &[1], MIN + 1).is_empty());
    done(&mut h, 1, HealStep::Reconnect, StepResult::Failed, MIN + 2);
    assert_eq!(runs(&h.poll(MIN + 2)), vec![(1, HealStep::Reboot)]);
    done(&mut h, 1, HealStep::Reboot, StepResult::Failed, MIN + 3);
    assert_eq!(runs(&h.poll(MIN + 3)), vec![(1, HealStep::UsbRebind)]);
    // A step that cannot be taken is recorded as skipped, and the ladder goes on.
    done(&mut h, 1, HealStep::UsbRebind, StepResult::Skipped, MIN + 4);
    assert_eq!(runs(&h.poll(MIN + 4)), vec![(1, HealStep::PortPowerCycle)]);
    done(
        &mut h,
        1,
        HealStep::PortPowerCycle,
        StepResult::Recovered,
        MIN + 5,
    );
    assert!(h.poll(MIN + 5).is_empty());
    let s = h.status(1).unwrap();
    assert_eq!(s.state, HealthState::Healthy);
    assert_eq!(s.consecutive_failures, 0);
    let steps: Vec<_> = s.history.iter().map(|r| (r.step, r.result)).collect();
    assert_eq!(
        steps,
        vec![
            (HealStep::Reconnect, StepResult::Failed),
            (HealStep::Reboot, StepResult::Failed),
            (HealStep::UsbRebind, StepResult::Skipped),
            (HealStep::PortPowerCycle, StepResult::Recovered),
        ]
    );
    assert_eq!(s.history[2].detail, "usb_rebind skipped");
    assert_eq!(h.counts()[&(HealStep::Reboot, StepResult::Failed)], (1, 10));
    assert_eq!(h.recovering(), 0);
}

#[test]
fn a_stale_or_unexpected_step_report_is_ignored() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    round(&mut h, &[1], 0);
    round(&mut h, &[1], MIN);
    done(&mut h, 1, HealStep::Reboot, StepResult::Recovered, MIN);
    done(&mut h, 9, HealStep::Reconnect, StepResult::Recovered, MIN);
    assert_eq!(h.status(1).unwrap().state, HealthState::Recovering);
    assert!(h.status(1).unwrap().history.is_empty());
}

#[test]
fn cooldown_keeps_a_modem_from_being_recovered_again_too_soon() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    round(&mut h, &[1], 0);
    round(&mut h, &[1], MIN);
    for (i, step) in LADDER.iter().enumerate() {
        done(&mut h, 1, *step, StepResult::Failed, MIN + i as u64);
        h.poll(MIN + i as u64);
    }
    let end = MIN + 3;
    let s = h.status(1).unwrap();
    assert_eq!(s.state, HealthState::CoolingDown);
    assert_eq!(s.next_recovery_at, Some(end + 3 * MIN));
    // It keeps failing: fresh failures are counted, but no recovery before the cooldown ends.
    assert!(round(&mut h, &[1], end + MIN).is_empty());
    assert!(round(&mut h, &[1], end + 2 * MIN).is_empty());
    assert_eq!(h.status(1).unwrap().state, HealthState::CoolingDown);
    assert!(h.poll(end + 3 * MIN - 1).is_empty());
    assert_eq!(
        runs(&h.poll(end + 3 * MIN)),
        vec![(1, HealStep::Reconnect)],
        "the next recovery starts at the bottom of the ladder"
    );
    assert_eq!(h.status(1).unwrap().recoveries, 2);
}

#[test]
fn a_successful_recovery_also_cools_down() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    round(&mut h, &[1], 0);
    round(&mut h, &[1], MIN);
    done(&mut h, 1, HealStep::Reconnect, StepResult::Recovered, MIN);
    round(&mut h, &[1], 2 * MIN);
    assert!(round(&mut h, &[1], 3 * MIN).is_empty());
    assert_eq!(runs(&h.poll(4 * MIN)), vec![(1, HealStep::Reconnect)]);
}

#[test]
fn at_most_max_parallel_recoveries_run_at_once() {
    let mut h = Healer::new(Policy::default(), 1..=10);
    let sick = [2, 4, 6];
    round(&mut h, &sick, 0);
    let started = runs(&round(&mut h, &sick, MIN));
    assert_eq!(
        started,
        vec![(2, HealStep::Reconnect), (4, HealStep::Reconnect)]
    );
    assert_eq!(h.recovering(), 2);
    // Modem 6 waits; climbing a running recovery does not take a new slot.
    done(&mut h, 2, HealStep::Reconnect, StepResult::Failed, MIN + 1);
    assert_eq!(runs(&h.poll(MIN + 1)), vec![(2, HealStep::Reboot)]);
    done(
        &mut h,
        4,
        HealStep::Reconnect,
        StepResult::Recovered,
        MIN + 2,
    );
    assert_eq!(runs(&h.poll(MIN + 2)), vec![(6, HealStep::Reconnect)]);
}

#[test]
fn the_breaker_holds_everything_when_most_modems_fail_at_once() {
    let mut h = Healer::new(Policy::default(), 1..=10);
    let sick: Vec<u32> = (1..=7).collect();
    round(&mut h, &sick, 0);
    // 7 of 10 failing: the breaker opens instead of cycling each modem.
    assert!(round(&mut h, &sick, MIN).is_empty());
    let b = h.breaker().clone();
    assert!(b.is_open());
    assert_eq!((b.failing, b.watched, b.trips), (7, 10, 1));
    assert_eq!(h.status(3).unwrap().state, HealthState::Held);
    assert_eq!(h.status(9).unwrap().state, HealthState::Healthy);
    // It holds until its recheck even if the fleet improves in between.
    assert!(round(&mut h, &[1], 2 * MIN).is_empty());
    assert!(h.breaker().is_open());
    assert!(round(&mut h, &[1], 11 * MIN - 1).is_empty());
    assert!(h.breaker().is_open());
    // At the recheck (10 min after it opened) only modem 1 still fails: closed, and modem 1
    // gets its turn.
    assert_eq!(
        runs(&round(&mut h, &[1], 11 * MIN)),
        vec![(1, HealStep::Reconnect)]
    );
    assert!(!h.breaker().is_open());
}

#[test]
fn the_breaker_pauses_a_recovery_between_steps() {
    let mut h = Healer::new(Policy::default(), 1..=4);
    round(&mut h, &[1], 0);
    assert_eq!(
        runs(&round(&mut h, &[1], MIN)),
        vec![(1, HealStep::Reconnect)]
    );
    // Modems 2, 3 and 4 fall over too: 4 of 4.
    round(&mut h, &[1, 2, 3, 4], 2 * MIN);
    assert!(round(&mut h, &[1, 2, 3, 4], 3 * MIN).is_empty());
    assert!(h.breaker().is_open());
    done(
        &mut h,
        1,
        HealStep::Reconnect,
        StepResult::Failed,
        3 * MIN + 1,
    );
    assert!(
        h.poll(3 * MIN + 1).is_empty(),
        "no reboot while the breaker is open"
    );
    assert_eq!(h.status(1).unwrap().state, HealthState::Held);
}

#[test]
fn few_modems_never_trip_the_breaker() {
    let mut h = Healer::new(Policy::default(), 1..=2);
    round(&mut h, &[1, 2], 0);
    assert_eq!(runs(&round(&mut h, &[1, 2], MIN)).len(), 2);
    assert!(!h.breaker().is_open());
}

#[test]
fn controller_reset_only_when_configured_and_with_its_own_cooldown() {
    let sick: Vec<u32> = (1..=4).collect();
    let mut h = Healer::new(Policy::default(), 1..=4);
    for n in 1..=4 {
        h.set_controller(n, Some("0000:00:14.0".into()));
    }
    round(&mut h, &sick, 0);
    assert!(round(&mut h, &sick, MIN).is_empty(), "not configured: none");

    let policy = Policy {
        controller_reset: true,
        ..Policy::default()
    };
    let mut h = Healer::new(policy, 1..=5);
    for n in 1..=4 {
        h.set_controller(n, Some("0000:00:14.0".into()));
    }
    h.set_controller(5, Some("0000:00:1d.0".into()));
    round(&mut h, &sick, 0);
    let cmds = round(&mut h, &sick, MIN);
    assert_eq!(
        cmds,
        vec![Command::ResetController {
            controller: "0000:00:14.0".into(),
            modems: vec![1, 2, 3, 4]
        }],
        "only the controller all of whose modems fail"
    );
    h.on_controller_done(&[1, 2, 3, 4], StepResult::Failed, "no luck".into(), 5, MIN);
    assert_eq!(
        h.status(2).unwrap().history.last().unwrap().step,
        HealStep::ControllerReset
    );
    // Rechecks every 10 min keep the breaker open, but the controller waits its hour.
    for k in 1..6 {
        let cmds = round(&mut h, &sick, MIN + k * 10 * MIN);
        assert!(cmds.is_empty(), "{cmds:?}");
    }
    let cmds = round(&mut h, &sick, MIN + 60 * MIN);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
}

#[test]
fn skipped_probes_count_neither_way() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    h.on_probe(1, fail("down"), 0);
    h.on_probe(1, Verdict::Skipped, 1);
    assert_eq!(h.status(1).unwrap().consecutive_failures, 1);
    h.on_probe(1, fail("down"), 2);
    assert_eq!(runs(&h.poll(2)), vec![(1, HealStep::Reconnect)]);
}

#[test]
fn history_is_bounded() {
    let policy = Policy {
        recovery_cooldown: Duration::ZERO,
        failures_before_recovery: 1,
        ..Policy::default()
    };
    let mut h = Healer::new(policy, 1..=5);
    for i in 0..40u64 {
        round(&mut h, &[1], i * 10);
        done(
            &mut h,
            1,
            HealStep::Reconnect,
            StepResult::Recovered,
            i * 10 + 1,
        );
    }
    assert_eq!(h.status(1).unwrap().history.len(), HISTORY);
    assert_eq!(
        h.counts()[&(HealStep::Reconnect, StepResult::Recovered)],
        (40, 400)
    );
}

#[test]
fn each_step_report_says_where_the_recovery_stands() {
    let mut h = Healer::new(Policy::default(), 1..=5);
    let report = |h: &mut Healer, step, r, now| h.on_step_done(1, step, r, String::new(), 1, now);
    // Nothing runs yet: a report is ignored.
    assert_eq!(
        report(&mut h, HealStep::Reconnect, StepResult::Failed, 0),
        StepOutcome::Ignored
    );
    round(&mut h, &[1], 0);
    round(&mut h, &[1], MIN);
    for (i, step) in LADDER.iter().enumerate() {
        let outcome = report(&mut h, *step, StepResult::Failed, MIN + 1 + i as u64);
        let want = if i + 1 == LADDER.len() {
            StepOutcome::GaveUp
        } else {
            StepOutcome::Climbing
        };
        assert_eq!(outcome, want, "{step:?}");
        h.poll(MIN + 1 + i as u64);
    }
    // After the cooldown, a new recovery; this time reconnect helps.
    let later = MIN + 10 * MIN;
    round(&mut h, &[1], later);
    round(&mut h, &[1], later + MIN);
    assert_eq!(
        report(
            &mut h,
            HealStep::Reconnect,
            StepResult::Recovered,
            later + MIN + 1
        ),
        StepOutcome::Recovered
    );
}
