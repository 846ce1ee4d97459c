use super::*;
use crate::modem::hilink::xml::{parse_reply, Reply};

fn code_of(a: &Answer) -> Option<u32> {
    match parse_reply(&a.body).ok()? {
        Reply::Error { code, .. } => Some(code),
        Reply::Response(_) => None,
    }
}

/// A session from the home page: its id and tokens.
fn open(s: &mut Stick, now: Instant) -> (String, Vec<String>) {
    let home = s
        .handle(
            &Ask {
                path: "/",
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    let id = home.set_session.clone().unwrap();
    (id, xml::csrf_meta_tokens(&home.body))
}

fn post<'a>(path: &'a str, session: &'a str, token: &'a str, body: &'a str) -> Ask<'a> {
    Ask {
        post: true,
        path,
        session: Some(session),
        token: Some(token),
        body,
    }
}

#[test]
fn tokens_are_single_use_and_sessions_are_required() {
    let now = Instant::now();
    let mut s = Stick::new(StickConfig::default());
    let no_session = s
        .handle(
            &Ask {
                path: "/api/monitoring/status",
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(code_of(&no_session), Some(125002));
    let (id, tokens) = open(&mut s, now);
    assert_eq!(tokens.len(), 2);
    let body = xml::request(&[("dataswitch", "1")]);
    let first = s
        .handle(
            &post("/api/dialup/mobile-dataswitch", &id, &tokens[0], &body),
            now,
        )
        .unwrap();
    assert_eq!(code_of(&first), None, "{}", first.body);
    assert!(first.token.is_some(), "a new token comes back");
    let replay = s
        .handle(
            &post("/api/dialup/mobile-dataswitch", &id, &tokens[0], &body),
            now,
        )
        .unwrap();
    assert_eq!(code_of(&replay), Some(125002), "a spent token is refused");
    assert_eq!(s.stats.stale_token_refusals, 1);
}

#[test]
fn login_checks_the_type_4_hash_against_the_token_it_came_with() {
    let now = Instant::now();
    let mut s = Stick::new(StickConfig {
        password: Some("pw".into()),
        ..StickConfig::default()
    });
    let (id, tokens) = open(&mut s, now);
    let locked = s
        .handle(
            &Ask {
                path: "/api/device/signal",
                session: Some(&id),
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(code_of(&locked), Some(100003));
    // Hashed with the OTHER token: refused.
    let wrong = xml::request(&[
        ("Username", "admin"),
        ("Password", &login_password("admin", "pw", &tokens[1])),
        ("password_type", "4"),
    ]);
    let a = s
        .handle(&post("/api/user/login", &id, &tokens[0], &wrong), now)
        .unwrap();
    assert_eq!(code_of(&a), Some(108006));
    let t = a.token.unwrap();
    let right = xml::request(&[
        ("Username", "admin"),
        ("Password", &login_password("admin", "pw", &t)),
        ("password_type", "4"),
    ]);
    let a = s
        .handle(&post("/api/user/login", &id, &t, &right), now)
        .unwrap();
    assert_eq!(code_of(&a), None, "{}", a.body);
    let new_id = a.set_session.unwrap();
    assert!(a.token_pair.is_some());
    let signal = s
        .handle(
            &Ask {
                path: "/api/device/signal",
                session: Some(&new_id),
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(code_of(&signal), None);
    assert_eq!((s.stats.logins, s.stats.failed_logins), (1, 1));
}

#[test]
fn a_mode_flip_reattaches_with_a_new_address_unless_stuck_or_told_to_repeat_it() {
    let t0 = Instant::now();
    let mut s = Stick::new(StickConfig::default());
    let first = s.wan_ip(t0).unwrap();
    let (id, tokens) = open(&mut s, t0);
    let lte = xml::request(&[("NetworkMode", "03")]);
    s.handle(&post("/api/net/net-mode", &id, &tokens[0], &lte), t0)
        .unwrap();
    assert_eq!(s.wan_ip(t0), None, "detached while re-attaching");
    let later = t0 + Duration::from_secs(1);
    let second = s.wan_ip(later).unwrap();
    assert_ne!(first, second);

    s.knobs.same_address_next = 1;
    let auto = xml::request(&[("NetworkMode", "00")]);
    s.handle(&post("/api/net/net-mode", &id, &tokens[1], &auto), later)
        .unwrap();
    let later = later + Duration::from_secs(1);
    assert_eq!(
        s.wan_ip(later),
        Some(second),
        "handed back the same address"
    );

    s.knobs.stuck_mode = true;
    let (id, tokens) = open(&mut s, later);
    s.handle(&post("/api/net/net-mode", &id, &tokens[0], &lte), later)
        .unwrap();
    assert_eq!(s.mode(), MODE_AUTO, "a stuck flip does nothing");
    assert_eq!(s.wan_ip(later), Some(second));
}

#[test]
fn a_rebooting_stick_does_not_answer_and_forgets_its_sessions() {
    let t0 = Instant::now();
    let mut s = Stick::new(StickConfig::default());
    let (id, tokens) = open(&mut s, t0);
    let reboot = xml::request(&[("Control", "1")]);
    let a = s
        .handle(&post("/api/device/control", &id, &tokens[0], &reboot), t0)
        .unwrap();
    assert_eq!(code_of(&a), None);
    let ask = Ask {
        path: "/api/monitoring/status",
        session: Some(&id),
        ..Ask::default()
    };
    assert!(s.handle(&ask, t0 + Duration::from_millis(100)).is_none());
    let back = t0 + Duration::from_secs(1);
    assert_eq!(code_of(&s.handle(&ask, back).unwrap()), Some(125002));
    assert!(s.wan_ip(back + Duration::from_secs(1)).is_some());
}

#[test]
fn old_firmware_only_has_ses_tok_info() {
    let now = Instant::now();
    let mut s = Stick::new(StickConfig {
        old_firmware: true,
        ..StickConfig::default()
    });
    let (_, tokens) = open(&mut s, now);
    assert!(tokens.is_empty());
    let token = s
        .handle(
            &Ask {
                path: "/api/webserver/token",
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(
        code_of(&token),
        Some(125002),
        "no session, no such endpoint"
    );
    let info = s
        .handle(
            &Ask {
                path: "/api/webserver/SesTokInfo",
                ..Ask::default()
            },
            now,
        )
        .unwrap();
    let Reply::Response(f) = parse_reply(&info.body).unwrap() else {
        panic!()
    };
    assert!(f.get("SesInfo").unwrap().starts_with("SessionID="));
}
