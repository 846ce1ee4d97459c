//! Signal quality: `+CSQ`, `+CESQ` (3GPP TS 27.007 §8.5, §8.69), Huawei `^HCSQ`, Quectel `+QCSQ`
//! and `+QENG="servingcell"`. Values are converted to dBm/dB; "unknown" codes become `None`.
//!
//! Level-to-value conversions follow ModemManager src/mm-modem-helpers.c
//! (`mm_3gpp_rxlev_to_rssi`, `_rscp_level_to_rscp`, `_ecn0_level_to_ecio`, `_rsrq_level_to_rsrq`,
//! `_rsrp_level_to_rsrp`): the value of a level is the lower edge of its 27.007 bin.

use super::fields::{dec_i32, dec_u32, find_tagged, split, Field};
use super::ParseError;

/// One signal reading. Only the fields the format carries are set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    /// Radio technology as the modem named it (`LTE`, `WCDMA`, `NR5G`, `NOSERVICE`...).
    pub tech: Option<String>,
    pub rssi_dbm: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    pub rsrq_db: Option<f64>,
    pub sinr_db: Option<f64>,
    pub rscp_dbm: Option<f64>,
    pub ecio_db: Option<f64>,
}

fn level(fields: &[Field], i: usize) -> Option<u32> {
    fields.get(i).and_then(|f| dec_u32(&f.text))
}

/// `level` mapped by `base + step * level` when `level <= max`; anything else is "unknown".
fn scale(level: Option<u32>, max: u32, base: f64, step: f64) -> Option<f64> {
    level
        .filter(|l| *l <= max)
        .map(|l| base + step * f64::from(l))
}

/// `+CSQ: <rssi>,<ber>`: 0..=31 is -113 + 2·rssi dBm, 99 (or anything out of range) is unknown.
pub fn csq(lines: &[String]) -> Result<Signal, ParseError> {
    let (_, params) = find_tagged(lines, &["+CSQ:"]).ok_or(ParseError::Missing("+CSQ"))?;
    let fields = split(params);
    let text = fields.first().map(|f| f.text.as_str()).unwrap_or("");
    let rssi = dec_u32(text).ok_or_else(|| ParseError::invalid("+CSQ <rssi>", text))?;
    Ok(Signal {
        rssi_dbm: scale(Some(rssi), 31, -113.0, 2.0),
        ..Signal::default()
    })
}

/// A signal report that arrives unsolicited: Huawei `^HCSQ:` and `^RSSI: <n>` (the `+CSQ`
/// scale), or a bare `+CSQ:` line. `None` for anything else.
pub fn signal_urc(line: &str) -> Option<Signal> {
    let line = line.trim();
    let one = [line.to_owned()];
    if line.starts_with("^HCSQ:") {
        return hcsq(&one).ok();
    }
    if let Some(rest) = line.strip_prefix("^RSSI:") {
        return csq(&[format!("+CSQ: {},99", rest.trim())]).ok();
    }
    if line.starts_with("+CSQ:") {
        return csq(&one).ok();
    }
    None
}

/// `+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]`.
/// The NR fields (27.007 Rel-15) fill rsrp/rsrq/sinr when LTE reports unknown; their scaling
/// (ss_rsrq -43.5 + 0.5·v, ss_rsrp -157 + v, ss_sinr -23.5 + 0.5·v) follows the same lower-edge
/// rule as ModemManager's LTE conversions (ModemManager has no NR case to copy).
pub fn cesq(lines: &[String]) -> Result<Signal, ParseError> {
    let (_, params) = find_tagged(lines, &["+CESQ:"]).ok_or(ParseError::Missing("+CESQ"))?;
    let f = split(params);
    if f.len() < 6 || (0..6).any(|i| level(&f, i).is_none()) {
        return Err(ParseError::invalid("+CESQ", params));
    }
    let mut s = Signal {
        rssi_dbm: scale(level(&f, 0), 63, -111.0, 1.0),
        rscp_dbm: scale(level(&f, 2), 96, -121.0, 1.0),
        ecio_db: scale(level(&f, 3), 49, -24.5, 0.5),
        rsrq_db: scale(level(&f, 4), 34, -20.0, 0.5),
        rsrp_dbm: scale(level(&f, 5), 97, -141.0, 1.0),
        ..Signal::default()
    };
    if s.rsrp_dbm.is_some() {
        s.tech = Some("LTE".into());
    } else if let Some(rsrp) = scale(level(&f, 7), 127, -157.0, 1.0) {
        s.tech = Some("NR5G".into());
        s.rsrp_dbm = Some(rsrp);
        s.rsrq_db = scale(level(&f, 6), 127, -43.5, 0.5);
        s.sinr_db = scale(level(&f, 8), 127, -23.5, 0.5);
    } else if s.rscp_dbm.is_some() {
        s.tech = Some("UMTS".into());
    } else if s.rssi_dbm.is_some() {
        s.tech = Some("GSM".into());
    }
    Ok(s)
}

/// Huawei `^HCSQ: "<sysmode>",<v1>[,<v2>[,<v3>[,<v4>]]]` (ME909s, E3372 stick firmware).
/// LTE: rssi, rsrp, sinr, rsrq; WCDMA: rssi, rscp, ecio; GSM: rssi. Scaling per the Huawei
/// AT reference as also used by SClass `HuaweiGSMModemController.cpp`: rssi/rscp -121 + v
/// (0..=96), rsrp -141 + v (0..=97), sinr -20.2 + 0.2·v (0..=251), rsrq -20 + 0.5·v (0..=34),
/// ecio -32.5 + 0.5·v (0..=65); 255 is unknown. `NOSERVICE` is a valid, empty reading.
pub fn hcsq(lines: &[String]) -> Result<Signal, ParseError> {
    let (_, params) = find_tagged(lines, &["^HCSQ:"]).ok_or(ParseError::Missing("^HCSQ"))?;
    let f = split(params);
    let mode = f
        .first()
        .map(|f| f.text.to_ascii_uppercase())
        .unwrap_or_default();
    let mut s = Signal {
        tech: Some(mode.clone()),
        ..Signal::default()
    };
    match mode.as_str() {
        "LTE" => {
            s.rssi_dbm = scale(level(&f, 1), 96, -121.0, 1.0);
            s.rsrp_dbm = scale(level(&f, 2), 97, -141.0, 1.0);
            s.sinr_db = scale(level(&f, 3), 251, -20.2, 0.2);
            s.rsrq_db = scale(level(&f, 4), 34, -20.0, 0.5);
        }
        "WCDMA" | "TD-SCDMA" => {
            s.rssi_dbm = scale(level(&f, 1), 96, -121.0, 1.0);
            s.rscp_dbm = scale(level(&f, 2), 96, -121.0, 1.0);
            s.ecio_db = scale(level(&f, 3), 65, -32.5, 0.5);
        }
        "GSM" => s.rssi_dbm = scale(level(&f, 1), 96, -121.0, 1.0),
        "NOSERVICE" => {}
        _ => return Err(ParseError::invalid("^HCSQ <sysmode>", params)),
    }
    Ok(s)
}

fn signed(fields: &[Field], i: usize) -> Option<f64> {
    fields.get(i).and_then(|f| dec_i32(&f.text)).map(f64::from)
}

/// Quectel `+QCSQ: "<sysmode>",<values>` (EC2x/EG2x/EM12/RM5xx). Values are already dBm/dB
/// except LTE-family SINR, reported as 0..=250 for -20..=30 dB (SINR/5 - 20). `NR5G` is
/// `rsrp,sinr,rsrq` with SINR taken as dB (examples from RM500Q logs; not in a Quectel manual
/// we could read). `NOSERVICE` is a valid, empty reading.
pub fn qcsq(lines: &[String]) -> Result<Signal, ParseError> {
    let (_, params) = find_tagged(lines, &["+QCSQ:"]).ok_or(ParseError::Missing("+QCSQ"))?;
    let f = split(params);
    let mode = f
        .first()
        .map(|f| f.text.to_ascii_uppercase())
        .unwrap_or_default();
    let mut s = Signal {
        tech: Some(mode.clone()),
        ..Signal::default()
    };
    match mode.as_str() {
        "LTE" | "EMTC" | "CAT-M1" | "CAT-M" | "NBIOT" | "CAT-NB1" => {
            s.rssi_dbm = signed(&f, 1);
            s.rsrp_dbm = signed(&f, 2);
            s.sinr_db = signed(&f, 3).map(|v| v / 5.0 - 20.0);
            s.rsrq_db = signed(&f, 4);
        }
        "WCDMA" | "TDSCDMA" => {
            s.rssi_dbm = signed(&f, 1);
            s.rscp_dbm = signed(&f, 2);
            s.ecio_db = signed(&f, 3);
        }
        "GSM" => s.rssi_dbm = signed(&f, 1),
        "NR5G" => {
            s.rsrp_dbm = signed(&f, 1);
            s.sinr_db = signed(&f, 2);
            s.rsrq_db = signed(&f, 3);
        }
        "NOSERVICE" => {}
        _ => return Err(ParseError::invalid("+QCSQ <sysmode>", params)),
    }
    Ok(s)
}

/// Quectel `+QENG: "servingcell",<state>,"LTE",<is_tdd>,<mcc>,<mnc>,<cellid>,<pcid>,<earfcn>,
/// <band>,<ul_bw>,<dl_bw>,<tac>,<rsrp>,<rsrq>,<rssi>,<sinr>,...`. Only LTE is read, and only
/// RSRP/RSRQ/RSSI: the SINR column's scale differs between firmwares. A cell search
/// (`"SEARCH"`, `"LIMSRV"`, or no RAT) is a valid, empty reading.
pub fn qeng_servingcell(lines: &[String]) -> Result<Signal, ParseError> {
    let (_, params) = find_tagged(lines, &["+QENG:"]).ok_or(ParseError::Missing("+QENG"))?;
    let f = split(params);
    if !f
        .first()
        .is_some_and(|f| f.text.eq_ignore_ascii_case("servingcell"))
    {
        return Err(ParseError::invalid("+QENG servingcell", params));
    }
    let rat = f.get(2).map(|f| f.text.to_ascii_uppercase());
    match rat.as_deref() {
        Some("LTE") => {
            let s = Signal {
                tech: rat.clone(),
                rsrp_dbm: signed(&f, 13),
                rsrq_db: signed(&f, 14),
                rssi_dbm: signed(&f, 15),
                ..Signal::default()
            };
            if s.rsrp_dbm.is_none() {
                return Err(ParseError::invalid("+QENG LTE <rsrp>", params));
            }
            Ok(s)
        }
        None => Ok(Signal::default()),
        Some(other) => Ok(Signal {
            tech: Some(other.to_string()),
            ..Signal::default()
        }),
    }
}

#[cfg(test)]
mod urc_tests {
    use super::*;

    #[test]
    fn unsolicited_signal_reports() {
        // Huawei E3372/ME909s report ^RSSI and ^HCSQ unsolicited (ModemManager
        // src/plugins/huawei/mm-broadband-modem-huawei.c handles both).
        assert_eq!(signal_urc("^RSSI: 17").unwrap().rssi_dbm, Some(-79.0));
        let lte = signal_urc("^HCSQ: \"LTE\",49,49,65,18").unwrap();
        assert_eq!(lte.tech.as_deref(), Some("LTE"));
        assert!(lte.rsrp_dbm.is_some());
        assert!(signal_urc("^RSSI: 99").unwrap().rssi_dbm.is_none());
        assert!(signal_urc("+CEREG: 1").is_none());
        assert!(signal_urc("^RSSI: junk").is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Vec<String> {
        vec![line.to_string()]
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn csq_values() {
        // "+CSQ: 12,99" from a Telit T77 capture in RooterSource t77data.sh; 99,99 is "unknown".
        assert_eq!(csq(&one("+CSQ: 12,99")).unwrap().rssi_dbm, Some(-89.0));
        assert_eq!(csq(&one("+CSQ: 0,99")).unwrap().rssi_dbm, Some(-113.0));
        assert_eq!(csq(&one("+CSQ: 31,0")).unwrap().rssi_dbm, Some(-51.0));
        assert_eq!(csq(&one("+CSQ: 99,99")).unwrap().rssi_dbm, None);
        assert!(csq(&one("+CSQ: ,99")).is_err());
        assert!(csq(&one("+CSQ")).is_err());
    }

    #[test]
    fn cesq_values() {
        // nRF9160 (SORACOM docs), u-blox SARA-R5 driver tests, Fibocom on NR (a GTCCINFO tool).
        let s = cesq(&one("+CESQ: 99,99,255,255,15,39")).unwrap();
        assert_eq!(
            (s.rsrq_db, s.rsrp_dbm, s.rssi_dbm),
            (Some(-12.5), Some(-102.0), None)
        );
        assert_eq!(s.tech.as_deref(), Some("LTE"));
        let s = cesq(&one("+CESQ: 99,99,255,255,26,50")).unwrap();
        assert_eq!((s.rsrq_db, s.rsrp_dbm), (Some(-7.0), Some(-91.0)));
        let s = cesq(&one("+CESQ: 99,99,255,255,255,255")).unwrap();
        assert_eq!(s, Signal::default());
        let s = cesq(&one("+CESQ: 99,99,255,255,255,255,65,75,75")).unwrap();
        assert_eq!(s.tech.as_deref(), Some("NR5G"));
        assert_eq!(
            (s.rsrp_dbm, s.rsrq_db, s.sinr_db),
            (Some(-82.0), Some(-11.0), Some(14.0))
        );
        let s = cesq(&one("+CESQ: 40,0,255,255,255,255")).unwrap();
        assert_eq!((s.tech.as_deref(), s.rssi_dbm), (Some("GSM"), Some(-71.0)));
        assert!(cesq(&one("+CESQ: 99,99,255")).is_err());
    }

    /// ModemManager src/plugins/huawei/tests/test-modem-helpers-huawei.c (hcsq_tests).
    #[test]
    fn hcsq_values() {
        let s = hcsq(&one("^HCSQ:\"LTE\",30,19,66,0")).unwrap();
        assert_eq!(s.tech.as_deref(), Some("LTE"));
        assert_eq!(
            (s.rssi_dbm, s.rsrp_dbm, s.rsrq_db),
            (Some(-91.0), Some(-122.0), Some(-20.0))
        );
        assert!(close(s.sinr_db, -7.0));
        let s = hcsq(&one("^HCSQ: \"WCDMA\",30,30,58")).unwrap();
        assert_eq!(
            (s.rssi_dbm, s.rscp_dbm, s.ecio_db),
            (Some(-91.0), Some(-91.0), Some(-3.5))
        );
        let s = hcsq(&one("^HCSQ: \"GSM\",36,255")).unwrap();
        assert_eq!(s.rssi_dbm, Some(-85.0));
        let s = hcsq(&one("^HCSQ: LTE,33,40,135,11")).unwrap();
        assert_eq!((s.rsrp_dbm, s.rsrq_db), (Some(-101.0), Some(-14.5)));
        assert!(close(s.sinr_db, 6.8));
        assert_eq!(hcsq(&one("^HCSQ: \"NOSERVICE\"")).unwrap().rssi_dbm, None);
        assert_eq!(
            hcsq(&one("^HCSQ: NOSERVICE")).unwrap().tech.as_deref(),
            Some("NOSERVICE")
        );
        assert!(hcsq(&one("^HCSQ: \"WIMAX\",1")).is_err());
    }

    #[test]
    fn qcsq_values() {
        // EC200 driver comment, Quectel BG96 CAT-M1 diagnostics, RM500Q lab notes.
        let s = qcsq(&one("+QCSQ: \"LTE\",-52,-81,195,-10")).unwrap();
        assert_eq!(
            (s.rssi_dbm, s.rsrp_dbm, s.rsrq_db),
            (Some(-52.0), Some(-81.0), Some(-10.0))
        );
        assert!(close(s.sinr_db, 19.0));
        let s = qcsq(&one("+QCSQ: \"CAT-M1\",-62,-92,93,-14")).unwrap();
        assert!(close(s.sinr_db, -1.4));
        let s = qcsq(&one("+QCSQ: \"NR5G\",-68,38,-11")).unwrap();
        assert_eq!(
            (s.rsrp_dbm, s.sinr_db, s.rsrq_db),
            (Some(-68.0), Some(38.0), Some(-11.0))
        );
        let s = qcsq(&one("+QCSQ: \"WCDMA\",69,-72,-4")).unwrap();
        assert_eq!((s.rscp_dbm, s.ecio_db), (Some(-72.0), Some(-4.0)));
        let s = qcsq(&one("+QCSQ: \"GSM\",125")).unwrap();
        assert_eq!(s.rssi_dbm, Some(125.0));
        assert_eq!(qcsq(&one("+QCSQ: \"NOSERVICE\"")).unwrap().rsrp_dbm, None);
        assert!(qcsq(&one("+QCSQ: \"FOO\",1")).is_err());
    }

    #[test]
    fn qeng_values() {
        // Quectel EC800/EC25 captures (ESP-IDF CAT1 driver comment, sim4g tool comment).
        let s = qeng_servingcell(&one(
            "+QENG: \"servingcell\",\"NOCONN\",\"LTE\",\"FDD\",460,11,E0B70B,374,100,1,5,5,5F0C,-80,-6,-53,30,39",
        ))
        .unwrap();
        assert_eq!(
            (s.rsrp_dbm, s.rsrq_db, s.rssi_dbm),
            (Some(-80.0), Some(-6.0), Some(-53.0))
        );
        let s = qeng_servingcell(&one(
            "+QENG: \"servingcell\",\"NOCONN\",\"LTE\",\"FDD\",460,11,47ADF04,160,100,1,5,5,F274,-76,-7,-48,28,46",
        ))
        .unwrap();
        assert_eq!(s.rsrp_dbm, Some(-76.0));
        let s = qeng_servingcell(&one("+QENG: \"servingcell\",\"SEARCH\"")).unwrap();
        assert_eq!(s, Signal::default());
        assert!(qeng_servingcell(&one("+QENG: \"neighbourcell intra\",\"LTE\"")).is_err());
        assert!(
            qeng_servingcell(&one("+QENG: \"servingcell\",\"NOCONN\",\"LTE\",\"FDD\"")).is_err()
        );
    }
}
