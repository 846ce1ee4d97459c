//! boringtun's timers driven through `tick`, with its clock mocked (feature `mock-time`:
//! boringtun's per-thread `mock_instant` clock, moved by `TestClock::advance`).
//! Run: `cargo test --features mock-time`.

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// A connected client, one second and one tick later: boringtun stamps events with the time
/// of the last `update_timers`, so the timer tests start from a tick.
fn settled_client(f: &mut Fixture) -> Client {
    let c = f.connected_client();
    f.clock.advance(SECOND);
    assert!(f.tick().is_empty());
    c
}

#[test]
fn tick_sends_a_keepalive_when_data_arrived_and_nothing_went_back() {
    let mut f = Fixture::new(PlaneConfig::default());
    let mut c = settled_client(&mut f);
    let up = c.packet_to(INTERNET, b"anyone there?");
    assert_eq!(f.client_sends(&mut c, &up), vec![up]);

    // KEEPALIVE_TIMEOUT: 10 s after we last sent anything (the response, at 0 s).
    f.clock.advance(Duration::from_secs(8));
    assert!(f.tick().is_empty(), "not yet");
    f.clock.advance(SECOND);
    let out = f.tick();
    let sent = sent(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0, c.addr);
    assert_eq!(
        (message_type(&sent[0].1), sent[0].1.len()),
        (4, 32),
        "an empty data message"
    );
    let got = c.receive(&sent[0].1);
    assert!(got.error.is_none() && got.packets.is_empty());
    assert!(f.tick().is_empty(), "once");
}

#[test]
fn persistent_keepalive_only_for_peers_with_an_endpoint() {
    let mut f = Fixture::new(PlaneConfig {
        persistent_keepalive: Some(25),
        ..PlaneConfig::default()
    });
    let c = settled_client(&mut f);
    let _silent = f.client();
    f.clock.advance(Duration::from_secs(24));
    let sent = sent(&f.tick());
    assert_eq!(
        sent.len(),
        1,
        "one keepalive, to the peer we know: {sent:?}"
    );
    assert_eq!(sent[0].0, c.addr);
    assert_eq!(message_type(&sent[0].1), 4);
}

#[test]
fn server_rehandshakes_when_data_goes_unanswered_and_the_response_is_routed_by_index() {
    let mut f = Fixture::new(PlaneConfig::default());
    let mut c = settled_client(&mut f);
    let down = udp_packet(INTERNET, c.slot, b"hello?");
    assert_eq!(f.host_sends(&mut c, &down), vec![down]);

    // Nothing comes back for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: boringtun initiates.
    f.clock.advance(Duration::from_secs(15));
    let out = f.tick();
    let sent = sent(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!((message_type(&sent[0].1), sent[0].1.len()), (1, 148));

    let got = c.receive(&sent[0].1);
    assert!(got.error.is_none(), "{:?}", got.error);
    let response = &got.replies[0];
    assert_eq!(message_type(response), 2);
    let out = f.udp(c.addr, response);
    assert_eq!(
        message_type(&super::sent(&out)[0].1),
        4,
        "our keepalive confirms"
    );
    assert!(matches!(
        events(&out)[..],
        [Event::HandshakeCompleted { lease_id: 2, .. }]
    ));
    assert_eq!(f.plane.metrics().handshakes_completed, 2);
    let got = c.receive(&super::sent(&out)[0].1);
    assert!(got.error.is_none());
    let up = c.packet_to(INTERNET, b"new session");
    assert_eq!(f.client_sends(&mut c, &up), vec![up]);
}

#[test]
fn sessions_expire_as_boringtun_says_and_a_new_handshake_revives_them() {
    let mut f = Fixture::new(PlaneConfig::default());
    let mut c = settled_client(&mut f);
    let up = c.packet_to(INTERNET, b"x");
    assert_eq!(f.client_sends(&mut c, &up), vec![up]);
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(sent(&f.tick()).len(), 1, "the passive keepalive");

    // REJECT_AFTER_TIME (180 s): the session's keys are dropped; its data is refused.
    f.clock.advance(Duration::from_secs(175));
    assert!(f.tick().is_empty());
    let late = c.encapsulate(&c.packet_to(INTERNET, b"late"));
    assert!(f.udp(c.addr, &late).is_empty());
    assert_eq!(f.plane.metrics().dropped(DropReason::NoSession), 1);
    assert!(f.plane.peer_stats(&c.public_key()).unwrap().has_session);

    // REJECT_AFTER_TIME * 3 (540 s) after the handshake: everything is zeroed; told once.
    f.clock.advance(Duration::from_secs(360));
    let out = f.tick();
    assert!(
        matches!(events(&out)[..], [Event::SessionExpired { lease_id: 2, at, .. }] if at == f.clock.now()),
        "{out:?}"
    );
    assert!(f.tick().is_empty());
    assert!(!f.plane.peer_stats(&c.public_key()).unwrap().has_session);

    f.clock.advance(SECOND);
    f.connect(&mut c);
    assert!(f.plane.peer_stats(&c.public_key()).unwrap().has_session);
    let up = c.packet_to(INTERNET, b"back");
    assert_eq!(f.client_sends(&mut c, &up), vec![up]);
}

#[test]
fn the_handshake_budget_refills_on_tick_after_a_second() {
    let mut f = Fixture::new(PlaneConfig {
        handshake_rate_limit: 1,
        ..PlaneConfig::default()
    });
    let (mut c1, mut c2) = (f.client(), f.client());
    f.connect(&mut c1);
    let out = f.udp(c2.addr, &c2.initiation());
    assert_eq!(message_type(&sent(&out)[0].1), 3, "under load: a cookie");

    f.clock.advance(Duration::from_millis(500));
    assert!(f.tick().is_empty());
    let out = f.udp(c2.addr, &c2.initiation());
    assert_eq!(message_type(&sent(&out)[0].1), 3, "still the same second");

    f.clock.advance(Duration::from_millis(500));
    assert!(f.tick().is_empty());
    f.connect(&mut c2);
    assert_eq!(f.plane.metrics().cookie_replies_sent, 2);
}
