//! Identity: `ATI` text, `+CGMM` model, `+CGSN` IMEI, and the SIM's ICCID from the many vendor
//! spellings (`+CCID`, `+ICCID`, `^ICCID`, `+QCCID`, `!ICCID`).

use super::fields::strip_tag;
use super::ParseError;

/// What a modem says about itself. Parsers fill what their command reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
    pub iccid: Option<String>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

fn non_empty(s: &str) -> Option<String> {
    let s = unquote(s);
    (!s.is_empty()).then(|| s.to_string())
}

/// `ATI` in either of the two shapes modems use:
/// - `Key: value` lines (Huawei, Sierra, SIMCom): `Manufacturer:`, `Model:`, `Revision:`, `IMEI:`;
/// - bare lines (Quectel, Fibocom): manufacturer, model, then `Revision: ...`.
///
/// `+GCAP:`, `IMEI SV:`, `MEID:`, `FSN:` and other keys are ignored.
pub fn ati(lines: &[String]) -> Result<Identity, ParseError> {
    let mut id = Identity::default();
    let mut bare = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('+') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            bare.push(line);
            continue;
        };
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "manufacturer" => &mut id.manufacturer,
            "model" => &mut id.model,
            "revision" => &mut id.revision,
            "imei" => &mut id.imei,
            _ => continue,
        };
        if slot.is_none() {
            *slot = non_empty(value);
        }
    }
    let mut bare = bare.into_iter();
    if id.manufacturer.is_none() {
        id.manufacturer = bare.next().and_then(non_empty);
    }
    if id.model.is_none() {
        id.model = bare.next().and_then(non_empty);
    }
    if id.manufacturer.is_none() && id.model.is_none() {
        return Err(ParseError::Missing("ATI manufacturer/model"));
    }
    Ok(id)
}

/// The first non-empty line, with an optional `tag` stripped.
fn first_value<'a>(lines: &'a [String], tags: &[&str]) -> Option<&'a str> {
    let line = lines.iter().map(|l| l.trim()).find(|l| !l.is_empty())?;
    let value = tags
        .iter()
        .find_map(|tag| strip_tag(line, tag))
        .unwrap_or(line);
    Some(unquote(value))
}

/// The answer to `AT+CGMM` / `AT+GMM`: `EC25`, or `+CGMM: EC25` on some firmwares.
pub fn model(lines: &[String]) -> Result<String, ParseError> {
    let value = first_value(lines, &["+CGMM:", "+GMM:"]).ok_or(ParseError::Missing("model"))?;
    non_empty(value).ok_or_else(|| ParseError::invalid("model", value))
}

/// The answer to `AT+CGSN` / `AT+GSN`: 14 to 17 digits (IMEI, IMEI with check digit, IMEISV),
/// bare, tagged (`+CGSN: ...`) or quoted.
pub fn imei(lines: &[String]) -> Result<String, ParseError> {
    let value = first_value(lines, &["+CGSN:", "+GSN:"]).ok_or(ParseError::Missing("IMEI"))?;
    let ok = (14..=17).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(ParseError::invalid("IMEI", value));
    }
    Ok(value.to_string())
}

/// An ICCID as the SIM stores it. Rules from ModemManager src/mm-modem-helpers.c
/// (`mm_3gpp_parse_iccid`) and its tests: quotes and trailing `F` padding go; a value starting
/// `98` has its digits swapped in pairs (BCD as read raw from the card); hex digits in the
/// account part are allowed (some Chinese issuers); the result must start with the telecom MII
/// `89` and be 19 or 20 characters long.
pub fn iccid(lines: &[String]) -> Result<String, ParseError> {
    const TAGS: &[&str] = &[
        "+CCID:", "+ICCID:", "^ICCID:", "+QCCID:", "!ICCID:", "ICCID:",
    ];
    let raw = first_value(lines, TAGS).ok_or(ParseError::Missing("ICCID"))?;
    let bad = || ParseError::invalid("ICCID", raw);
    if !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut digits: Vec<u8> = raw.bytes().map(|b| b.to_ascii_uppercase()).collect();
    if digits.starts_with(b"98") {
        for pair in digits.chunks_mut(2) {
            pair.reverse();
        }
    }
    while digits.last() == Some(&b'F') {
        digits.pop();
    }
    if !(19..=20).contains(&digits.len()) || !digits.starts_with(b"89") {
        return Err(bad());
    }
    String::from_utf8(digits).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn ati_key_value() {
        // Huawei E1550 (ModemManager src/tests/test-modem-helpers.c, devids).
        let id = ati(&lines(
            "Manufacturer: huawei\nModel: E1550\nRevision: 11.608.09.01.21\nIMEI: 235012412595195\n+GCAP: +CGSM,+FCLASS,+DS",
        ))
        .unwrap();
        assert_eq!(id.manufacturer.as_deref(), Some("huawei"));
        assert_eq!(id.model.as_deref(), Some("E1550"));
        assert_eq!(id.revision.as_deref(), Some("11.608.09.01.21"));
        assert_eq!(id.imei.as_deref(), Some("235012412595195"));
        // Sierra EM7455 (Sierra Wireless ATI capture in an EM7455 notes repo).
        let id = ati(&lines(
            "Manufacturer: Sierra Wireless, Incorporated\nModel: EM7455\nRevision: SWI9X30C_02.24.05.06 r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09\nMEID: 35907306114129\nIMEI: 359073061141290\nIMEI SV: 9\nFSN: LF620543650210\n+GCAP: +CGSM",
        ))
        .unwrap();
        assert_eq!(
            id.manufacturer.as_deref(),
            Some("Sierra Wireless, Incorporated")
        );
        assert_eq!(id.model.as_deref(), Some("EM7455"));
        assert_eq!(id.imei.as_deref(), Some("359073061141290"));
        // SIMCom SIM7600G-H (LilyGO modem series notes), with empty keys.
        let id = ati(&lines(
            "Manufacturer: SIMCOM INCORPORATED\nModel: SIMCOM_SIM7600G-H\nRevision: LE20B04SIM7600G22\nQCN:\nIMEI: 868822040061788\nMEID:\n+GCAP: +CGSM\nDeviceInfo: 173,170",
        ))
        .unwrap();
        assert_eq!(id.model.as_deref(), Some("SIMCOM_SIM7600G-H"));
        assert_eq!(id.revision.as_deref(), Some("LE20B04SIM7600G22"));
    }

    #[test]
    fn ati_bare() {
        // Quectel EC25 (several EC25 test fixtures).
        let id = ati(&lines("Quectel\nEC25\nRevision: EC25EFAR06A06M4G")).unwrap();
        assert_eq!(id.manufacturer.as_deref(), Some("Quectel"));
        assert_eq!(id.model.as_deref(), Some("EC25"));
        assert_eq!(id.revision.as_deref(), Some("EC25EFAR06A06M4G"));
        assert_eq!(id.imei, None);
        assert!(ati(&[]).is_err());
        assert!(ati(&lines("+GCAP: +CGSM")).is_err());
    }

    #[test]
    fn model_and_imei() {
        assert_eq!(model(&lines("EC25")).unwrap(), "EC25");
        assert_eq!(
            model(&lines("+CGMM: \"ME909s-120\"")).unwrap(),
            "ME909s-120"
        );
        assert!(model(&lines("\"\"")).is_err());
        assert_eq!(imei(&lines("866425030123456")).unwrap(), "866425030123456");
        assert_eq!(
            imei(&lines("+CGSN: \"351602000330570\"")).unwrap(),
            "351602000330570"
        );
        assert!(imei(&lines("12345")).is_err());
        assert!(imei(&lines("ERROR-ish")).is_err());
        assert!(imei(&[]).is_err());
    }

    /// ModemManager src/tests/test-modem-helpers.c (test_iccid_parse_*), then vendor spellings.
    #[test]
    fn iccid_rules() {
        let ok = |raw: &str, want: &str| assert_eq!(iccid(&lines(raw)).unwrap(), want, "{raw}");
        ok("\"984402003576012594F9\"", "8944200053671052499");
        ok("98231420326409614067", "89324102234690160476");
        ok("8944200053671052499F", "8944200053671052499");
        ok("8944200053671052499", "8944200053671052499");
        ok("\"89324102234690160476\"", "89324102234690160476");
        ok("\"898602F9091830030220\"", "898602F9091830030220");
        ok("\"898602C0123456789012\"", "898602C0123456789012");
        ok("+QCCID: 89860117851014783481", "89860117851014783481");
        ok("+ICCID: 89860117851014783481", "89860117851014783481");
        ok("^ICCID: \"98680071840141874736\"", "89860017481014787463");
        ok("+CCID: \"8944110068256270054F\"", "8944110068256270054");
        let bad = |raw: &str| assert!(iccid(&lines(raw)).is_err(), "{raw}");
        bad("982314203264096");
        bad("98231420326pl9614067");
        bad("\"0044200053671052499\"");
        bad("0044200053671052499");
        bad("");
    }
}
