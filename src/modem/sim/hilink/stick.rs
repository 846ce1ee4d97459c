//! The simulated stick itself, pure: requests and `now` in, answers out. The server shell in
//! `../hilink.rs` only moves HTTP between it and a socket.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::modem::hilink::session::{code, login_password, login_password_plain};
use crate::modem::hilink::xml::{self, MODE_AUTO};

/// How the simulated stick behaves.
#[derive(Debug, Clone)]
pub struct StickConfig {
    /// `None`: no login needed (many sticks ship so).
    pub password: Option<String>,
    pub username: String,
    /// The first WAN address; later ones count up from it.
    pub initial_ip: Ipv4Addr,
    /// How long a re-attach (mode flip, data on, after a reboot) takes.
    pub reattach: Duration,
    /// How long a reboot keeps the stick from answering at all.
    pub reboot_downtime: Duration,
    /// E8372h/router firmware puts `WanIPAddress` in `/api/monitoring/status`; E3372h firmware
    /// only in `/api/device/information`.
    pub wan_ip_in_status: bool,
    /// Older firmware: no `csrf_token` metas, no `/api/webserver/token`; only
    /// `/api/webserver/SesTokInfo`.
    pub old_firmware: bool,
    /// Seeds the session ids and tokens.
    pub seed: u64,
}

impl Default for StickConfig {
    fn default() -> Self {
        Self {
            password: None,
            username: "admin".into(),
            initial_ip: Ipv4Addr::new(10, 61, 0, 10),
            reattach: Duration::from_millis(300),
            reboot_downtime: Duration::from_millis(800),
            wan_ip_in_status: true,
            old_firmware: false,
            seed: 1,
        }
    }
}

/// Knobs a test turns while the stick runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// A network-mode set answers OK and does nothing.
    pub stuck_mode: bool,
    /// Mobile data off/on re-attaches with the same address.
    pub stuck_data: bool,
    /// The next this many re-attaches hand back the same address.
    pub same_address_next: u32,
}

/// What happened to the stick, for tests to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub sessions: u64,
    pub logins: u64,
    pub failed_logins: u64,
    pub stale_token_refusals: u64,
    pub mode_sets: u64,
    pub data_switches: u64,
    pub reboots: u64,
    /// Re-attaches started (mode flip, data on, reboot).
    pub reattaches: u64,
}

#[derive(Debug, Clone)]
enum Conn {
    Connected(Ipv4Addr),
    Disconnected,
    Attaching { until: Instant, ip: Ipv4Addr },
}

#[derive(Debug, Clone, Default)]
struct SessionState {
    tokens: Vec<String>,
    logged_in: bool,
}

/// One request as the stick sees it.
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    pub post: bool,
    pub path: &'a str,
    /// The `SessionID` cookie's value.
    pub session: Option<&'a str>,
    pub token: Option<&'a str>,
    pub body: &'a str,
}

/// One answer: always HTTP 200, as the firmware does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: String,
    /// `SessionID` to set.
    pub set_session: Option<String>,
    /// `__RequestVerificationToken`.
    pub token: Option<String>,
    /// `__RequestVerificationTokenone` / `…two` (after a login).
    pub token_pair: Option<(String, String)>,
}

fn xml_ok(body: String) -> Answer {
    Answer {
        content_type: "text/xml",
        body,
        ..Answer::default()
    }
}

fn response(fields: &[(&str, String)]) -> Answer {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>\n");
    for (k, v) in fields {
        body.push_str(&format!("<{k}>{}</{k}>\n", xml::escape(v)));
    }
    body.push_str("</response>\n");
    xml_ok(body)
}

fn ok() -> Answer {
    xml_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>OK</response>\n".into())
}

pub fn error(code: u32) -> Answer {
    xml_ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n<code>{code}</code>\n<message></message>\n</error>\n"
    ))
}

pub struct Stick {
    config: StickConfig,
    pub knobs: Knobs,
    pub stats: Stats,
    sessions: HashMap<String, SessionState>,
    conn: Conn,
    /// The last address handed out (what "the same address" means).
    last_ip: Ipv4Addr,
    leases: u32,
    mode: String,
    data_on: bool,
    down_until: Option<Instant>,
    rng: u64,
}

impl Stick {
    pub fn new(config: StickConfig) -> Self {
        let ip = config.initial_ip;
        let rng = config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Self {
            config,
            knobs: Knobs::default(),
            stats: Stats::default(),
            sessions: HashMap::new(),
            conn: Conn::Connected(ip),
            last_ip: ip,
            leases: 0,
            mode: MODE_AUTO.into(),
            data_on: true,
            down_until: None,
            rng,
        }
    }

    /// Whether the stick answers at all at `now` (not while rebooting).
    pub fn is_up(&mut self, now: Instant) -> bool {
        match self.down_until {
            Some(t) if now < t => false,
            Some(_) => {
                self.down_until = None;
                true
            }
            None => true,
        }
    }

    /// The WAN address at `now` (`None` while detached).
    pub fn wan_ip(&mut self, now: Instant) -> Option<Ipv4Addr> {
        if let Conn::Attaching { until, ip } = self.conn {
            if now >= until {
                self.conn = Conn::Connected(ip);
            }
        }
        match self.conn {
            Conn::Connected(ip) => Some(ip),
            _ => None,
        }
    }

    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// Whether mobile data is switched on.
    pub fn data_on(&self) -> bool {
        self.data_on
    }

    /// Every session ends (the firmware's idle timeout): the next request gets 125002.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    fn random_hex(&mut self) -> String {
        let mut next = || {
            // xorshift64*: deterministic per seed, good enough for ids.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        format!("{:016x}{:016x}", next(), next())
    }

    fn new_session(&mut self) -> String {
        let id = format!("{}{}", self.random_hex(), self.random_hex());
        self.sessions.insert(id.clone(), SessionState::default());
        self.stats.sessions += 1;
        id
    }

    fn new_token(&mut self, session: &str) -> String {
        let t = self.random_hex();
        if let Some(s) = self.sessions.get_mut(session) {
            s.tokens.push(t.clone());
            // Firmware keeps only a few outstanding.
            if s.tokens.len() > 8 {
                s.tokens.remove(0);
            }
        }
        t
    }

    fn next_ip(&mut self) -> Ipv4Addr {
        if self.knobs.same_address_next > 0 {
            self.knobs.same_address_next -= 1;
            return self.last_ip;
        }
        self.leases = self.leases.wrapping_add(1);
        let base = u32::from(self.config.initial_ip);
        let ip = Ipv4Addr::from(base.wrapping_add(self.leases % 200));
        self.last_ip = ip;
        ip
    }

    fn reattach(&mut self, now: Instant, same: bool) {
        self.stats.reattaches += 1;
        let ip = if same { self.last_ip } else { self.next_ip() };
        self.conn = Conn::Attaching {
            until: now + self.config.reattach,
            ip,
        };
    }

    fn login_needed(&self, session: &str) -> bool {
        self.config.password.is_some() && !self.sessions.get(session).is_some_and(|s| s.logged_in)
    }

    /// Answers one request. `None`: the stick is rebooting and drops the connection.
    pub fn handle(&mut self, ask: &Ask<'_>, now: Instant) -> Option<Answer> {
        if !self.is_up(now) {
            return None;
        }
        self.stats.requests += 1;
        let known = ask
            .session
            .filter(|s| self.sessions.contains_key(*s))
            .map(str::to_owned);
        let path = ask.path.split('?').next().unwrap_or_default();
        // Session endpoints: they hand out sessions and tokens.
        match (ask.post, path) {
            (false, "/" | "/html/home.html" | "/html/index.html") => {
                let (id, set) = match known {
                    Some(id) => (id, None),
                    None => {
                        let id = self.new_session();
                        (id.clone(), Some(id))
                    }
                };
                let metas = if self.config.old_firmware {
                    String::new()
                } else {
                    let (a, b) = (self.new_token(&id), self.new_token(&id));
                    format!(
                        "<meta name=\"csrf_token\" content=\"{a}\"/>\n<meta name=\"csrf_token\" content=\"{b}\"/>\n"
                    )
                };
                return Some(Answer {
                    content_type: "text/html",
                    body: format!("<!DOCTYPE html>\n<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"/>\n{metas}<title>HUAWEI</title>\n</head>\n<body></body>\n</html>\n"),
                    set_session: set,
                    ..Answer::default()
                });
            }
            (false, "/api/webserver/token") if !self.config.old_firmware => {
                let (id, set) = match known {
                    Some(id) => (id, None),
                    None => {
                        let id = self.new_session();
                        (id.clone(), Some(id))
                    }
                };
                let token = self.new_token(&id);
                return Some(Answer {
                    set_session: set,
                    ..response(&[("token", token)])
                });
            }
            (false, "/api/webserver/SesTokInfo") => {
                let id = match known {
                    Some(id) => id,
                    None => self.new_session(),
                };
                let token = self.new_token(&id);
                return Some(response(&[
                    ("SesInfo", format!("SessionID={id}")),
                    ("TokInfo", token),
                ]));
            }
            _ => {}
        }
        let Some(session) = known else {
            return Some(error(code::CSRF));
        };
        if ask.post {
            let spent = ask.token.and_then(|t| {
                let s = self.sessions.get_mut(&session)?;
                let i = s.tokens.iter().position(|have| have == t)?;
                Some(s.tokens.remove(i))
            });
            let Some(spent) = spent else {
                self.stats.stale_token_refusals += 1;
                return Some(error(code::CSRF));
            };
            let mut answer = self.post(&session, path, ask.body, &spent, now);
            if answer.token.is_none() && answer.token_pair.is_none() {
                let id = answer.set_session.clone().unwrap_or(session);
                answer.token = Some(self.new_token(&id));
            }
            return Some(answer);
        }
        Some(self.get(&session, path, now))
    }

    fn get(&mut self, session: &str, path: &str, now: Instant) -> Answer {
        let open = matches!(path, "/api/user/state-login" | "/api/monitoring/status");
        if !open && self.login_needed(session) {
            return error(code::NO_RIGHTS);
        }
        let ip = self.wan_ip(now);
        let ip_text = ip.map(|ip| ip.to_string()).unwrap_or_default();
        let status_code = match (&self.conn, ip) {
            (_, Some(_)) => 901,
            (Conn::Attaching { .. }, None) => 900,
            _ => 902,
        };
        match path {
            "/api/user/state-login" => {
                let logged_in = self.sessions.get(session).is_some_and(|s| s.logged_in)
                    || self.config.password.is_none();
                response(&[
                    ("State", if logged_in { "0" } else { "-1" }.into()),
                    ("Username", String::new()),
                    (
                        "password_type",
                        if self.config.old_firmware { "0" } else { "4" }.into(),
                    ),
                    ("extern_password_type", "1".into()),
                    ("firstlogin", "0".into()),
                ])
            }
            "/api/monitoring/status" => {
                let mut f = vec![
                    ("ConnectionStatus", status_code.to_string()),
                    ("WifiConnectionStatus", String::new()),
                    ("SignalStrength", String::new()),
                    ("SignalIcon", "4".into()),
                    (
                        "CurrentNetworkType",
                        if ip.is_some() { "19" } else { "0" }.into(),
                    ),
                    ("CurrentServiceDomain", "3".into()),
                    ("RoamingStatus", "0".into()),
                ];
                if self.config.wan_ip_in_status {
                    f.push(("WanIPAddress", ip_text));
                }
                f.extend([
                    ("PrimaryDns", "10.177.0.34".to_string()),
                    ("SecondaryDns", "10.177.0.210".into()),
                    ("flymode", "0".into()),
                    ("ServiceStatus", "2".into()),
                    ("SimStatus", "1".into()),
                    ("maxsignal", "5".into()),
                    ("classify", "hilink".into()),
                    ("flymode", "0".into()),
                ]);
                response(&f)
            }
            "/api/device/signal" => response(&[
                ("pci", "271".into()),
                ("cell_id", "25480450".into()),
                ("rsrq", "-11dB".into()),
                ("rsrp", "-97dBm".into()),
                ("rssi", ">=-51dBm".into()),
                ("sinr", "7dB".into()),
                ("mode", "7".into()),
                ("band", "3".into()),
            ]),
            "/api/net/current-plmn" => response(&[
                ("State", "0".into()),
                ("FullName", "SimNet".into()),
                ("ShortName", "SIM".into()),
                ("Numeric", "00101".into()),
                ("Rat", "7".into()),
            ]),
            "/api/device/information" => response(&[
                ("DeviceName", "E3372h-320".into()),
                ("SerialNumber", "SIMSERIAL0001".into()),
                (
                    "Imei",
                    format!("86182104{:07}", self.config.seed % 10_000_000),
                ),
                ("Iccid", format!("89820500{:012}", self.config.seed)),
                ("HardwareVersion", "CL4E3372HM".into()),
                ("SoftwareVersion", "11.0.1.1(SIM)".into()),
                ("WanIPAddress", ip_text),
                ("Classify", "hilink".into()),
                ("workmode", "LTE".into()),
            ]),
            "/api/net/net-mode" => response(&[
                ("NetworkMode", self.mode.clone()),
                ("NetworkBand", "3FFFFFFF".into()),
                ("LTEBand", "7FFFFFFFFFFFFFFF".into()),
            ]),
            "/api/dialup/mobile-dataswitch" => {
                response(&[("dataswitch", if self.data_on { "1" } else { "0" }.into())])
            }
            _ => error(code::NO_SUPPORT),
        }
    }

    fn post(&mut self, session: &str, path: &str, body: &str, token: &str, now: Instant) -> Answer {
        let Ok(fields) = xml::parse_request(body) else {
            return error(code::FORMAT);
        };
        match path {
            "/api/user/login" => self.login(session, &fields, token),
            "/api/user/logout" => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.logged_in = false;
                }
                ok()
            }
            _ if self.login_needed(session) => error(code::NO_RIGHTS),
            "/api/net/net-mode" => {
                let Some(mode) = fields.non_empty("NetworkMode") else {
                    return error(code::FORMAT);
                };
                if !matches!(mode, "00" | "01" | "02" | "03") {
                    return error(code::FORMAT);
                }
                self.stats.mode_sets += 1;
                if mode != self.mode && !self.knobs.stuck_mode {
                    self.mode = mode.to_owned();
                    self.reattach(now, false);
                }
                ok()
            }
            "/api/dialup/mobile-dataswitch" => {
                self.stats.data_switches += 1;
                match fields.get("dataswitch") {
                    Some("0") => {
                        self.data_on = false;
                        self.conn = Conn::Disconnected;
                        ok()
                    }
                    Some("1") => {
                        if !self.data_on {
                            self.data_on = true;
                            let same = self.knobs.stuck_data;
                            self.reattach(now, same);
                        }
                        ok()
                    }
                    _ => error(code::FORMAT),
                }
            }
            "/api/device/control" => match fields.get("Control") {
                Some("1") => {
                    self.stats.reboots += 1;
                    let back = now + self.config.reboot_downtime;
                    self.down_until = Some(back);
                    self.sessions.clear();
                    self.data_on = true;
                    self.stats.reattaches += 1;
                    let ip = self.next_ip();
                    self.conn = Conn::Attaching {
                        until: back + self.config.reattach,
                        ip,
                    };
                    ok()
                }
                _ => error(code::FORMAT),
            },
            _ => error(code::NO_SUPPORT),
        }
    }

    fn login(&mut self, session: &str, fields: &xml::Fields, token: &str) -> Answer {
        let user = fields.get("Username").unwrap_or_default();
        let given = fields.get("Password").unwrap_or_default();
        let good = match &self.config.password {
            None => true,
            Some(pw) => {
                let expected = match fields.get("password_type") {
                    Some("4") => login_password(&self.config.username, pw, token),
                    _ => login_password_plain(pw),
                };
                user == self.config.username && given == expected
            }
        };
        if !good {
            self.stats.failed_logins += 1;
            return error(code::USERNAME_PWD_WRONG);
        }
        self.stats.logins += 1;
        // The firmware starts a new session on login: the old id and its tokens are void.
        self.sessions.remove(session);
        let id = self.new_session();
        if let Some(s) = self.sessions.get_mut(&id) {
            s.logged_in = true;
        }
        let pair = (self.new_token(&id), self.new_token(&id));
        Answer {
            set_session: Some(id),
            token_pair: Some(pair),
            ..ok()
        }
    }
}

#[cfg(test)]
mod tests;
