//! Network registration: `+CREG`, `+CGREG`, `+CEREG`, `+C5GREG` (3GPP TS 27.007 §7.2, §10.1.20,
//! §10.1.22, §10.1.29) in every field count, read answers and URCs, plus Huawei `^SYSINFOEX`.
//!
//! Field layouts, after the tag:
//! - read answer: `<n>,<stat>[,<lac|tac>,<ci>[,<AcT>[,...]]]`
//! - URC: `<stat>[,<lac|tac>,<ci>[,<AcT>[,...]]]`
//!
//! Oddities handled (all from ModemManager src/tests/test-modem-helpers.c):
//! - some modems put `<n>` in URCs too (Sony-Ericsson MD400 `+CREG: 2,5,"0502","0404736D"`): a URC
//!   with four or more fields whose first two are single unquoted digits carries `<n>`;
//! - Novatel E362 inserts a RAC between TAC and CI in `+CEREG` (`2,1, 1F00, 20 ,79D903 ,7`);
//! - leading zeros (`+CREG:002,001,...`), spaces anywhere, unquoted hex, empty fields (`2,,`).

use super::fields::{dec_u32, find_tagged, hex_u64, split, strip_tag, Field};
use super::ParseError;

/// Which registration report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegKind {
    /// `+CREG` (circuit switched).
    Cs,
    /// `+CGREG` (GPRS/UMTS packet switched).
    Gprs,
    /// `+CEREG` (LTE EPS).
    Eps,
    /// `+C5GREG` (5GS).
    Nr5g,
    /// Huawei `^SYSINFOEX` service status.
    HuaweiSysinfoex,
}

/// Registration state, folded from the 27.007 `<stat>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStat {
    /// 0: not registered, not searching.
    NotRegistered,
    /// 1, plus 6 (SMS only) and 9 (CSFB not preferred).
    Home,
    /// 2: not registered, searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4, and any value this parser does not know.
    Unknown,
    /// 5, plus 7 (SMS only) and 10 (CSFB not preferred).
    Roaming,
    /// 8: attached for emergency bearer services only (11: RLOS only).
    EmergencyOnly,
}

impl RegStat {
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::NotRegistered,
            1 | 6 | 9 => Self::Home,
            2 => Self::Searching,
            3 => Self::Denied,
            5 | 7 | 10 => Self::Roaming,
            8 | 11 => Self::EmergencyOnly,
            _ => Self::Unknown,
        }
    }

    /// Registered on a network that carries data (home or roaming).
    pub fn is_registered(self) -> bool {
        matches!(self, Self::Home | Self::Roaming)
    }
}

/// One registration report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub kind: RegKind,
    /// The `<n>` (URC mode) of a read answer.
    pub n: Option<u8>,
    pub stat: RegStat,
    /// The `<stat>` number as sent.
    pub raw_stat: u32,
    /// LAC (2G/3G) or TAC (LTE/5G).
    pub area: Option<u32>,
    pub cell: Option<u64>,
    /// The 27.007 `<AcT>` (7 = E-UTRAN, 11 = NR/5GCN, ...).
    pub act: Option<u8>,
}

const TAGS: &[(&str, RegKind)] = &[
    ("+CREG:", RegKind::Cs),
    ("+CGREG:", RegKind::Gprs),
    ("+CEREG:", RegKind::Eps),
    ("+C5GREG:", RegKind::Nr5g),
];

fn is_single_digit(f: &Field) -> bool {
    !f.quoted && f.text.len() == 1 && f.text.bytes().all(|b| b.is_ascii_digit())
}

fn opt_hex(f: Option<&Field>) -> Option<u64> {
    f.and_then(|f| hex_u64(&f.text))
}

fn parse_line(line: &str, solicited: bool) -> Result<Registration, ParseError> {
    let (kind, params) = TAGS
        .iter()
        .find_map(|(tag, kind)| strip_tag(line, tag).map(|p| (*kind, p)))
        .ok_or(ParseError::Missing("+CREG/+CGREG/+CEREG/+C5GREG"))?;
    let fields = split(params);
    let has_n = if solicited {
        true
    } else {
        fields.len() >= 4
            && fields.first().is_some_and(is_single_digit)
            && fields.get(1).is_some_and(is_single_digit)
    };
    let (n, rest) = if has_n {
        let n_field = fields
            .first()
            .ok_or_else(|| ParseError::invalid("registration", line))?;
        let n = dec_u32(&n_field.text)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| ParseError::invalid("registration <n>", &n_field.text))?;
        (Some(n), fields.get(1..).unwrap_or(&[]))
    } else {
        (None, fields.as_slice())
    };
    let stat_field = rest
        .first()
        .ok_or_else(|| ParseError::invalid("registration (no <stat>)", line))?;
    let raw_stat = dec_u32(&stat_field.text)
        .ok_or_else(|| ParseError::invalid("registration <stat>", &stat_field.text))?;
    let mut loc: Vec<&Field> = rest.iter().skip(1).collect();
    // Novatel E362: <tac>,<rac>,<ci>,<AcT>; the short RAC sits where the CI belongs.
    if kind == RegKind::Eps
        && loc.len() == 4
        && loc.get(1).is_some_and(|f| f.text.len() <= 2)
        && loc.get(2).is_some_and(|f| f.text.len() > 2)
    {
        loc.remove(1);
    }
    let area = opt_hex(loc.first().copied()).and_then(|a| u32::try_from(a).ok());
    let cell = opt_hex(loc.get(1).copied());
    let act = loc
        .get(2)
        .and_then(|f| dec_u32(&f.text))
        .and_then(|a| u8::try_from(a).ok());
    Ok(Registration {
        kind,
        n,
        stat: RegStat::from_code(raw_stat),
        raw_stat,
        area,
        cell,
        act,
    })
}

/// The answer to `AT+CREG?`, `AT+CGREG?`, `AT+CEREG?` or `AT+C5GREG?` (first matching line).
///
/// Every tagged line is tried and the first that reads as an answer wins: a registration URC
/// with location (`+CEREG: 1,"1A2B","01A2B3C4",7`) can arrive during the read command and the
/// codec hands it over as an information line, before the real answer.
pub fn registration(lines: &[String]) -> Result<Registration, ParseError> {
    let mut first_error = None;
    for line in lines
        .iter()
        .filter(|l| TAGS.iter().any(|(tag, _)| strip_tag(l, tag).is_some()))
    {
        match parse_line(line, true) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(ParseError::Missing("+CREG/+CGREG/+CEREG/+C5GREG")))
}

/// An unsolicited registration report (the line of an [`AtEvent::Urc`](super::super::at::AtEvent)).
pub fn registration_urc(line: &str) -> Result<Registration, ParseError> {
    parse_line(line, false)
}

/// Huawei `^SYSINFOEX: <srv_status>,<srv_domain>,<roam_status>,<sim_state>,<lock_state>,
/// <sysmode>,<sysmode_name>,<submode>,<submode_name>`, folded into a registration:
/// service status 2 (valid service) is home or roaming by `<roam_status>` = 1, 1 and 3 (limited)
/// are emergency-only, 0 and 4 (no service, power saving) are not registered.
/// Field order from ModemManager src/plugins/huawei/mm-modem-helpers-huawei.c.
pub fn sysinfoex(lines: &[String]) -> Result<Registration, ParseError> {
    let (_, params) =
        find_tagged(lines, &["^SYSINFOEX:"]).ok_or(ParseError::Missing("^SYSINFOEX"))?;
    let fields = split(params);
    let number = |i: usize, what: &'static str| {
        let text = fields.get(i).map(|f| f.text.as_str()).unwrap_or("");
        dec_u32(text).ok_or_else(|| ParseError::invalid(what, text))
    };
    let srv_status = number(0, "^SYSINFOEX <srv_status>")?;
    let roam = number(2, "^SYSINFOEX <roam_status>")?;
    let stat = match (srv_status, roam) {
        (2, 1) => RegStat::Roaming,
        (2, _) => RegStat::Home,
        (1 | 3, _) => RegStat::EmergencyOnly,
        (0 | 4, _) => RegStat::NotRegistered,
        _ => RegStat::Unknown,
    };
    Ok(Registration {
        kind: RegKind::HuaweiSysinfoex,
        n: None,
        stat,
        raw_stat: srv_status,
        area: None,
        cell: None,
        act: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegKind::*;
    use RegStat::*;

    struct Case {
        what: &'static str,
        solicited: bool,
        line: &'static str,
        kind: RegKind,
        n: Option<u8>,
        stat: RegStat,
        area: Option<u32>,
        cell: Option<u64>,
        act: Option<u8>,
    }

    /// Every line below is from ModemManager src/tests/test-modem-helpers.c (test_creg*,
    /// test_cgreg*, test_cereg*, test_c5greg*), named after the modem given there.
    #[rustfmt::skip]
    fn cases() -> Vec<Case> {
        let c = |what, solicited, line, kind, n, stat, area, cell, act| Case {
            what, solicited, line, kind, n, stat, area, cell, act,
        };
        vec![
            c("CREG=1", true, "+CREG: 1,3", Cs, Some(1), Denied, None, None, None),
            c("CREG=1 urc", false, "+CREG: 3", Cs, None, Denied, None, None, None),
            c("Sierra Mercury", true, "+CREG: 1,1,84CD,00D30173", Cs, Some(1), Home, Some(0x84cd), Some(0xd30173), None),
            c("Sierra Mercury urc", false, "+CREG: 1,84CD,00D30156", Cs, None, Home, Some(0x84cd), Some(0xd30156), None),
            c("SE K850i", true, "+CREG: 2,1,\"CE00\",\"01CEAD8F\"", Cs, Some(2), Home, Some(0xce00), Some(0x01ce_ad8f), None),
            c("SE K850i urc", false, "+CREG: 1,\"CE00\",\"00005449\"", Cs, None, Home, Some(0xce00), Some(0x5449), None),
            c("Huawei E160G unregistered", true, "+CREG: 2,0,00,0", Cs, Some(2), NotRegistered, Some(0), Some(0), None),
            c("Huawei E160G", true, "+CREG: 2,1,8BE3,2BAF", Cs, Some(2), Home, Some(0x8be3), Some(0x2baf), None),
            c("Novatel XU870 urc", false, "+CREG: 2,,", Cs, None, Searching, None, None, None),
            c("Iridium", true, "+CREG:002,001,\"18d8\",\"ffff\"", Cs, Some(2), Home, Some(0x18d8), Some(0xffff), None),
            c("no leading zeros urc", false, "+CREG: 1,0001,0010,0", Cs, None, Home, Some(1), Some(0x10), Some(0)),
            c("leading zeros urc", false, "+CREG: 001,\"0001\",\"0010\",000", Cs, None, Home, Some(1), Some(0x10), Some(0)),
            c("u-blox Toby-L2", true, "+CREG: 2,6,\"8B37\",\"0A265185\",7", Cs, Some(2), Home, Some(0x8b37), Some(0x0a26_5185), Some(7)),
            c("u-blox Toby-L2 urc", false, "+CREG: 6,\"8B37\",\"0A265185\",7", Cs, None, Home, Some(0x8b37), Some(0x0a26_5185), Some(7)),
            c("CGREG=1", true, "+CGREG: 1,3", Gprs, Some(1), Denied, None, None, None),
            c("Ericsson F3607gw", true, "+CGREG: 2,1,\"8BE3\",\"00002B5D\",3", Gprs, Some(2), Home, Some(0x8be3), Some(0x2b5d), Some(3)),
            c("Ericsson F3607gw urc", false, "+CGREG: 1,\"8BE3\",\"00002B5D\",3", Gprs, None, Home, Some(0x8be3), Some(0x2b5d), Some(3)),
            c("SE MD400 urc with <n>", false, "+CREG: 2,5,\"0502\",\"0404736D\"", Cs, Some(2), Roaming, Some(0x0502), Some(0x0404_736d), None),
            c("SE MD400 cgreg urc", false, "+CGREG: 5,\"0502\",\"0404736D\",2", Gprs, None, Roaming, Some(0x0502), Some(0x0404_736d), Some(2)),
            c("Alcatel X220D urc, random spaces", false, "+CGREG: 2,1, 81ED, 1A9CEB", Gprs, Some(2), Home, Some(0x81ed), Some(0x1a_9ceb), None),
            c("Samsung Wave S8500", false, "+CREG: 2,1,000B,2816, B, C2816", Cs, Some(2), Home, Some(0xb), Some(0x2816), None),
            c("CGREG with RAC urc", false, "+CGREG: 1,\"1422\",\"00000142\",3,\"00\"", Gprs, None, Home, Some(0x1422), Some(0x142), Some(3)),
            c("CEREG=1", true, "+CEREG: 1,3", Eps, Some(1), Denied, None, None, None),
            c("CEREG=1 urc", false, "+CEREG: 3", Eps, None, Denied, None, None, None),
            c("CEREG=2", true, "+CEREG: 2,1, 1F00, 79D903 ,7", Eps, Some(2), Home, Some(0x1f00), Some(0x79_d903), Some(7)),
            c("CEREG=2 urc", false, "+CEREG: 1, 1F00, 79D903 ,7", Eps, None, Home, Some(0x1f00), Some(0x79_d903), Some(7)),
            c("Altair LTE", false, "+CEREG: 1, 2, 0001, 00000100, 7", Eps, Some(1), Searching, Some(1), Some(0x100), Some(7)),
            c("Altair LTE urc", false, "+CEREG: 2, 0001, 00000100, 7", Eps, None, Searching, Some(1), Some(0x100), Some(7)),
            c("Novatel E362 (RAC)", true, "+CEREG: 2,1, 1F00, 20 ,79D903 ,7", Eps, Some(2), Home, Some(0x1f00), Some(0x79_d903), Some(7)),
            c("Novatel E362 urc (RAC)", false, "+CEREG: 1, 1F00, 20 ,79D903 ,7", Eps, None, Home, Some(0x1f00), Some(0x79_d903), Some(7)),
            c("Thuraya", true, "+CGREG: 2, 1, \"0426\", \"F00F\"", Gprs, Some(2), Home, Some(0x0426), Some(0xf00f), None),
            c("Thuraya urc", false, "+CGREG: 1, \"0426\", \"F00F\"", Gprs, None, Home, Some(0x0426), Some(0xf00f), None),
            c("C5GREG=1", true, "+C5GREG: 1,3", Nr5g, Some(1), Denied, None, None, None),
            c("C5GREG=1 urc", false, "+C5GREG: 3", Nr5g, None, Denied, None, None, None),
            c("C5GREG=2", true, "+C5GREG: 2,1,1F00,79D903,11,6,ABCDEF", Nr5g, Some(2), Home, Some(0x1f00), Some(0x79_d903), Some(11)),
            c("C5GREG=2 urc", false, "+C5GREG: 1,1F00,79D903,11,6,ABCDEF", Nr5g, None, Home, Some(0x1f00), Some(0x79_d903), Some(11)),
            // Shapes from the brief and from module logs (u-blox SARA-R5 test, Quectel logs).
            c("CEREG read n=0", true, "+CEREG: 0,1", Eps, Some(0), Home, None, None, None),
            c("CEREG urc with TAC/CI", false, "+CEREG: 1,\"1A2B\",\"01A2B3C4\",7", Eps, None, Home, Some(0x1a2b), Some(0x01a2_b3c4), Some(7)),
            c("SARA-R5 CEREG read, LTE-M", true, "+CEREG: 2,1,\"00A1\",\"0000A1B2\",9", Eps, Some(2), Home, Some(0xa1), Some(0xa1b2), Some(9)),
        ]
    }

    #[test]
    fn table() {
        for case in cases() {
            let got = if case.solicited {
                registration(&[case.line.to_string()])
            } else {
                registration_urc(case.line)
            }
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
            assert_eq!(got.kind, case.kind, "{}", case.what);
            assert_eq!(got.n, case.n, "{}", case.what);
            assert_eq!(got.stat, case.stat, "{}", case.what);
            assert_eq!(got.area, case.area, "{}", case.what);
            assert_eq!(got.cell, case.cell, "{}", case.what);
            assert_eq!(got.act, case.act, "{}", case.what);
        }
    }

    #[test]
    fn gobi_weird_lac_is_dropped_not_misread() {
        // Qualcomm Gobi 1000 (MM test_creg2_gobi_weird_solicited): "  0 5" is no number.
        let r = registration(&["+CREG: 2,1,  0 5, 2715".to_string()]).unwrap();
        assert_eq!((r.stat, r.area, r.cell), (Home, None, Some(0x2715)));
    }

    #[test]
    fn read_answer_skips_other_lines() {
        let lines = [
            "+CGPADDR: 1,\"10.0.0.1\"".to_string(),
            "+CEREG: 0,5".to_string(),
        ];
        assert_eq!(registration(&lines).unwrap().stat, Roaming);
    }

    #[test]
    fn errors() {
        assert!(registration(&[]).is_err());
        assert!(registration(&["+CEREG: 2".to_string()]).is_err());
        assert!(registration(&["+CEREG: x,1".to_string()]).is_err());
        assert!(registration_urc("+CEREG:").is_err());
        assert!(registration_urc("+COPS: 0").is_err());
    }

    #[test]
    fn stat_codes() {
        assert!(RegStat::from_code(1).is_registered());
        assert!(RegStat::from_code(5).is_registered());
        assert!(RegStat::from_code(9).is_registered());
        assert!(!RegStat::from_code(8).is_registered());
        assert_eq!(RegStat::from_code(99), Unknown);
    }

    /// ModemManager src/plugins/huawei/tests/test-modem-helpers-huawei.c (sysinfoex_tests).
    #[test]
    fn huawei_sysinfoex() {
        for line in [
            "^SYSINFOEX:2,4,5,1,,3,WCDMA,41,HSPA+",
            "^SYSINFOEX:2,4,5,1,,3,\"WCDMA\",41,\"HSPA+\"",
            "^SYSINFOEX: 2,4,5,1,0,3,\"WCDMA\",41,\"HSPA+\"",
        ] {
            let r = sysinfoex(&[line.to_string()]).unwrap();
            assert_eq!(
                (r.kind, r.stat, r.raw_stat),
                (HuaweiSysinfoex, Home, 2),
                "{line}"
            );
        }
        let r = sysinfoex(&["^SYSINFOEX:2,3,1,1,,6,\"LTE\",101,\"LTE\"".to_string()]).unwrap();
        assert_eq!(r.stat, Roaming);
        let r = sysinfoex(&["^SYSINFOEX:0,0,0,1,,0,\"\",0,\"\"".to_string()]).unwrap();
        assert_eq!(r.stat, NotRegistered);
        assert!(sysinfoex(&["^SYSINFOEX:".to_string()]).is_err());
    }

    #[test]
    fn a_urc_with_location_before_the_answer_does_not_hide_it() {
        // Seen from the simulator: the cell changed while AT+CEREG? was in flight.
        let lines = vec![
            "+CEREG: 1,\"1A2B\",\"01A2B3C4\",7".to_owned(),
            "+CEREG: 2,1,\"1A2B\",\"01A2B3C4\",7".to_owned(),
        ];
        let r = registration(&lines).unwrap();
        assert_eq!(r.stat, Home);
        assert_eq!(r.n, Some(2));
        assert!(registration(&["+CEREG: x".to_owned()]).is_err());
    }
}
