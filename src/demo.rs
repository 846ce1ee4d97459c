//! `edgeward demo`: a ready-made configuration on a temporary store with three simulated LTE
//! modems on PTYs and one simulated HiLink stick — no hardware, no root. The simulated modems
//! are dongles 17–19 (seed 001): the simulator stands in for the modem's network interface.
//! The HiLink stick is dongle 20: a simulated stick's web API on a loopback address
//! (127.0.0.20, any free port), reached through `lo` exactly as a real stick's is through its
//! own interface — never 192.168.8.1 on the host.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ModemConfig};
use crate::modem::sim::hilink::{SimHiLink, StickConfig};
use crate::modem::sim::{LineEnding, SimConfig, SimModem};

/// The demo's configuration, embedded from `config/demo.toml`.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Simulated modems answer at once, so profile waits are cut to a tenth: a toggle takes about
/// a second instead of the half minute a real modem needs.
pub const MODEM_TIME_SCALE: f64 = 0.1;

/// The simulated modems: dongle number and vendor profile.
const MODEMS: [(u32, &str); 3] = [(17, "quectel"), (18, "huawei"), (19, "simcom")];

/// The simulated HiLink stick's dongle number and loopback address.
const HILINK: (u32, Ipv4Addr) = (20, Ipv4Addr::new(127, 0, 0, 20));

/// A demo ready to run: its configuration and the simulators it points at (they stop when
/// dropped).
pub struct Demo {
    pub config: Config,
    pub modems: Vec<SimModem>,
    pub hilink: Vec<SimHiLink>,
}

/// Builds the demo under `dir`: store, simulated modem ports, and optionally another listener.
pub fn start(dir: &Path, listen: Option<SocketAddr>) -> anyhow::Result<Demo> {
    let mut config = Config::from_toml_str_only(DEMO_TOML)?;
    config.store.path = dir.join("demo.redb");
    if let Some(addr) = listen {
        config.api.listen = vec![addr];
    }
    let mut modems = Vec::new();
    for (i, (number, profile)) in MODEMS.into_iter().enumerate() {
        let port = dir.join(format!("ttyDEMO{number}"));
        let sim = SimModem::start(
            &port,
            SimConfig {
                profile: profile.to_owned(),
                echo: true,
                line_ending: LineEnding::CrLf,
                initial_ip: Ipv4Addr::new(100, 64, 17, 10 + i as u8),
                registration_delay: Duration::from_millis(300),
                reply_delay: Duration::from_millis(5),
                reset_downtime: Duration::from_secs(1),
                urc_noise: true,
                seed: u64::from(number),
            },
        )?;
        config.modems.push(ModemConfig {
            number,
            port,
            profile: profile.to_owned(),
            netdev: format!("wwan{number}"),
            apn: Some("internet".to_owned()),
            ip_check_url: None,
            gateway: None,
            hilink_url: None,
            hilink_username: None,
            hilink_password: None,
            usb_path: None,
        });
        modems.push(sim);
    }
    let (number, addr) = HILINK;
    let stick = SimHiLink::start(
        std::net::TcpListener::bind((addr, 0))?,
        StickConfig {
            password: Some("demo".to_owned()),
            initial_ip: Ipv4Addr::new(10, 61, 20, 10),
            reattach: Duration::from_millis(500),
            reboot_downtime: Duration::from_secs(2),
            wan_ip_in_status: false,
            seed: u64::from(number),
            ..StickConfig::default()
        },
    )?;
    config.modems.push(ModemConfig {
        number,
        port: Default::default(),
        profile: crate::modem::hilink::PROFILE.to_owned(),
        netdev: "lo".to_owned(),
        apn: None,
        ip_check_url: None,
        gateway: None,
        hilink_url: Some(stick.url()),
        hilink_username: None,
        hilink_password: Some(crate::config::Secret::new("demo")),
        usb_path: None,
    });
    // The simulated modems have no network interfaces for the health probe to look at.
    config.dongle.probe_every = crate::config::HumaneDuration(Duration::from_secs(3600));
    config.validate()?;
    Ok(Demo {
        config,
        modems,
        hilink: vec![stick],
    })
}

/// What to try, printed at start.
pub fn banner(addr: SocketAddr) -> String {
    let base = format!("http://{addr}");
    format!(
        "\nedgeward demo is running at {base} (temporary store, simulated modems 17-19, simulated HiLink stick 20; Ctrl-C to stop)\n\n\
         Try:\n\
         \x20 curl {base}/vpn_api/list\n\
         \x20 curl {base}/vpn_api/allocate\n\
         \x20 curl '{base}/vpn_api/allocate?ip=localhost'\n\
         \x20 curl {base}/vpn_api/status\n\
         \x20 curl -X POST {base}/vpn_api/release -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"public_key\": \"<public_key from allocate>\"}}'\n\
         \x20 curl -X POST {base}/dongle/allocate -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"agent_id\": \"U22-01-01\"}}'   # lease one of dongles 17-19\n\
         \x20 curl {base}/dongle/heartbeat/<id>\n\
         \x20 curl -X POST {base}/dongle/release/<id>\n\
         \x20 curl {base}/api/dongles\n\
         \x20 curl {base}/toggle/17            # change modem 17's IP\n\
         \x20 curl {base}/toggle/20            # change HiLink stick 20's IP (network mode flip)\n\
         \x20 curl {base}/toggle-status/17\n\
         \x20 curl {base}/api/modems\n\
         \x20 curl {base}/api/health\n\
         \x20 curl {base}/metrics\n\n\
         Client flows: ../shared/acceptance/vpn_bash_flow.sh {base}\n\
         \x20             ../shared/acceptance/dongle_flow.sh {base} U22-01-01\n"
    )
}
