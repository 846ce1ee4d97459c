//! The command table of the simulated modem: every command the profiles send, with the answer
//! shapes their parsers take, and the state changes they make. Unknown commands get the vendor's
//! "unknown" answer (`ERROR`, Huawei `COMMAND NOT SUPPORT`).

use std::net::Ipv4Addr;
use std::time::Instant;

use super::{Modem, Vendor, REG_TAGS};

/// How a command is written after its name.
#[derive(Debug)]
enum Form {
    /// `AT+X`
    Action,
    /// `AT+X?`
    Read,
    /// `AT+X=?`
    Test,
    /// `AT+X=a,b`, arguments trimmed and unquoted.
    Set(Vec<String>),
}

impl Form {
    fn parse(tail: &str) -> Self {
        match tail {
            "" => Self::Action,
            "?" => Self::Read,
            "=?" => Self::Test,
            _ => match tail.strip_prefix('=') {
                Some(args) => Self::Set(
                    args.split(',')
                        .map(|a| a.trim().trim_matches('"').to_string())
                        .collect(),
                ),
                None => Self::Set(Vec::new()),
            },
        }
    }
}

/// The answer to one command.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub info: Vec<String>,
    pub result: String,
    /// URCs the command causes, sent right after the final result.
    pub after: Vec<String>,
    pub reboot: bool,
}

impl Answer {
    fn ok() -> Self {
        Self::result("OK")
    }

    pub(super) fn result(result: impl Into<String>) -> Self {
        Self {
            result: result.into(),
            ..Self::default()
        }
    }

    fn line(line: impl Into<String>) -> Self {
        Self::lines(vec![line.into()])
    }

    fn lines(info: Vec<String>) -> Self {
        Self { info, ..Self::ok() }
    }
}

impl Modem {
    /// The answer to the command `name` (upper case, after `AT`) written with `tail`
    /// (`""`, `"?"`, `"=?"` or `"=args"`), applying its effect.
    pub(super) fn answer(&mut self, name: &str, tail: &str, now: Instant) -> Answer {
        self.dispatch(name, Form::parse(tail), now)
    }

    fn dispatch(&mut self, name: &str, form: Form, now: Instant) -> Answer {
        use Form::*;
        let id = self.s.vendor.identity();
        match (name, form) {
            ("" | "Z" | "&F" | "V1" | "Q0", Action) => Answer::ok(),
            ("E" | "E0", Action) => {
                self.echo = false;
                Answer::ok()
            }
            ("E1", Action) => {
                self.echo = true;
                Answer::ok()
            }
            ("I" | "I0", Action) => Answer::lines(id.ati.iter().map(|s| s.to_string()).collect()),
            ("+CGMI" | "+GMI", Action) => Answer::line(id.manufacturer),
            ("+CGMM" | "+GMM", Action) => Answer::line(id.model),
            ("+CGMR" | "+GMR", Action) => Answer::line(id.revision),
            ("+CGSN" | "+GSN", Action) => Answer::line(id.imei),
            ("+CMEE", Read) => Answer::line(format!("+CMEE: {}", self.cmee)),
            ("+CMEE", Set(a)) => match a.first().and_then(|n| n.parse::<u8>().ok()) {
                Some(n @ 0..=2) => {
                    self.cmee = n;
                    Answer::ok()
                }
                _ => Answer::result(self.cme(50)),
            },
            ("+CPIN", Read) => Answer::line("+CPIN: READY"),
            ("+CFUN", Read) => Answer::line(format!("+CFUN: {}", self.cfun)),
            ("+CFUN", Set(a)) => self.cfun(&a, now),
            ("+CSQ", Action) => {
                let rssi = if self.registered() {
                    18 + self.rng.below(8)
                } else {
                    99
                };
                Answer::line(format!("+CSQ: {rssi},99"))
            }
            ("+CESQ", Action) => Answer::line(match (self.registered(), self.s.vendor) {
                (false, _) => "+CESQ: 99,99,255,255,255,255",
                (true, Vendor::Fibocom) => "+CESQ: 99,99,255,255,255,255,65,75,75",
                (true, _) => "+CESQ: 99,99,255,255,26,50",
            }),
            ("+COPS", Read) => Answer::line(if self.registered() {
                let act = if self.s.vendor.has_5g() { 11 } else { 7 };
                format!("+COPS: 0,0,\"Edgeward Mobile\",{act}")
            } else {
                "+COPS: 0".to_string()
            }),
            ("+COPS", Set(_)) => Answer::ok(),
            ("+CGDCONT", Set(_)) => Answer::ok(),
            ("+CGDCONT", Read) => Answer::line("+CGDCONT: 1,\"IP\",\"internet\",\"0.0.0.0\",0,0"),
            ("+CGACT", Set(a)) => self.context(arg(&a, 0), arg(&a, 1).or(Some("1"))),
            ("+CGACT", Read) => Answer::line(format!("+CGACT: 1,{}", u8::from(self.active))),
            ("+CGPADDR", Action) => Answer::line(self.cgpaddr("+CGPADDR")),
            ("+CGPADDR", Set(a)) if a.first().is_some_and(|c| c == "1") => {
                Answer::line(self.cgpaddr("+CGPADDR"))
            }
            ("+CGPADDR", Set(_)) => Answer::result(self.cme(50)),
            (name, form) => {
                if let Some(idx) = REG_TAGS.iter().position(|t| *t == name) {
                    if self.reg_supported(idx) {
                        return self.registration(idx, form);
                    }
                }
                self.vendor_command(name, form)
            }
        }
    }

    fn vendor_command(&mut self, name: &str, form: Form) -> Answer {
        use Form::*;
        use Vendor::*;
        let v = self.s.vendor;
        let read = matches!(form, Read);
        if matches!(form, Action | Read) {
            if let Some(line) = v.iccid(name, read) {
                return Answer::line(line);
            }
        }
        if matches!(form, Action) && v.reset_command() == Some(name) {
            return self.reboot();
        }
        let ip = self.ip.map(|ip| ip.to_string());
        match (v, name, form) {
            (Quectel, "+QIACT", Set(a)) => self.context(Some("1"), arg(&a, 0)),
            (Quectel, "+QIDEACT", Set(a)) => self.context(Some("0"), arg(&a, 0)),
            (Quectel, "+QIACT", Read) => match ip {
                // A bare OK when no context is active.
                None => Answer::ok(),
                Some(ip) => Answer::line(format!("+QIACT: 1,1,1,\"{ip}\"")),
            },
            (Quectel, "+QNETDEVCTL", Set(a)) => self.context(arg(&a, 0), arg(&a, 1)),
            (Quectel, "+QCSQ", Action) => Answer::line(if self.registered() {
                "+QCSQ: \"LTE\",-52,-81,195,-10"
            } else {
                "+QCSQ: \"NOSERVICE\""
            }),
            (Quectel, "+QENG", Set(a)) if a.first().is_some_and(|a| a == "SERVINGCELL") => {
                Answer::line(if self.registered() {
                    "+QENG: \"servingcell\",\"NOCONN\",\"LTE\",\"FDD\",262,01,1A2B3C4,374,100,1,5,5,1A2B,-80,-6,-53,30,39"
                } else {
                    "+QENG: \"servingcell\",\"SEARCH\""
                })
            }
            (Simcom, "$QCRMCALL", Set(a)) => {
                let on = arg(&a, 0) == Some("1");
                let mut answer = self.context(arg(&a, 0), Some("1"));
                if on && answer.result == "OK" {
                    answer.info.push("$QCRMCALL: 1,V4".to_string());
                }
                answer
            }
            (Huawei, "^NDISDUP", Set(a)) => {
                let mut answer = self.context(arg(&a, 1), arg(&a, 0));
                if answer.result == "OK" {
                    let state = u8::from(self.active);
                    answer.after.push(format!("^NDISSTAT: {state},,,\"IPV4\""));
                }
                answer
            }
            (Huawei, "^NDISSTATQRY", Read) => Answer::line(format!(
                "^NDISSTATQRY: {},,,\"IPV4\"",
                u8::from(self.active)
            )),
            (Huawei, "^DHCP", Read) => match self.ip {
                Some(ip) => Answer::line(huawei_dhcp(ip)),
                None => Answer::result(self.cme(3)),
            },
            (Huawei, "^SYSINFOEX", Action) => Answer::line(if self.registered() {
                "^SYSINFOEX:2,3,0,1,,6,\"LTE\",101,\"LTE\""
            } else {
                "^SYSINFOEX:0,0,0,1,,0,\"\",0,\"\""
            }),
            (Huawei, "^HCSQ", Read) => Answer::line(if self.registered() {
                "^HCSQ: \"LTE\",50,45,140,20"
            } else {
                "^HCSQ: \"NOSERVICE\""
            }),
            (Sierra, "!SCACT", Set(a)) => self.context(arg(&a, 0), arg(&a, 1)),
            (Sierra, "!SCACT", Read) => {
                Answer::line(format!("!SCACT: {},1", u8::from(self.active)))
            }
            (Sierra, "!SCPADDR", Set(a)) if a.first().is_some_and(|c| c == "1") => {
                Answer::line(self.cgpaddr("!SCPADDR"))
            }
            (Fibocom, "+GTRNDIS", Set(a)) => self.context(arg(&a, 0), arg(&a, 1)),
            (Fibocom, "+GTRNDIS", Read) => Answer::line(match ip {
                Some(ip) => format!("+GTRNDIS: 1,1,\"{ip}\",\"10.177.0.34\",\"10.168.187.116\""),
                None => "+GTRNDIS: 0".to_string(),
            }),
            _ => Answer::result(v.unknown_command()),
        }
    }

    /// `+CREG`, `+CGREG`, `+CEREG`, `+C5GREG` read and set.
    fn registration(&mut self, idx: usize, form: Form) -> Answer {
        let tag = REG_TAGS.get(idx).copied().unwrap_or("+CEREG");
        match form {
            Form::Read => {
                let mode = self.reg_mode.get(idx).copied().unwrap_or(0);
                Answer::line(format!("{tag}: {mode},{}", self.reg_fields(idx)))
            }
            Form::Set(a) => match a.first().and_then(|n| n.parse::<u8>().ok()) {
                Some(n @ 0..=5) => {
                    if let Some(slot) = self.reg_mode.get_mut(idx) {
                        *slot = n.min(2);
                    }
                    Answer::ok()
                }
                _ => Answer::result(self.cme(50)),
            },
            Form::Test => Answer::line(format!("{tag}: (0-2)")),
            Form::Action => Answer::result(self.s.vendor.unknown_command()),
        }
    }

    fn cgpaddr(&self, tag: &str) -> String {
        let ip = self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        format!("{tag}: 1,\"{ip}\"")
    }

    /// Activates (`state` "1") or deactivates ("0") the context `cid` (only 1 exists).
    fn context(&mut self, state: Option<&str>, cid: Option<&str>) -> Answer {
        if cid != Some("1") {
            return Answer::result(self.cme(50));
        }
        match state {
            Some("0") => {
                self.deactivate();
                Answer::ok()
            }
            Some("1") if self.active => Answer::ok(),
            Some("1") if !self.registered() => Answer::result(self.cme(30)),
            Some("1") => {
                self.attach();
                Answer::ok()
            }
            _ => Answer::result(self.cme(50)),
        }
    }

    fn cfun(&mut self, args: &[String], now: Instant) -> Answer {
        let level = args.first().map(String::as_str).unwrap_or("");
        let rst = args.get(1).map(String::as_str);
        if (level == "1" && rst == Some("1")) || self.s.vendor.cfun_resets(level) {
            return self.reboot();
        }
        match level {
            "0" | "4" => {
                self.cfun = if level == "0" { 0 } else { 4 };
                self.reg_due = None;
                self.deactivate();
                Answer {
                    after: self.set_stat(0),
                    ..Answer::ok()
                }
            }
            "1" => {
                let mut answer = Answer::ok();
                if self.cfun != 1 {
                    // The SIM was powered down with the radio (CFUN=0) and reports back.
                    let sim_back =
                        self.cfun == 0 && matches!(self.s.vendor, Vendor::Quectel | Vendor::Simcom);
                    if sim_back {
                        answer.info.push("+CPIN: READY".to_string());
                    }
                    self.cfun = 1;
                    answer.after = self.set_stat(2);
                    self.reg_due = Some(now + self.s.registration_delay);
                }
                answer
            }
            _ => Answer::result(self.cme(50)),
        }
    }

    fn reboot(&mut self) -> Answer {
        Answer {
            reboot: true,
            ..Answer::ok()
        }
    }
}

fn arg(args: &[String], i: usize) -> Option<&str> {
    args.get(i).map(String::as_str)
}

/// Huawei `^DHCP:` words: little-endian hex of address, /29 mask, gateway, gateway, DNS, DNS.
fn huawei_dhcp(ip: Ipv4Addr) -> String {
    let word = |ip: Ipv4Addr| u32::from_le_bytes(ip.octets());
    let [a, b, c, d] = ip.octets();
    let gateway = Ipv4Addr::new(a, b, c, d ^ 1);
    format!(
        "^DHCP:{:x},f8ffffff,{:x},{:x},2200b10a,74bba80a,236800,236800",
        word(ip),
        word(gateway),
        word(gateway)
    )
}
