//! Pure parsers for the information lines of status queries, in the style of ModemManager's
//! `mm-modem-helpers*.c`: each takes the [`Info`](super::at::AtEvent::Info) lines of one command
//! (or one URC line) and returns a typed value or a [`ParseError`]. No parser panics on any input.
//!
//! Profiles name a parser per query with [`ParserKind`]; [`parse`] dispatches to it and wraps the
//! result in [`Parsed`], so the shell can run any profile's queries without knowing the vendor.
//! Each submodule's tests carry real modem output and name the file it was taken from.

mod address;
mod fields;
mod identity;
mod operator;
mod registration;
mod signal;

use serde::Deserialize;

pub use address::{cgpaddr, huawei_dhcp, qiact, scpaddr, Addresses, HuaweiDhcp};
pub use identity::{ati, iccid, imei, model, Identity};
pub use operator::{cops, Operator};
pub use registration::{registration, registration_urc, sysinfoex, RegKind, RegStat, Registration};
pub use signal::{cesq, csq, hcsq, qcsq, qeng_servingcell, signal_urc, Signal};

/// Why a response could not be parsed. The messages name what was expected and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no {0} line in the response")]
    Missing(&'static str),
    #[error("bad {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
}

impl ParseError {
    pub(crate) fn invalid(what: &'static str, value: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            value: value.into(),
        }
    }
}

/// The parsers a profile can name (`parser = "..."` in `config/modems/*.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParserKind {
    /// `+CREG?` / `+CGREG?` / `+CEREG?` / `+C5GREG?` read answers.
    Registration,
    /// Huawei `^SYSINFOEX`, reported as a registration.
    Sysinfoex,
    Csq,
    Cesq,
    /// Huawei `^HCSQ?`.
    Hcsq,
    /// Quectel `+QCSQ`.
    Qcsq,
    /// Quectel `+QENG="servingcell"` (LTE only).
    Qeng,
    /// `+COPS?`.
    Cops,
    Cgpaddr,
    /// Quectel `+QIACT?`.
    Qiact,
    /// Sierra `!SCPADDR`.
    Scpaddr,
    /// Huawei `^DHCP?`.
    HuaweiDhcp,
    /// `ATI` identification text.
    Ati,
    /// `+CGMM` / `+GMM`.
    Model,
    /// `+CGSN` / `+GSN`.
    Imei,
    /// `+CCID`, `+ICCID`, `^ICCID`, `+QCCID`, `!ICCID`.
    Iccid,
}

/// What a query is for; a profile may only use a parser under its own category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Registration,
    Signal,
    Operator,
    Address,
    Identity,
}

impl ParserKind {
    /// The name profiles use.
    pub fn as_str(self) -> &'static str {
        use ParserKind::*;
        match self {
            Registration => "registration",
            Sysinfoex => "sysinfoex",
            Csq => "csq",
            Cesq => "cesq",
            Hcsq => "hcsq",
            Qcsq => "qcsq",
            Qeng => "qeng",
            Cops => "cops",
            Cgpaddr => "cgpaddr",
            Qiact => "qiact",
            Scpaddr => "scpaddr",
            HuaweiDhcp => "huawei_dhcp",
            Ati => "ati",
            Model => "model",
            Imei => "imei",
            Iccid => "iccid",
        }
    }

    pub fn category(self) -> Category {
        use ParserKind::*;
        match self {
            Registration | Sysinfoex => Category::Registration,
            Csq | Cesq | Hcsq | Qcsq | Qeng => Category::Signal,
            Cops => Category::Operator,
            Cgpaddr | Qiact | Scpaddr | HuaweiDhcp => Category::Address,
            Ati | Model | Imei | Iccid => Category::Identity,
        }
    }
}

/// A parsed answer, by category.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Registration(Registration),
    Signal(Signal),
    Operator(Operator),
    Address(Addresses),
    Identity(Identity),
}

/// Runs the parser `kind` on the information lines of one command.
pub fn parse(kind: ParserKind, lines: &[String]) -> Result<Parsed, ParseError> {
    use ParserKind::*;
    Ok(match kind {
        Registration => Parsed::Registration(registration(lines)?),
        Sysinfoex => Parsed::Registration(sysinfoex(lines)?),
        Csq => Parsed::Signal(csq(lines)?),
        Cesq => Parsed::Signal(cesq(lines)?),
        Hcsq => Parsed::Signal(hcsq(lines)?),
        Qcsq => Parsed::Signal(qcsq(lines)?),
        Qeng => Parsed::Signal(qeng_servingcell(lines)?),
        Cops => Parsed::Operator(cops(lines)?),
        Cgpaddr => Parsed::Address(cgpaddr(lines)?),
        Qiact => Parsed::Address(qiact(lines)?),
        Scpaddr => Parsed::Address(scpaddr(lines)?),
        HuaweiDhcp => Parsed::Address(huawei_dhcp(lines)?.into()),
        Ati => Parsed::Identity(ati(lines)?),
        Model => Parsed::Identity(Identity {
            model: Some(model(lines)?),
            ..Identity::default()
        }),
        Imei => Parsed::Identity(Identity {
            imei: Some(imei(lines)?),
            ..Identity::default()
        }),
        Iccid => Parsed::Identity(Identity {
            iccid: Some(iccid(lines)?),
            ..Identity::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: &[ParserKind] = &[
        ParserKind::Registration,
        ParserKind::Sysinfoex,
        ParserKind::Csq,
        ParserKind::Cesq,
        ParserKind::Hcsq,
        ParserKind::Qcsq,
        ParserKind::Qeng,
        ParserKind::Cops,
        ParserKind::Cgpaddr,
        ParserKind::Qiact,
        ParserKind::Scpaddr,
        ParserKind::HuaweiDhcp,
        ParserKind::Ati,
        ParserKind::Model,
        ParserKind::Imei,
        ParserKind::Iccid,
    ];

    #[test]
    fn dispatch_wraps_by_category() {
        let lines = vec!["+CSQ: 20,99".to_string()];
        match parse(ParserKind::Csq, &lines).unwrap() {
            Parsed::Signal(s) => assert_eq!(s.rssi_dbm, Some(-73.0)),
            other => panic!("unexpected {other:?}"),
        }
        let lines = vec!["^ICCID: 89860117851014783481".to_string()];
        match parse(ParserKind::Iccid, &lines).unwrap() {
            Parsed::Identity(id) => assert_eq!(id.iccid.as_deref(), Some("89860117851014783481")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_response_is_an_error_except_for_qiact() {
        for kind in ALL {
            // Quectel answers a bare OK to AT+QIACT? when no context is active.
            let expect_ok = *kind == ParserKind::Qiact;
            assert_eq!(parse(*kind, &[]).is_ok(), expect_ok, "{kind:?}");
        }
    }

    const TAGS: &[&str] = &[
        "+CREG: ",
        "+CGREG: ",
        "+CEREG: ",
        "+C5GREG: ",
        "^SYSINFOEX:",
        "+CSQ: ",
        "+CESQ: ",
        "^HCSQ: ",
        "+QCSQ: ",
        "+QENG: ",
        "+COPS: ",
        "+CGPADDR: ",
        "+QIACT: ",
        "!SCPADDR: ",
        "^DHCP: ",
        "+ICCID: ",
        "+CGSN: ",
        "Manufacturer: ",
        "",
    ];

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,60}",
            (prop::sample::select(TAGS), "[0-9A-Fa-fx\",. :()-]{0,60}")
                .prop_map(|(tag, rest)| format!("{tag}{rest}")),
        ]
    }

    proptest! {
        /// No parser panics, whatever the lines.
        #[test]
        fn parsers_never_panic(lines in prop::collection::vec(line(), 0..4)) {
            for kind in ALL {
                let _ = parse(*kind, &lines);
            }
            for line in &lines {
                let _ = registration_urc(line);
            }
        }
    }
}
