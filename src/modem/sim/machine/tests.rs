use super::*;

fn settings(vendor: Vendor) -> Settings {
    Settings {
        vendor,
        echo: false,
        line_ending: LineEnding::CrLf,
        initial_ip: Ipv4Addr::new(100, 64, 0, 7),
        registration_delay: Duration::from_secs(1),
        reply_delay: Duration::ZERO,
        reset_downtime: Duration::from_secs(2),
        urc_noise: false,
        seed: 7,
    }
}

/// Sends `cmd` and returns everything written back up to now.
fn send(m: &mut Modem, cmd: &str, now: Instant) -> String {
    m.feed(format!("{cmd}\r").as_bytes(), now);
    drain(m, now)
}

fn drain(m: &mut Modem, now: Instant) -> String {
    m.tick(now);
    let mut out = String::new();
    while let Some(o) = m.poll_output(now) {
        match o {
            Out::Bytes(b) => out.push_str(&String::from_utf8_lossy(&b)),
            Out::Vanish(d) => out.push_str(&format!("<vanish {d:?}>")),
        }
    }
    out
}

#[test]
fn address_changes_only_on_reattach() {
    let t0 = Instant::now();
    let mut m = Modem::new(settings(Vendor::Generic), t0);
    let first = m.current_ip();
    assert!(send(&mut m, "AT+CGACT=1,1", t0).contains("OK"));
    assert_eq!(m.current_ip(), first, "activating an active context");
    send(&mut m, "AT+CFUN=1", t0);
    assert_eq!(m.current_ip(), first, "CFUN=1 while on");
    send(&mut m, "AT+CGACT=0,1", t0);
    assert_eq!(m.current_ip(), None);
    send(&mut m, "AT+CGACT=1,1", t0);
    let second = m.current_ip();
    assert!(second.is_some() && second != first);
    m.keep_ip(1);
    send(&mut m, "AT+CFUN=4", t0);
    send(&mut m, "AT+CFUN=1", t0);
    assert_eq!(m.current_ip(), None, "not registered yet");
    drain(&mut m, t0 + Duration::from_secs(1));
    assert_eq!(m.current_ip(), second, "kept");
    send(&mut m, "AT+CFUN=0", t0);
    send(&mut m, "AT+CFUN=1", t0);
    drain(&mut m, t0 + Duration::from_secs(1));
    assert!(m.current_ip().is_some() && m.current_ip() != second);
    assert_eq!(m.attach_count(), 3);
}

#[test]
fn addresses_are_deterministic_and_carrier_nat() {
    let run = || {
        let t0 = Instant::now();
        let mut m = Modem::new(settings(Vendor::Generic), t0);
        (0..50)
            .map(|_| {
                send(&mut m, "AT+CGACT=0,1", t0);
                send(&mut m, "AT+CGACT=1,1", t0);
                m.current_ip().unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    for pair in a.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }
    for ip in a {
        let o = ip.octets();
        assert!(
            o[0] == 10 || (o[0] == 100 && (64..128).contains(&o[1])),
            "{ip}"
        );
        assert!(o[3] != 0 && o[3] != 255, "{ip}");
    }
}

#[test]
fn reset_answers_then_vanishes_and_boots() {
    let t0 = Instant::now();
    let mut m = Modem::new(settings(Vendor::Quectel), t0);
    let out = send(&mut m, "AT+CFUN=1,1", t0);
    assert_eq!(out, "\r\nOK\r\n<vanish 2s>");
    assert_eq!(m.current_ip(), None);
    m.feed(b"AT\r", t0);
    assert_eq!(drain(&mut m, t0), "", "nobody home while powered off");
    m.boot(t0);
    assert_eq!(
        drain(&mut m, t0),
        "\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"
    );
    assert_eq!(send(&mut m, "AT", t0), "AT\r\r\nOK\r\n", "echo is back on");
    drain(&mut m, t0 + Duration::from_secs(1));
    assert!(m.current_ip().is_some());
}

#[test]
fn dialing_makes_need_a_redial_after_reattach() {
    let t0 = Instant::now();
    let mut m = Modem::new(settings(Vendor::Huawei), t0);
    send(&mut m, "AT+CFUN=0", t0);
    send(&mut m, "AT+CFUN=1", t0);
    drain(&mut m, t0 + Duration::from_secs(1));
    assert_eq!(m.current_ip(), None);
    let out = send(&mut m, "AT^NDISDUP=1,1,\"internet\"", t0);
    assert_eq!(out, "\r\nOK\r\n\r\n^NDISSTAT: 1,,,\"IPV4\"\r\n");
    assert!(m.current_ip().is_some());
    assert_eq!(send(&mut m, "AT+FOO", t0), "\r\nCOMMAND NOT SUPPORT\r\n");
}

#[test]
fn registration_urcs_follow_the_modes() {
    let t0 = Instant::now();
    let mut m = Modem::new(settings(Vendor::Generic), t0);
    send(&mut m, "AT+CEREG=2", t0);
    send(&mut m, "AT+CREG=1", t0);
    assert_eq!(
        send(&mut m, "AT+CFUN=4", t0),
        "\r\nOK\r\n\r\n+CREG: 0\r\n\r\n+CEREG: 0\r\n"
    );
    assert_eq!(
        send(&mut m, "AT+CEREG?", t0),
        "\r\n+CEREG: 2,0\r\n\r\nOK\r\n"
    );
    send(&mut m, "AT+CFUN=1", t0);
    assert_eq!(
        drain(&mut m, t0 + Duration::from_secs(1)),
        "\r\n+CREG: 1\r\n\r\n+CEREG: 1,\"1A2B\",\"01A2B3C4\",7\r\n"
    );
    assert_eq!(send(&mut m, "AT+C5GREG?", t0), "\r\nERROR\r\n", "LTE only");
}

#[test]
fn silence_swallows_and_refusals_answer() {
    let t0 = Instant::now();
    let mut m = Modem::new(settings(Vendor::Generic), t0);
    m.refuse("at+cgact", "+CME ERROR: 148");
    assert_eq!(send(&mut m, "AT+CGACT=0,1", t0), "\r\n+CME ERROR: 148\r\n");
    assert!(m.current_ip().is_some(), "a refused command has no effect");
    m.clear_refusals();
    m.set_silent(true);
    assert_eq!(send(&mut m, "AT+CGACT=0,1", t0), "");
    assert!(m.current_ip().is_some());
    m.inject(b"\xff\x00junk", t0);
    assert_eq!(
        m.poll_output(t0),
        Some(Out::Bytes(b"\xff\x00junk".to_vec()))
    );
    assert_eq!(m.commands(), ["AT+CGACT=0,1", "AT+CGACT=0,1"]);
}

/// The shell sleeps until `next_deadline`: one in the past would make it spin.
#[test]
fn deadlines_never_lie_in_the_past() {
    let t0 = Instant::now();
    let noisy = Settings {
        urc_noise: true,
        reply_delay: Duration::from_millis(100),
        ..settings(Vendor::Quectel)
    };
    let mut m = Modem::new(noisy, t0);
    send(&mut m, "AT+CEREG=2", t0);
    send(&mut m, "AT+CFUN=4", t0);
    send(&mut m, "AT+CFUN=1", t0);
    for step in 1..200u64 {
        let now = t0 + Duration::from_millis(step * 37);
        match step {
            50 => m.feed(b"AT+CFUN=4\rAT+CFUN=1\rAT+CFUN=1,1\r", now),
            60 => m.boot(now),
            90 => m.set_silent(true),
            _ => {}
        }
        drain(&mut m, now);
        assert!(m.next_deadline().is_none_or(|d| d > now), "step {step}");
    }
}
