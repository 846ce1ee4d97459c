//! Shared tokenising for the parsers: tag stripping, comma splitting that respects quotes, and
//! the number formats modems use (decimal with leading zeros, hex with or without `0x`).

/// One comma-separated parameter, trimmed, with its quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub text: String,
    pub quoted: bool,
}

/// The rest of `line` after `tag` (e.g. `+CEREG:`), matched case-insensitively; spaces after the
/// tag are dropped. Some firmwares write no space (`+CREG:002,...`), some write `^NDISSTATQry:`.
pub(crate) fn strip_tag<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let line = line.trim();
    let head = line.get(..tag.len())?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    line.get(tag.len()..).map(str::trim_start)
}

/// The parameters of the first line carrying any of `tags`.
pub(crate) fn find_tagged<'a, 't>(
    lines: &'a [String],
    tags: &[&'t str],
) -> Option<(&'t str, &'a str)> {
    lines.iter().find_map(|line| {
        tags.iter()
            .find_map(|tag| strip_tag(line, tag).map(|rest| (*tag, rest)))
    })
}

/// Splits on commas outside double quotes. `a, "b,c" ,d` gives `a`, `b,c` (quoted), `d`.
pub(crate) fn split(params: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut quoted = false;
    for c in params.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            ',' if !in_quotes => {
                fields.push(Field {
                    text: current.trim().to_string(),
                    quoted,
                });
                current.clear();
                quoted = false;
            }
            _ => current.push(c),
        }
    }
    fields.push(Field {
        text: current.trim().to_string(),
        quoted,
    });
    fields
}

/// A decimal number; leading zeros allowed (`002`), surrounding spaces ignored.
pub(crate) fn dec_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A signed decimal number (`-95`).
pub(crate) fn dec_i32(s: &str) -> Option<i32> {
    s.trim().parse().ok()
}

/// A hex number with or without a `0x`/`0X` prefix.
pub(crate) fn hex_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes() {
        let f = split(" 1, \"T-Mobile USA, In\" ,,7");
        let texts: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["1", "T-Mobile USA, In", "", "7"]);
        assert!(f[1].quoted && !f[0].quoted);
    }

    #[test]
    fn numbers() {
        assert_eq!(dec_u32("002"), Some(2));
        assert_eq!(dec_u32("-1"), None);
        assert_eq!(dec_i32(" -95"), Some(-95));
        assert_eq!(hex_u64("0XCCDB080A"), Some(0xCCDB_080A));
        assert_eq!(hex_u64("1F00"), Some(0x1F00));
        assert_eq!(hex_u64("0 5"), None);
        assert_eq!(hex_u64("12345678901234567"), None);
    }

    #[test]
    fn tags() {
        assert_eq!(strip_tag("+CREG:002,001", "+CREG:"), Some("002,001"));
        assert_eq!(strip_tag("^NDISSTATQry:1", "^NDISSTATQRY:"), Some("1"));
        assert_eq!(strip_tag("+CRE", "+CREG:"), None);
        // A tag length landing inside a multi-byte character is a mismatch, not a panic.
        assert_eq!(strip_tag("+CR\u{e9}G: 1", "+CREG:"), None);
    }
}
