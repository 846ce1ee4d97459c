#![allow(clippy::unwrap_used)]

use super::*;

const MINIMAL: &str = "[wireguard]\nendpoint_host = \"203.0.113.10\"\n";

fn problems(toml: &str) -> Vec<Problem> {
    Config::from_toml_str_only(toml).unwrap_err().problems
}

#[test]
fn defaults_match_the_design() {
    let c = Config::from_toml_str_only(MINIMAL).unwrap();
    assert_eq!(c.api.listen, vec!["0.0.0.0:80".parse().unwrap()]);
    assert_eq!(c.wireguard.listen_port, 55555);
    assert_eq!(c.wireguard.persistent_keepalive, 25);
    assert_eq!(c.wireguard.tun, "ew0");
    assert_eq!(c.vpn.idle_release.get(), Duration::from_secs(600));
    assert_eq!(c.vpn.pools.len(), 1);
    assert_eq!(c.vpn.pools[0].keys, 10);
    assert_eq!(c.dongle.heartbeat_timeout.get(), Duration::from_secs(600));
    assert_eq!(c.vm.libvirt_uri, "qemu:///system");
}

#[test]
fn the_shipped_default_config_is_valid() {
    let text = include_str!("../../config/edgeward.toml");
    let c = Config::from_toml_str_only(text).unwrap();
    assert_eq!(c.wireguard.endpoint_host, "203.0.113.10");
    let demo = include_str!("../../config/demo.toml");
    Config::from_toml_str_only(demo).unwrap();
}

#[test]
fn unknown_keys_are_named() {
    let p = problems("[wireguard]\nendpoint_host = \"h\"\nlisten_prot = 1\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "wireguard.listen_prot");
    assert!(p[0].message.contains("unknown key"), "{}", p[0].message);
    let p = problems("[wireguard]\nendpoint_host = \"h\"\n[nonsense]\nx = 1\n");
    assert_eq!(p[0].key, "nonsense");
    let p = problems(
        "[wireguard]\nendpoint_host = \"h\"\n[[vpn.pool]]\nsubnet=\"10.9.0.0/24\"\nkeys=2\nkey=3\n",
    );
    assert_eq!(p[0].key, "vpn.pool[0].key");
}

#[test]
fn wrong_types_are_named() {
    let p = problems("[wireguard]\nendpoint_host = \"h\"\nlisten_port = \"x\"\n");
    assert_eq!(p[0].key, "wireguard.listen_port");
    let p = problems("[wireguard]\nendpoint_host = \"h\"\n[vpn]\nidle_release = \"soon\"\n");
    assert_eq!(p[0].key, "vpn.idle_release");
    assert!(p[0].message.contains("soon"), "{}", p[0].message);
    let p = problems("[wireguard]\nendpoint_host = \"h\"\n[api]\nlisten = [\"nowhere\"]\n");
    assert!(p[0].key.starts_with("api.listen"), "{:?}", p);
}

#[test]
fn humane_durations() {
    let c = Config::from_toml_str_only(
        "[wireguard]\nendpoint_host=\"h\"\n[vpn]\nidle_release=\"1h 30m\"\n[dongle]\nheartbeat_timeout=45\n",
    )
    .unwrap();
    assert_eq!(c.vpn.idle_release.get(), Duration::from_secs(5400));
    assert_eq!(c.dongle.heartbeat_timeout.get(), Duration::from_secs(45));
}

#[test]
fn pools_are_validated() {
    let p = problems(
        "[wireguard]\nendpoint_host=\"h\"\n[[vpn.pool]]\nsubnet=\"10.8.0.0/29\"\nkeys=6\n[[vpn.pool]]\nsubnet=\"10.8.0.0/30\"\nkeys=0\n",
    );
    let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"vpn.pool[0].keys"), "{p:?}");
    assert!(keys.contains(&"vpn.pool[1].keys"), "{p:?}");
    assert!(keys.contains(&"vpn.pool[1].subnet"), "{p:?}");
    let p = problems("[[vpn.pool]]\nsubnet=\"10.8.0.0/24\"\nkeys=5\n");
    assert_eq!(p[0].key, "vpn.pool[0].endpoint_host");
    let p = problems(
        "[wireguard]\nendpoint_host=\"h\"\n[[vpn.pool]]\nsubnet=\"10.8.0.1/24\"\nkeys=5\n",
    );
    assert!(p[0].message.contains("10.8.0.0/24"), "{p:?}");
}

#[test]
fn per_pool_endpoint_host() {
    let c = Config::from_toml_str_only(
        "[[vpn.pool]]\nsubnet=\"10.8.0.0/24\"\nkeys=5\nendpoint_host=\"198.51.100.7\"\n",
    )
    .unwrap();
    assert_eq!(c.pool_endpoint_host(&c.vpn.pools[0]), "198.51.100.7");
}

#[test]
fn slot_capacity_leaves_room_for_server_network_and_broadcast() {
    assert_eq!(slot_capacity("10.8.0.0/24".parse().unwrap()), 253);
    assert_eq!(slot_capacity("10.8.0.0/29".parse().unwrap()), 5);
    assert_eq!(slot_capacity("10.8.0.0/30".parse().unwrap()), 1);
}

#[test]
fn tls_needs_cert_and_key() {
    let p = problems("[wireguard]\nendpoint_host=\"h\"\n[api]\ntls_listen=[\"127.0.0.1:8443\"]\n");
    assert_eq!(p.len(), 2);
}

#[test]
fn secrets_do_not_print() {
    let c = Config::from_toml_str_only(
        "[wireguard]\nendpoint_host=\"h\"\n[auth]\nadmin_password=\"hunter2hunter2\"\n",
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn modem_numbers_are_unique() {
    let p = problems(
        "[wireguard]\nendpoint_host=\"h\"\n[[modem]]\nnumber=17\nport=\"/dev/a\"\nprofile=\"quectel\"\nnetdev=\"wwan0\"\n[[modem]]\nnumber=17\nport=\"/dev/b\"\nprofile=\"quectel\"\nnetdev=\"wwan1\"\n",
    );
    assert_eq!(p[0].key, "modem[1].number");
}

fn keys(p: &[Problem]) -> Vec<&str> {
    p.iter().map(|p| p.key.as_str()).collect()
}

fn problem<'a>(p: &'a [Problem], key: &str) -> &'a Problem {
    p.iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem for {key} in {p:#?}"))
}

#[test]
fn a_duration_that_would_overflow_a_deadline_is_refused_with_its_key() {
    let p = problems(&format!(
        "{MINIMAL}[dongle]\ntoggle_timeout = \"300000000000y\"\n"
    ));
    assert_eq!(keys(&p), ["dongle.toggle_timeout"]);
    assert!(p[0].message.contains("between 10s and 1h"), "{}", p[0]);
}

#[test]
fn every_duration_has_a_range() {
    for (section, key, too_short, too_long, fine) in [
        ("vpn", "idle_release", "29s", "31d", "30d"),
        ("dongle", "heartbeat_timeout", "29s", "25h", "1d"),
        ("dongle", "toggle_timeout", "9s", "61m", "10s"),
        ("store", "history_retention", "59m", "11y", "10y"),
    ] {
        let dotted = format!("{section}.{key}");
        for bad in [too_short, too_long, "0s"] {
            let p = problems(&format!("{MINIMAL}[{section}]\n{key} = \"{bad}\"\n"));
            assert_eq!(keys(&p), [dotted.as_str()], "{bad}");
            assert!(p[0].message.contains("out of range"), "{}", p[0]);
        }
        Config::from_toml_str_only(&format!("{MINIMAL}[{section}]\n{key} = \"{fine}\"\n"))
            .unwrap_or_else(|e| panic!("{dotted} = {fine}: {e}"));
    }
}

#[test]
fn every_count_has_a_range() {
    for (section, key, bad, fine) in [
        ("api", "max_body_bytes", "1023", "16777216"),
        ("api", "max_body_bytes", "16777217", "1024"),
        ("api", "max_connections", "0", "1"),
        ("api", "max_connections", "65536", "65535"),
        ("wireguard", "persistent_keepalive", "3601", "0"),
        ("dongle", "max_parallel_toggles", "0", "1"),
        ("dongle", "max_parallel_toggles", "257", "256"),
    ] {
        let dotted = format!("{section}.{key}");
        // MINIMAL ends inside [wireguard].
        let header = if section == "wireguard" {
            String::new()
        } else {
            format!("[{section}]\n")
        };
        let p = problems(&format!("{MINIMAL}{header}{key} = {bad}\n"));
        assert_eq!(keys(&p), [dotted.as_str()], "{bad}");
        assert!(p[0].message.contains("out of range"), "{}", p[0]);
        Config::from_toml_str_only(&format!("{MINIMAL}{header}{key} = {fine}\n"))
            .unwrap_or_else(|e| panic!("{dotted} = {fine}: {e}"));
    }
    let p = problems(&format!(
        "{MINIMAL}[[vpn.pool]]\nsubnet = \"10.16.0.0/12\"\nkeys = 70000\n"
    ));
    assert!(
        problem(&p, "vpn.pool[0].keys")
            .message
            .contains("at most 65536"),
        "{p:?}"
    );
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    let p = problems(&format!(
        "{MINIMAL}listen_prot = 1\n[api]\nlisen = []\n[nonsense]\nx = 1\n\
         [[modem]]\nnumber = 17\nport = \"/dev/a\"\nprofile = \"quectel\"\nnetdev = \"w17\"\n\
         [[modem]]\nnumber = 18\nport = \"/dev/b\"\nprofile = \"quectel\"\nnetdev = \"w18\"\n\
         [[modem]]\nnumber = 19\nport = \"/dev/c\"\nprofile = \"quectel\"\nnetdev = \"w19\"\nfoo = 1\n"
    ));
    let mut got = keys(&p);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "api.lisen",
            "modem[2].foo",
            "nonsense",
            "wireguard.listen_prot"
        ]
    );
    assert!(problem(&p, "wireguard.listen_prot")
        .message
        .contains("did you mean `listen_port`?"));
}

#[test]
fn a_type_error_does_not_hide_the_other_problems() {
    let p = problems(&format!(
        "{MINIMAL}listen_port = \"x\"\n[api]\nmax_connections = 0\nlisten = [\"127.0.0.1:80\", \"nowhere\", \"neither\"]\n\
         [vpn]\nidle_release = \"soon\"\n[[vpn.pool]]\nsubnet = \"10.8.0.0/24\"\nkeys = \"many\"\n\
         [[vpn.pool]]\nsubnet = \"10.9.0.0/31\"\nkeys = 1\n\
         [dongle]\ntoggle_timeout = \"300000000000y\"\nbogus = true\n"
    ));
    let mut got = keys(&p);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "api.listen[1]",
            "api.listen[2]",
            "api.max_connections",
            "dongle.bogus",
            "dongle.toggle_timeout",
            "vpn.idle_release",
            "vpn.pool[0].keys",
            "vpn.pool[1].subnet",
            "wireguard.listen_port",
        ],
        "{p:#?}"
    );
    assert!(problem(&p, "vpn.idle_release").message.contains("soon"));
    // The pool after the one whose `keys` did not read is still checked...
    assert!(problem(&p, "vpn.pool[1].subnet")
        .message
        .contains("too small"));
    // ...and the placeholder that stood in for the unreadable `keys` draws no second scolding.
    assert_eq!(p.iter().filter(|p| p.key == "vpn.pool[0].keys").count(), 1);
}

#[test]
fn every_missing_required_key_is_reported_and_other_tables_still_checked() {
    let p = problems(&format!(
        "{MINIMAL}[[modem]]\nnumber = 17\n\
         [[modem]]\nnumber = 300\nport = \"/dev/b\"\nprofile = \"nokia\"\nnetdev = \"w\"\n"
    ));
    let mut got = keys(&p);
    got.sort_unstable();
    assert_eq!(
        got,
        // port and netdev may be left out when usb_path is given (self-healing, issue 9), so
        // in a table that did not read (no profile) they are not reported.
        ["modem[0].profile", "modem[1].number", "modem[1].profile",],
        "{p:#?}"
    );
    assert!(problem(&p, "modem[0].profile").message.contains("required"));
    // `port` is optional to read (HiLink sticks have none); an AT modem without one is
    // refused by validation.
    let p = problems(&format!(
        "{MINIMAL}[[modem]]\nnumber = 17\nprofile = \"quectel\"\nnetdev = \"w\"\n"
    ));
    assert_eq!(keys(&p), ["modem[0].port"], "{p:#?}");
    assert!(problem(&p, "modem[0].port")
        .message
        .contains("serial AT port"));
}

#[test]
fn a_bad_first_list_entry_is_reported_and_the_list_falls_back() {
    let p = problems(&format!(
        "{MINIMAL}[api]\nlisten = [\"nowhere\", \"127.0.0.1:1\"]\n"
    ));
    assert_eq!(keys(&p), ["api.listen[0]"]);
    assert!(p[0].message.contains("other entries"), "{}", p[0]);
}

fn pool_problems(pools: &[&str], modems: &[u32]) -> Vec<Problem> {
    let mut toml = MINIMAL.to_owned();
    for subnet in pools {
        toml.push_str(&format!("[[vpn.pool]]\nsubnet = \"{subnet}\"\nkeys = 1\n"));
    }
    for n in modems {
        toml.push_str(&format!(
            "[[modem]]\nnumber = {n}\nport = \"/dev/m{n}\"\nprofile = \"generic\"\nnetdev = \"wwan{n}\"\n"
        ));
    }
    match Config::from_toml_str_only(&toml) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

#[test]
fn pools_that_make_no_sense_are_refused_with_the_key_named() {
    for (subnet, why) in [
        ("10.8.0.0/31", "too small"),
        ("10.8.0.1/32", "too small"),
        ("0.0.0.0/0", "every IPv4 address"),
        ("10.0.0.0/7", "too large"),
        ("127.0.0.0/24", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("169.254.0.0/16", "link-local"),
        ("10.8.0.5/24", "did you mean 10.8.0.0/24?"),
    ] {
        let p = pool_problems(&["10.9.0.0/24", subnet], &[]);
        assert_eq!(keys(&p), ["vpn.pool[1].subnet"], "{subnet}: {p:?}");
        assert!(p[0].message.contains(why), "{subnet}: {}", p[0]);
    }
    assert!(pool_problems(&["10.9.0.0/30", "192.168.5.0/24"], &[]).is_empty());
}

#[test]
fn overlapping_pools_and_dongle_subnets_are_refused() {
    let p = pool_problems(&["10.9.0.0/16", "10.9.4.0/24"], &[]);
    assert_eq!(keys(&p), ["vpn.pool[1].subnet"]);
    assert!(p[0].message.contains("overlaps vpn.pool[0]"), "{}", p[0]);

    let p = pool_problems(&["10.9.0.0/24", "10.8.17.0/24"], &[17, 18]);
    assert_eq!(keys(&p), ["vpn.pool[1].subnet"]);
    assert!(
        p[0].to_string().starts_with(
            "vpn.pool[1].subnet: 10.8.17.0/24 overlaps the subnet of dongle 17 ([[modem]] number = 17"
        ),
        "{}",
        p[0]
    );
    let p = pool_problems(&["10.8.0.0/16"], &[17, 18]);
    assert!(p[0].message.contains("dongles 17, 18"), "{}", p[0]);
    // The default pool 10.8.0.0/24 is dongle 0's subnet.
    let p = pool_problems(&[], &[0]);
    assert_eq!(keys(&p), ["vpn.pool[0].subnet"], "{p:?}");
    assert!(pool_problems(&["10.9.0.0/24"], &[0, 17, 255]).is_empty());
}

#[test]
fn access_lists_are_checked() {
    let p = problems(&format!(
        "{MINIMAL}[api]\nagent_allow = [\"10.1.2.3/8\"]\nadmin_allow = [\"192.0.2.0/24\", \"0.0.0.0/0\"]\ntrusted_proxies = [\"::/0\"]\n"
    ));
    let mut got = keys(&p);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "api.admin_allow[1]",
            "api.agent_allow[0]",
            "api.trusted_proxies[0]"
        ],
        "{p:#?}"
    );
    assert!(problem(&p, "api.agent_allow[0]")
        .message
        .contains("10.0.0.0/8"));
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[api]\nadmin_allow = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n"
    ))
    .unwrap();
    assert_eq!(c.api.admin_allow.len(), 2);
    let p = problems(&format!("{MINIMAL}[api]\nadmin_allow = [\"not-a-net\"]\n"));
    assert_eq!(keys(&p), ["api.admin_allow[0]"]);
}

#[test]
fn history_retention_is_read() {
    let c = Config::from_toml_str_only(&format!("{MINIMAL}[store]\nhistory_retention = \"90d\"\n"))
        .unwrap();
    assert_eq!(
        c.store.history_retention.get(),
        Duration::from_secs(90 * 86_400)
    );
    let c = Config::from_toml_str_only(MINIMAL).unwrap();
    assert_eq!(
        c.store.history_retention.get(),
        Duration::from_secs(30 * 86_400)
    );
}

#[test]
fn syntax_errors_are_reported() {
    let p = problems("[wireguard\nendpoint_host = 1\n");
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn dongles_need_the_public_host_and_the_heartbeat_timeout_defaults_to_ten_minutes() {
    let modem = "[[modem]]\nnumber = 17\nport = \"/dev/ttyUSB2\"\nprofile = \"quectel\"\nnetdev = \"wwan0\"\n";
    let p = problems(&format!("[vpn]\npool = []\n{modem}"));
    assert!(
        p.iter()
            .any(|p| p.key == "wireguard.endpoint_host" && p.message.contains("dongles")),
        "{p:?}"
    );
    let c = Config::from_toml_str_only(&format!("{MINIMAL}{modem}")).unwrap();
    assert_eq!(
        c.dongle.heartbeat_timeout.get(),
        std::time::Duration::from_secs(600)
    );
}

#[test]
fn a_port_other_than_55555_with_dongles_is_a_warning() {
    let modem = "[[modem]]\nnumber = 17\nport = \"/dev/ttyUSB2\"\nprofile = \"quectel\"\nnetdev = \"wwan0\"\n";
    let c = Config::from_toml_str_only(&format!("{MINIMAL}{modem}")).unwrap();
    assert!(c.warnings().is_empty());
    let c = Config::from_toml_str_only(&format!("{MINIMAL}listen_port = 51820\n{modem}")).unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("51820") && w[0].contains("55555"), "{w:?}");
    // no dongles, no warning
    let c = Config::from_toml_str_only(&format!("{MINIMAL}listen_port = 51820\n")).unwrap();
    assert!(c.warnings().is_empty());
}

// --- HiLink sticks (issue 9) ---

#[test]
fn a_hilink_stick_needs_no_port_and_gets_the_factory_defaults() {
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[[modem]]\nnumber = 18\nprofile = \"hilink\"\nnetdev = \"enx1\"\nhilink_password = \"s3cret\"\n"
    ))
    .unwrap();
    let m = &c.modems[0];
    assert!(m.is_hilink());
    assert_eq!(m.hilink_url(), "http://192.168.8.1");
    assert_eq!(
        m.egress_gateway(),
        Some(std::net::Ipv4Addr::new(192, 168, 8, 1))
    );
    assert!(
        !format!("{m:?}").contains("s3cret"),
        "the password never prints"
    );
    assert_eq!(c.dongle.toggle_timeout.get(), Duration::from_secs(80));
}

#[test]
fn hilink_keys_are_checked_with_clear_messages() {
    let p = problems(&format!(
        "{MINIMAL}[[modem]]\nnumber = 18\nprofile = \"hilink\"\nnetdev = \"e1\"\nport = \"/dev/ttyUSB0\"\nhilink_url = \"https://192.168.8.1\"\nhilink_username = \"\"\n\
         [[modem]]\nnumber = 19\nprofile = \"hilink\"\nnetdev = \"e2\"\nhilink_url = \"http://192.168.8.1/html/home.html\"\n\
         [[modem]]\nnumber = 20\nport = \"/dev/a\"\nprofile = \"generic\"\nnetdev = \"w\"\nhilink_password = \"x\"\n"
    ));
    assert_eq!(
        keys(&p),
        [
            "modem[0].port",
            "modem[0].hilink_url",
            "modem[0].hilink_username",
            "modem[1].hilink_url",
            "modem[2].hilink_password",
        ],
        "{p:#?}"
    );
    assert!(problem(&p, "modem[0].port").message.contains("no AT port"));
    assert!(problem(&p, "modem[0].hilink_url").message.contains("http"));
    assert!(problem(&p, "modem[1].hilink_url")
        .message
        .contains("no path"));
    assert!(problem(&p, "modem[2].hilink_password")
        .message
        .contains("only used with profile = \"hilink\""));
    let p = problems(&format!(
        "{MINIMAL}[[modem]]\nnumber = 18\nprofile = \"hilink\"\nnetdev = \"e1\"\nhilink_url = \"http://admin:Secr3t@192.168.8.1\"\n"
    ));
    assert_eq!(keys(&p), ["modem[0].hilink_url"]);
    assert!(!p[0].message.contains("Secr3t"), "{}", p[0]);
}
// --- end HiLink ---
// --- self-healing (issue 9, heal) ---
#[test]
fn self_healing_keys_have_defaults_and_ranges() {
    let c = Config::from_toml_str_only(MINIMAL).unwrap();
    assert_eq!(c.dongle.probe_every.get(), Duration::from_secs(60));
    assert_eq!(c.dongle.failures_before_recovery, 2);
    assert_eq!(c.dongle.recovery_cooldown.get(), Duration::from_secs(180));
    assert_eq!(c.dongle.max_parallel_recoveries, 2);
    assert!(!c.dongle.usb_controller_reset);
    assert_eq!(c.dongle.sysfs_root, std::path::PathBuf::from("/sys"));
    let p = problems(&format!(
        "{MINIMAL}[dongle]\nprobe_every = \"1s\"\nfailures_before_recovery = 0\nrecovery_cooldown = \"2d\"\nmax_parallel_recoveries = 0\nsysfs_root = \"sys\"\n"
    ));
    assert_eq!(
        keys(&p),
        vec![
            "dongle.probe_every",
            "dongle.failures_before_recovery",
            "dongle.recovery_cooldown",
            "dongle.max_parallel_recoveries",
            "dongle.sysfs_root",
        ]
    );
}

#[test]
fn a_usb_path_stands_in_for_port_and_netdev_and_is_checked() {
    let modem =
        |extra: &str| format!("{MINIMAL}[[modem]]\nnumber = 1\nprofile = \"generic\"\n{extra}");
    let c = Config::from_toml_str_only(&modem("usb_path = \"1-1.3\"\n")).unwrap();
    assert_eq!(c.modems[0].usb_path.as_deref(), Some("1-1.3"));
    assert!(c.modems[0].netdev.is_empty());
    let p = problems(&modem(""));
    assert!(problem(&p, "modem[0].port").message.contains("usb_path"));
    assert!(problem(&p, "modem[0].netdev").message.contains("usb_path"));
    let p = problems(&modem("usb_path = \"../../etc\"\n"));
    assert!(problem(&p, "modem[0].usb_path")
        .message
        .contains("not a USB path"));
    let two = format!(
        "{MINIMAL}[[modem]]\nnumber = 1\nprofile = \"generic\"\nusb_path = \"1-2\"\n\
         [[modem]]\nnumber = 2\nprofile = \"generic\"\nusb_path = \"1-2\"\n"
    );
    let p = problems(&two);
    assert!(problem(&p, "modem[1].usb_path")
        .message
        .contains("two modems"));
}
// --- end self-healing ---

#[test]
fn allowed_origins_and_metrics_token() {
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[api]\nallowed_origins = [\"https://app.example\", \"http://localhost:3000/\", \"*\"]\nmetrics_token = \"m\"\n"
    ))
    .unwrap();
    assert_eq!(c.api.allowed_origins.len(), 3);
    assert_eq!(c.api.metrics_token.as_ref().map(Secret::expose), Some("m"));
    let p = problems(&format!(
        "{MINIMAL}[api]\nallowed_origins = [\"app.example\", \"https://a.example/path\"]\nmetrics_token = \" \"\n"
    ));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api.metrics_token",
            "api.allowed_origins[0]",
            "api.allowed_origins[1]"
        ]
    );
}

#[test]
fn auth_defaults_are_the_services() {
    let c = Config::from_toml_str_only(MINIMAL).unwrap();
    let s = c.auth.settings();
    let d = crate::auth::AuthSettings::default();
    assert_eq!(s.access_ttl, Duration::from_secs(900));
    assert_eq!(s.refresh_ttl, Duration::from_secs(604_800));
    assert_eq!(
        (s.refresh_grace, s.session_ttl, s.hash_concurrency),
        (d.refresh_grace, d.session_ttl, d.hash_concurrency)
    );
    assert_eq!(s.limits, d.limits);
    assert_eq!(s.password_cost, crate::auth::password::Cost::ROUTER);
    assert!(c.auth.admin_password.is_none());
}

#[test]
fn auth_knobs_are_read_and_range_checked() {
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[auth]\naccess_ttl = \"5m\"\nrefresh_grace = 0\nlockout_after = 3\nlogin_per_minute = 7\n"
    ))
    .unwrap();
    let s = c.auth.settings();
    assert_eq!(s.access_ttl, Duration::from_secs(300));
    assert_eq!(s.refresh_grace, Duration::ZERO);
    assert_eq!(s.limits.free_failures, 3);
    assert_eq!(s.limits.login.per_period, 7);
    let p = problems(&format!(
        "{MINIMAL}[auth]\naccess_ttl = \"2d\"\nrefresh_grace = \"5m\"\nhash_concurrency = 0\n\
         lockout_base = \"10m\"\nlockout_max = \"1m\"\nrate_limit_keys = 1\nadmin_password = \"        \"\n"
    ));
    let mut k = keys(&p);
    k.sort_unstable();
    assert_eq!(
        k,
        [
            "auth.access_ttl",
            "auth.admin_password",
            "auth.hash_concurrency",
            "auth.lockout_max",
            "auth.rate_limit_keys",
            "auth.refresh_grace",
        ],
        "{p:?}"
    );
    assert!(problem(&p, "auth.refresh_grace")
        .message
        .contains("between 0s and 1m"));
    let p = problems(&format!(
        "{MINIMAL}[auth]\naccess_ttl = \"1h\"\nrefresh_ttl = \"1h\"\nsession_ttl = \"1m\"\n"
    ));
    assert_eq!(keys(&p), ["auth.session_ttl"], "{p:?}");
    let p = problems(&format!(
        "{MINIMAL}[auth]\naccess_ttl = \"2h\"\nrefresh_ttl = \"1h\"\n"
    ));
    assert_eq!(keys(&p), ["auth.access_ttl"], "{p:?}");
    // The signing secret is not a config key.
    let p = problems(&format!("{MINIMAL}[auth]\nsecret = \"x\"\n"));
    assert_eq!(keys(&p), ["auth.secret"]);
}

#[test]
fn vm_defaults_and_checks() {
    let c = Config::from_toml_str_only(MINIMAL).unwrap();
    let s = c.vm.settings();
    assert_eq!(s.libvirt_uri, "qemu:///system");
    assert_eq!(
        s.storage_dir,
        std::path::Path::new("/var/lib/libvirt/images/edgeward")
    );
    assert_eq!(s.network, "default");
    assert_eq!(
        (
            s.default_quota.max_vms,
            s.default_quota.max_cpu,
            s.default_quota.max_memory
        ),
        (10, 20, 40960)
    );
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[vm]\nlibvirt_uri = \"test:///tmp/n.xml\"\nstorage_dir = \"/srv/vms\"\nnetwork = \"lan0\"\n\
         stop_timeout = \"5s\"\n[vm.default_quota]\nmax_vms = 2\nmax_cpu = 4\nmax_memory = 4096\n"
    ))
    .unwrap();
    let s = c.vm.settings();
    assert_eq!(s.default_quota.max_memory, 4096);
    assert_eq!(s.stop_timeout, Duration::from_secs(5));
    let p = problems(&format!(
        "{MINIMAL}[vm]\nlibvirt_uri = \"qemu system\"\nstorage_dir = \"images\"\nnetwork = \"x'/>\"\n\
         reconcile_interval = \"2h\"\nconsole_idle_timeout = \"1s\"\nconsole_sessions_per_user = 0\n\
         sample_every = \"10m\"\n\
         [vm.default_quota]\nmax_vms = 100000\n"
    ));
    assert_eq!(
        keys(&p),
        [
            "vm.libvirt_uri",
            "vm.storage_dir",
            "vm.network",
            "vm.default_quota.max_vms",
            "vm.reconcile_interval",
            "vm.console_idle_timeout",
            "vm.console_sessions_per_user",
            "vm.sample_every"
        ],
        "{p:?}"
    );
    let p = problems(&format!("{MINIMAL}[vm]\nuri = \"x\"\n"));
    assert_eq!(keys(&p), ["vm.uri"]);
}

#[test]
fn vm_server_maps_default_and_are_checked() {
    use crate::vm::xml::NicSource;
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[vm]\nstorage_dir = \"/srv/vms\"\nnetwork = \"lan0\"\n"
    ))
    .unwrap();
    let s = c.vm.settings();
    // local and local-lvm are storage_dir, vmbr0 is [vm] network, no templates.
    assert_eq!(
        s.datastores.into_iter().collect::<Vec<_>>(),
        [
            ("local".to_owned(), std::path::PathBuf::from("/srv/vms")),
            ("local-lvm".to_owned(), std::path::PathBuf::from("/srv/vms"))
        ]
    );
    assert_eq!(
        s.bridges.into_iter().collect::<Vec<_>>(),
        [("vmbr0".to_owned(), NicSource::Network("lan0".into()))]
    );
    assert!(s.templates.is_empty());
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[vm.datastores]\nlocal-lvm = \"/fast\"\n\"local-lvm:ssd\" = \"/nvme\"\n\
         [vm.bridges]\nvmbr0 = \"bridge:br0\"\nvmbr1 = \"network:isolated\"\n\
         [vm.templates]\n\"9000\" = \"/t/rocky.qcow2\"\n"
    ))
    .unwrap();
    let s = c.vm.settings();
    assert_eq!(s.datastores["local-lvm:ssd"], std::path::Path::new("/nvme"));
    assert_eq!(
        s.datastores["local"],
        std::path::Path::new("/var/lib/libvirt/images/edgeward")
    );
    assert_eq!(s.bridges["vmbr0"], NicSource::Bridge("br0".into()));
    assert_eq!(s.bridges["vmbr1"], NicSource::Network("isolated".into()));
    assert_eq!(s.templates[&9000], std::path::Path::new("/t/rocky.qcow2"));
    let p = problems(&format!(
        "{MINIMAL}[vm.datastores]\n\"a b\" = \"/x\"\n\"fast:nvme\" = \"/y\"\nrel = \"images\"\n\
         [vm.bridges]\nvmbr0 = \"br0\"\nvmbr1 = \"bridge:a-very-long-bridge-name\"\n\
         [vm.templates]\nrocky = \"/t/r.qcow2\"\n\"50\" = \"/t/x.qcow2\"\n\"9000\" = \"t.qcow2\"\n"
    ));
    assert_eq!(
        keys(&p),
        [
            "vm.datastores.a b",
            "vm.datastores.fast:nvme",
            "vm.datastores.rel",
            "vm.bridges.vmbr0",
            "vm.bridges.vmbr1",
            "vm.templates.50",
            "vm.templates.9000",
            "vm.templates.rocky"
        ],
        "{p:?}"
    );
}

#[test]
fn backup_storages_are_named_directories_with_local_by_default() {
    let c = Config::from_toml_str_only(&format!(
        "{MINIMAL}[vm]\nstorage_dir = \"/srv/vms\"\n[vm.backup_storages]\nnas = \"/mnt/nas/dump\"\n"
    ))
    .unwrap();
    let all = c.vm.backup_storages();
    assert_eq!(all["local"], PathBuf::from("/srv/vms/backups"));
    assert_eq!(all["nas"], PathBuf::from("/mnt/nas/dump"));
    assert_eq!(c.vm.backup_keep_last, 3);
    let own_local = Config::from_toml_str_only(&format!(
        "{MINIMAL}[vm]\nbackup_keep_last = 7\n[vm.backup_storages]\nlocal = \"/var/dump\"\n"
    ))
    .unwrap();
    assert_eq!(
        own_local.vm.backup_storages()["local"],
        PathBuf::from("/var/dump")
    );
    assert_eq!(own_local.vm.backup_keep_last, 7);
    let p = problems(&format!(
        "{MINIMAL}[vm]\nbackup_keep_last = 0\n[vm.backup_storages]\n\"a/b\" = \"/x\"\nrel = \"dump\"\n"
    ));
    assert_eq!(
        keys(&p),
        [
            "vm.backup_keep_last",
            "vm.backup_storages.a/b",
            "vm.backup_storages.rel"
        ],
        "{p:?}"
    );
}
