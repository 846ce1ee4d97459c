//! Line tables for the AT codec: which lines are final result codes and which are URCs.
//! Pure string matching; the codec decides what to do with the answer.

use std::fmt;

/// The code of a `+CME ERROR` / `+CMS ERROR`: a number with `AT+CMEE=1`, text with `AT+CMEE=2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    Numeric(u16),
    Text(String),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Numeric(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// How a command ended (V.250 verbose result codes plus the 27.007 error reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    Ok,
    Error,
    CmeError(ErrorCode),
    CmsError(ErrorCode),
    NoCarrier,
    /// Huawei and ZTE firmwares answer unknown commands this way instead of `ERROR`.
    CommandNotSupport,
    Busy,
    NoAnswer,
    NoDialtone,
    /// `CONNECT` and its optional rate text (data calls; ends the command phase).
    Connect(String),
}

impl FinalResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// Codes that only ever answer a command; with nothing in flight they are strays, whereas
    /// `NO CARRIER`, `BUSY`... can also be genuine unsolicited call events.
    pub(crate) fn is_response_only(&self) -> bool {
        matches!(
            self,
            Self::Ok
                | Self::Error
                | Self::CmeError(_)
                | Self::CmsError(_)
                | Self::CommandNotSupport
        )
    }
}

impl fmt::Display for FinalResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("OK"),
            Self::Error => f.write_str("ERROR"),
            Self::CmeError(code) => write!(f, "+CME ERROR: {code}"),
            Self::CmsError(code) => write!(f, "+CMS ERROR: {code}"),
            Self::NoCarrier => f.write_str("NO CARRIER"),
            Self::CommandNotSupport => f.write_str("COMMAND NOT SUPPORT"),
            Self::Busy => f.write_str("BUSY"),
            Self::NoAnswer => f.write_str("NO ANSWER"),
            Self::NoDialtone => f.write_str("NO DIALTONE"),
            Self::Connect(rate) if rate.is_empty() => f.write_str("CONNECT"),
            Self::Connect(rate) => write!(f, "CONNECT {rate}"),
        }
    }
}

pub(crate) fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn error_code(rest: &str) -> ErrorCode {
    let rest = rest.trim_start_matches(':').trim();
    match rest.parse::<u16>() {
        Ok(n) => ErrorCode::Numeric(n),
        Err(_) => ErrorCode::Text(rest.to_string()),
    }
}

/// The final result code `line` carries, if it is one. `line` is already trimmed.
pub(crate) fn final_result(line: &str) -> Option<FinalResult> {
    const EXACT: &[(&str, FinalResult)] = &[
        ("OK", FinalResult::Ok),
        ("ERROR", FinalResult::Error),
        ("NO CARRIER", FinalResult::NoCarrier),
        ("BUSY", FinalResult::Busy),
        ("NO ANSWER", FinalResult::NoAnswer),
        ("NO DIALTONE", FinalResult::NoDialtone),
        ("NO DIAL TONE", FinalResult::NoDialtone),
        ("COMMAND NOT SUPPORT", FinalResult::CommandNotSupport),
    ];
    if let Some((_, result)) = EXACT.iter().find(|(s, _)| line.eq_ignore_ascii_case(s)) {
        return Some(result.clone());
    }
    for (tag, cms) in [("+CME ERROR", false), ("+CMS ERROR", true)] {
        if starts_with_ci(line, tag) {
            let rest = line.get(tag.len()..).unwrap_or("");
            // "+CME ERRORS" or similar is not an error report.
            if !(rest.is_empty() || rest.starts_with(':') || rest.starts_with(' ')) {
                return None;
            }
            let code = error_code(rest);
            return Some(if cms {
                FinalResult::CmsError(code)
            } else {
                FinalResult::CmeError(code)
            });
        }
    }
    if line.eq_ignore_ascii_case("CONNECT") {
        return Some(FinalResult::Connect(String::new()));
    }
    if starts_with_ci(line, "CONNECT ") {
        let rate = line.get("CONNECT ".len()..).unwrap_or("").trim();
        return Some(FinalResult::Connect(rate.to_string()));
    }
    None
}

/// Registration reports: the read answer is `<n>,<stat>[,...]`, the URC `<stat>[,...]`.
const REGISTRATION_PREFIXES: &[&str] = &["+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:"];

/// Lines that start a URC whatever follows. Sources: 3GPP TS 27.007/27.005, and the handlers
/// ModemManager installs in src/plugins/huawei/mm-broadband-modem-huawei.c (^RSSI, ^MODE, ^BOOT,
/// ^SRVST, ^SIMST, ^HCSQ, ^NDISSTAT, ^RFSWITCH, ...) and src/plugins/quectel (+QIND, +QUSIM).
const URC_PREFIXES: &[&str] = &[
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "+C5GREG:",
    "+CPIN:",
    "+CFUN:",
    "+CGEV:",
    "+CMTI:",
    "+CMT:",
    "+CDS:",
    "+CDSI:",
    "+CBM:",
    "+CRING:",
    "+CLIP:",
    "+CCWA:",
    "+CUSD:",
    "+CIEV:",
    "+CTZV:",
    "+CTZE:",
    "+CTZEU:",
    "+CUSATP:",
    "+CUSATEND",
    "+PACSP",
    "+QIND:",
    "+QSTK",
    "+QUSIM:",
    "+QIURC:",
    "+QNETDEVSTATUS:",
    "^RSSI:",
    "^RSSILVL:",
    "^HRSSILVL:",
    "^HCSQ:",
    "^MODE:",
    "^SYSSTART",
    "^BOOT:",
    "^SRVST:",
    "^SIMST:",
    "^STIN:",
    "^CSNR:",
    "^DSFLOWRPT:",
    "^DSDORMANT:",
    "^NDISSTAT:",
    "^NDISEND:",
    "^PDPDEACT:",
    "^RFSWITCH:",
    "^NWTIME:",
    "^CEND:",
    "^ORIG:",
    "^CONF:",
    "^CONN:",
    "*ATREADY:",
];

/// Whole lines that are URCs (boot and SIM notices of Quectel, SIMCom and others).
const URC_EXACT: &[&str] = &[
    "RING",
    "RDY",
    "POWERED DOWN",
    "NORMAL POWER DOWN",
    "+SIM READY",
    "SMS DONE",
    "PB DONE",
    "SMS READY",
    "CALL READY",
    "START",
];

/// Parameters after a registration tag, counted outside quotes.
fn field_count(params: &str) -> usize {
    let mut in_quotes = false;
    let mut count = 1;
    for c in params.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => count += 1,
            _ => {}
        }
    }
    count
}

/// Whether `line` is a URC while the command named `cmd_name` is in flight (see module docs).
pub(crate) fn is_urc(line: &str, cmd_name: &str, cmd_is_set: bool) -> bool {
    if URC_EXACT.iter().any(|s| line.eq_ignore_ascii_case(s)) {
        return true;
    }
    let Some(prefix) = URC_PREFIXES.iter().find(|p| starts_with_ci(line, p)) else {
        return false;
    };
    if REGISTRATION_PREFIXES.contains(prefix) {
        let params = line.get(prefix.len()..).unwrap_or("").trim();
        if field_count(params) == 1 {
            return true;
        }
    }
    let tag = prefix.trim_end_matches(':');
    let owned = !cmd_is_set && starts_with_ci(cmd_name, tag);
    !owned
}
