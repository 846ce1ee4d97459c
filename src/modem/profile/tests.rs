use super::*;

const MINIMAL: &str = r#"
name = "mini"
[queries]
registration = [{ cmd = "AT+CEREG?", parser = "registration" }]
address = [{ cmd = "AT+CGPADDR={cid}", parser = "cgpaddr" }]
[[ladder]]
kind = "soft"
commands = [{ cmd = "AT+CGACT=0,{cid}" }, { cmd = "AT+CGACT=1,{cid}", timeout = "2m" }]
"#;

fn with(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

fn invalid_key(text: &str) -> String {
    match Profile::from_toml(text) {
        Err(ProfileError::Invalid { key, .. }) => key,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn every_builtin_loads() {
    let names: Vec<&str> = Profile::builtin_names().collect();
    assert_eq!(
        names,
        ["generic", "quectel", "simcom", "huawei", "sierra", "fibocom"]
    );
    for name in names {
        let p = Profile::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, name);
        assert!(!p.description.is_empty(), "{name}");
        let kinds: Vec<StepKind> = p.ladder.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [StepKind::Soft, StepKind::Airplane, StepKind::Reset],
            "{name}"
        );
        assert!(
            p.ladder.last().unwrap().commands.iter().any(|c| c.reboots),
            "{name}"
        );
        assert!(p.port.setup.iter().any(|c| c.cmd == "ATE0"), "{name}");
    }
    let all = Profile::builtins().unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all.last().unwrap().name, "generic");
    assert!(matches!(
        Profile::builtin("nokia"),
        Err(ProfileError::UnknownBuiltin(n)) if n == "nokia"
    ));
}

#[test]
fn selects_by_manufacturer_and_model() {
    let all = Profile::builtins().unwrap();
    let pick = |maker: &str, model: &str| Profile::select(&all, maker, model).unwrap().name.clone();
    assert_eq!(pick("Quectel", "EC25"), "quectel");
    assert_eq!(pick("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H"), "simcom");
    assert_eq!(pick("huawei", "ME909s-120"), "huawei");
    assert_eq!(pick("Sierra Wireless, Incorporated", "EM7455"), "sierra");
    assert_eq!(pick("Fibocom", "FM150-AE"), "fibocom");
    // A SIMCom model the profile does not list, and an unknown maker, fall back.
    assert_eq!(pick("SIMCOM INCORPORATED", "SIM800L"), "generic");
    assert_eq!(pick("Telit", "LE910C4"), "generic");
}

#[test]
fn placeholders_are_filled() {
    let huawei = Profile::builtin("huawei").unwrap();
    let vars = huawei.vars("internet");
    let ladder = huawei.ladder_for(&vars);
    assert_eq!(ladder[0].commands[1].cmd, "AT^NDISDUP=1,1,\"internet\"");
    assert_eq!(ladder[1].redial[0].cmd, "AT^NDISDUP=1,1,\"internet\"");
    // A quote in the APN cannot close the argument early.
    let vars = Vars {
        cid: 3,
        apn: "evil\",\"x\r\nAT+CFUN=0".into(),
    };
    assert_eq!(
        vars.render("AT^NDISDUP={cid},1,\"{apn}\""),
        "AT^NDISDUP=3,1,\"evil,xAT+CFUN=0\""
    );
    let q = &huawei.queries.address[1];
    assert_eq!(q.render(&huawei.vars("")), "AT+CGPADDR=1");
    let setup = huawei.setup_for(&huawei.vars(""));
    assert_eq!(setup[0].cmd, "ATE0");
}

#[test]
fn defaults() {
    let p = Profile::from_toml(MINIMAL).unwrap();
    assert_eq!(p.port.cid, 1);
    assert!(p.is_fallback());
    let step = &p.ladder[0];
    assert_eq!(step.name, "soft");
    assert_eq!(step.commands[0].timeout, Duration::from_secs(5));
    assert_eq!(step.commands[1].timeout, Duration::from_secs(120));
    assert_eq!(step.wait_address, Duration::from_secs(30));
    assert_eq!(step.wait_registration, None);
    assert_eq!((step.repeat, step.settle), (0, Duration::ZERO));
}

#[test]
fn errors_name_the_key() {
    assert_eq!(
        invalid_key(&MINIMAL.replace("name = \"mini\"", "name = \"\"")),
        "name"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("timeout = \"2m\"", "timeout = \"0s\"")),
        "ladder[0].commands[1].timeout"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("AT+CGACT=0,{cid}", "AT+CGACT=0,{context}")),
        "ladder[0].commands[0].cmd"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("AT+CGACT=0,{cid}", "CGACT=0,1")),
        "ladder[0].commands[0].cmd"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("parser = \"cgpaddr\"", "parser = \"csq\"")),
        "queries.address[0].parser"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace(
            "address = [{ cmd = \"AT+CGPADDR={cid}\", parser = \"cgpaddr\" }]",
            "address = []"
        )),
        "queries.address"
    );
    assert_eq!(
        invalid_key(&with(
            "[port]\nsetup = [{ cmd = \"ATE0\", timeout = \"0ms\" }]"
        )),
        "port.setup[0].timeout"
    );
    let no_commands = r#"
name = "x"
[queries]
registration = [{ cmd = "AT+CEREG?", parser = "registration" }]
address = [{ cmd = "AT+CGPADDR=1", parser = "cgpaddr" }]
[[ladder]]
kind = "reset"
commands = []
"#;
    assert_eq!(invalid_key(no_commands), "ladder[0].commands");
    let no_ladder = r#"
name = "x"
ladder = []
[queries]
registration = [{ cmd = "AT+CEREG?", parser = "registration" }]
address = [{ cmd = "AT+CGPADDR=1", parser = "cgpaddr" }]
"#;
    assert_eq!(invalid_key(no_ladder), "ladder");
    let zero_wait = MINIMAL.replace("kind = \"soft\"", "kind = \"soft\"\nwait_address = \"0s\"");
    assert_eq!(invalid_key(&zero_wait), "ladder[0].wait_address");
}

#[test]
fn durations_use_the_config_grammar_and_have_a_ceiling() {
    // One grammar with the config file: a bare number is seconds, "2 minutes" is two minutes.
    let p = Profile::from_toml(&MINIMAL.replace("timeout = \"2m\"", "timeout = 120")).unwrap();
    assert_eq!(p.ladder[0].commands[1].timeout, Duration::from_secs(120));
    let p = Profile::from_toml(&MINIMAL.replace("timeout = \"2m\"", "timeout = \"2 minutes\""))
        .unwrap();
    assert_eq!(p.ladder[0].commands[1].timeout, Duration::from_secs(120));
    // A duration that parses but would put a deadline centuries away is refused, key named.
    assert_eq!(
        invalid_key(&MINIMAL.replace("timeout = \"2m\"", "timeout = \"300000000000y\"")),
        "ladder[0].commands[1].timeout"
    );
    let long_settle = MINIMAL.replace("kind = \"soft\"", "kind = \"soft\"\nsettle = \"2h\"");
    assert_eq!(invalid_key(&long_settle), "ladder[0].settle");
}

#[test]
fn toml_errors_point_at_the_value() {
    let cases = [
        (
            MINIMAL.replace("timeout = \"2m\"", "timeout = \"2 fortnights\""),
            "2 fortnights",
        ),
        (
            MINIMAL.replace("timeout = \"2m\"", "timeout = 1.5"),
            "timeout",
        ),
        (
            MINIMAL.replace("kind = \"soft\"", "kind = \"gentle\""),
            "gentle",
        ),
        (with("[port]\nbaud = 115200"), "baud"),
        (
            MINIMAL.replace("parser = \"cgpaddr\"", "parser = \"cgpadr\""),
            "cgpadr",
        ),
        ("name = [".to_string(), "line 1"),
    ];
    for (text, needle) in cases {
        match Profile::from_toml(&text) {
            Err(ProfileError::Toml(msg)) => assert!(msg.contains(needle), "{needle}: {msg}"),
            other => panic!("{needle}: expected a TOML error, got {other:?}"),
        }
    }
}

#[test]
fn restore_is_read_checked_and_defaulted() {
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).unwrap();
        let r = p.restore_for(&p.vars("internet"));
        assert_eq!(r.commands[0].cmd, "AT+CFUN=1", "{name}");
        assert!(r.wait_registration.is_some(), "{name}");
        assert_eq!(r.redial.len(), 1, "{name}");
        assert!(
            r.commands.iter().chain(&r.redial).all(|c| c.ignore_error),
            "{name}: a restore runs whatever the state, so errors must not stop it"
        );
        assert!(
            !r.redial[0].cmd.contains('{'),
            "{name}: placeholders filled"
        );
    }
    // No [restore]: the 3GPP one.
    let p = Profile::from_toml(MINIMAL).unwrap();
    assert_eq!(p.restore, Restore::default());
    assert_eq!(p.restore_for(&p.vars("")).redial[0].cmd, "AT+CGACT=1,1");
    let own = Profile::from_toml(&with(
        "[restore]\ncommands = [{ cmd = \"AT+CFUN=1\" }]\nredial = []\n",
    ))
    .unwrap();
    assert_eq!(own.restore.wait_registration, None);
    assert!(own.restore.redial.is_empty());
    assert_eq!(
        invalid_key(&with("[restore]\nwait_registration = \"0s\"\n")),
        "restore.wait_registration"
    );
    assert_eq!(
        invalid_key(&with("[restore]\nredial = [{ cmd = \"CGACT=1\" }]\n")),
        "restore.redial[0].cmd"
    );
    assert!(matches!(
        Profile::from_toml(&with("[restore]\nsettle = \"1s\"\n")),
        Err(ProfileError::Toml(_))
    ));
}

#[test]
fn scaling_never_panics() {
    assert_eq!(scale_duration(Duration::MAX, 1.0), Duration::MAX);
    assert_eq!(scale_duration(Duration::MAX, 2.0), Duration::MAX);
    assert_eq!(
        scale_duration(Duration::from_secs(10), 0.5),
        Duration::from_secs(5)
    );
    assert_eq!(
        scale_duration(Duration::from_secs(10), f64::NAN),
        Duration::from_secs(10)
    );
    assert_eq!(
        scale_duration(Duration::from_secs(10), -1.0),
        Duration::from_secs(10)
    );
    let huge = Profile::from_toml(&with(
        "[restore]\nwait_registration = \"18446744073709551615s\"\n",
    ))
    .unwrap();
    assert_eq!(
        huge.scaled(1.0).restore.wait_registration,
        Some(Duration::MAX)
    );
}
