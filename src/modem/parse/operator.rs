//! The current operator: `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (3GPP TS 27.007 §7.3), with
//! `<oper>` long or short alphanumeric (format 0/1) or numeric MCC+MNC (format 2), quoted or not.

use super::fields::{dec_u32, find_tagged, split};
use super::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// 0 automatic, 1 manual, 2 deregistered, 4 manual/automatic.
    pub mode: u32,
    pub format: Option<u32>,
    /// The operator as sent, trailing spaces removed; `None` when not registered.
    pub name: Option<String>,
    pub act: Option<u32>,
}

impl Operator {
    /// `(MCC, MNC)` when the operator is in numeric format.
    pub fn mcc_mnc(&self) -> Option<(&str, &str)> {
        let name = self.name.as_deref()?;
        let numeric = (5..=6).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_digit());
        if self.format != Some(2) || !numeric {
            return None;
        }
        Some((name.get(..3)?, name.get(3..)?))
    }
}

/// The answer to `AT+COPS?`.
pub fn cops(lines: &[String]) -> Result<Operator, ParseError> {
    let (_, params) = find_tagged(lines, &["+COPS:"]).ok_or(ParseError::Missing("+COPS"))?;
    let f = split(params);
    let mode_text = f.first().map(|f| f.text.as_str()).unwrap_or("");
    // `+COPS: (1,"T-Mobile",...)` is the answer to the scan `AT+COPS=?`, not a read.
    let mode = dec_u32(mode_text).ok_or_else(|| ParseError::invalid("+COPS <mode>", mode_text))?;
    let format = f.get(1).and_then(|f| dec_u32(&f.text));
    let name = f
        .get(2)
        .map(|f| f.text.trim_end().to_string())
        .filter(|n| !n.is_empty());
    let act = f.get(3).and_then(|f| dec_u32(&f.text));
    Ok(Operator {
        mode,
        format,
        name,
        act,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Vec<String> {
        vec![line.to_string()]
    }

    /// Line, mode, format, name, AcT.
    type Case = (
        &'static str,
        u32,
        Option<u32>,
        Option<&'static str>,
        Option<u32>,
    );

    #[test]
    fn table() {
        // ModemManager src/tests/test-modem-helpers.c (cops_query_data), then captures from
        // Quectel/Telit logs: a 1NCE BG96 walkthrough, an Open5GS lab, a Verizon diag dump.
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("+COPS: 1,0,\"CHINA MOBILE\"", 1, Some(0), Some("CHINA MOBILE"), None),
            ("+COPS: 1,0,\"CHINA MOBILE\",7", 1, Some(0), Some("CHINA MOBILE"), Some(7)),
            ("+COPS: 1,2,\"46000\"", 1, Some(2), Some("46000"), None),
            ("+COPS: 1,2,\"46000\",7", 1, Some(2), Some("46000"), Some(7)),
            ("+COPS: 0,0,\"Telekom.de\",9", 0, Some(0), Some("Telekom.de"), Some(9)),
            ("+COPS: 0,2,\"26202\",13", 0, Some(2), Some("26202"), Some(13)),
            ("+COPS: 0,0,\"Verizon \",8", 0, Some(0), Some("Verizon"), Some(8)),
            ("+COPS: 0,0,\"Open5GS Magic\",11", 0, Some(0), Some("Open5GS Magic"), Some(11)),
            ("+COPS: 0", 0, None, None, None),
            ("+COPS: 0,2,46000,7", 0, Some(2), Some("46000"), Some(7)),
            ("+COPS:0,0,\"T-Mobile USA, In\",7", 0, Some(0), Some("T-Mobile USA, In"), Some(7)),
        ];
        for (line, mode, format, name, act) in cases {
            let op = cops(&one(line)).unwrap();
            assert_eq!(op.mode, *mode, "{line}");
            assert_eq!(op.format, *format, "{line}");
            assert_eq!(op.name.as_deref(), *name, "{line}");
            assert_eq!(op.act, *act, "{line}");
        }
    }

    #[test]
    fn numeric_split() {
        assert_eq!(
            cops(&one("+COPS: 0,2,\"26202\",7")).unwrap().mcc_mnc(),
            Some(("262", "02"))
        );
        assert_eq!(
            cops(&one("+COPS: 0,2,\"310410\",7")).unwrap().mcc_mnc(),
            Some(("310", "410"))
        );
        assert_eq!(
            cops(&one("+COPS: 0,0,\"26202\",7")).unwrap().mcc_mnc(),
            None
        );
    }

    #[test]
    fn errors() {
        assert!(cops(&[]).is_err());
        assert!(cops(&one(
            "+COPS: (2,\"T-Mobile\",\"TMO\",\"31026\",0),,(0,1,2,3,4)"
        ))
        .is_err());
    }
}
