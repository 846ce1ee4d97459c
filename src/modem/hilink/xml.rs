//! HiLink wire bodies, pure: the `<response>`/`<error>` envelope every API answer comes in
//! (HTTP 200 either way), the handful of answers edgeward reads, the `<request>` bodies it
//! sends, and the `csrf_token` meta tags of the stick's home page.
//!
//! XML goes through a real parser (`roxmltree`, DTDs refused), never patterns. The home page
//! is HTML, not XML, so its meta tags are read by a small tag scanner instead.

use std::net::IpAddr;

/// An answer's body: the children of `<response>` (flat: every endpoint edgeward reads is), or
/// a bare text answer (`<response>OK</response>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    items: Vec<(String, String)>,
    text: String,
}

impl Fields {
    /// The trimmed text of the first child called `name` (firmware repeats some, `flymode`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Like [`Self::get`], but an empty element counts as missing.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The response's own text (`OK` for a successful set).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_ok(&self) -> bool {
        self.text.eq_ignore_ascii_case("ok")
    }
}

/// What a HiLink answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response(Fields),
    /// `<error><code>N</code><message>…</message></error>`.
    Error {
        code: u32,
        message: String,
    },
}

/// Parses an API answer. A body that is not the envelope (an HTML page, garbage) is an error
/// with a short excerpt, never a panic.
pub fn parse_reply(body: &str) -> Result<Reply, String> {
    let (root, fields) = parse_flat(body)?;
    match root.as_str() {
        "error" => {
            let code = fields
                .get("code")
                .unwrap_or_default()
                .parse()
                .map_err(|_| format!("error without a numeric code: {}", excerpt(body)))?;
            Ok(Reply::Error {
                code,
                message: fields.get("message").unwrap_or_default().to_owned(),
            })
        }
        "response" => Ok(Reply::Response(fields)),
        other => Err(format!("unexpected <{other}> answer: {}", excerpt(body))),
    }
}

/// Parses a `<request>` body (what the simulator reads).
pub fn parse_request(body: &str) -> Result<Fields, String> {
    match parse_flat(body)? {
        (root, fields) if root == "request" => Ok(fields),
        (other, _) => Err(format!("unexpected <{other}> request: {}", excerpt(body))),
    }
}

/// The root element's name and its flat children.
fn parse_flat(body: &str) -> Result<(String, Fields), String> {
    let doc = roxmltree::Document::parse(body.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("not XML ({e}): {}", excerpt(body)))?;
    let root = doc.root_element();
    let items = root
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            (
                n.tag_name().name().to_owned(),
                n.text().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect();
    let text = root
        .children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_owned();
    Ok((root.tag_name().name().to_owned(), Fields { items, text }))
}

fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    format!("{:?}", one_line.trim())
}

/// `<?xml …?><request><k>v</k>…</request>`, values escaped.
pub fn request(fields: &[(&str, &str)]) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><request>"#);
    for (k, v) in fields {
        out.push('<');
        out.push_str(k);
        out.push('>');
        out.push_str(&escape(v));
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</request>");
    out
}

pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `ConnectionStatus` meaning "connected" (900 connecting, 902 disconnected, 903 disconnecting).
pub const CONNECTED: u32 = 901;

/// `/api/monitoring/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonitoringStatus {
    pub connection_status: Option<u32>,
    /// Routers and newer sticks put it here; E3372h firmware only in `/api/device/information`.
    pub wan_ip: Option<IpAddr>,
    pub roaming: bool,
    /// `CurrentNetworkType` (19 = LTE, 9 = HSPA+, 3 = GSM...).
    pub network_type: Option<u32>,
    pub signal_icon: Option<u32>,
}

impl MonitoringStatus {
    pub fn from_fields(f: &Fields) -> Self {
        Self {
            connection_status: f.non_empty("ConnectionStatus").and_then(|v| v.parse().ok()),
            wan_ip: f.non_empty("WanIPAddress").and_then(|v| v.parse().ok()),
            roaming: f.get("RoamingStatus") == Some("1"),
            network_type: f
                .non_empty("CurrentNetworkType")
                .and_then(|v| v.parse().ok()),
            signal_icon: f.non_empty("SignalIcon").and_then(|v| v.parse().ok()),
        }
    }

    pub fn connected(&self) -> bool {
        self.connection_status == Some(CONNECTED)
    }
}

/// `/api/device/signal`: values carry their units (`-93dBm`, `-9dB`, `&gt;=-51dBm`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signal {
    pub rssi_dbm: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    pub rsrq_db: Option<f64>,
    pub sinr_db: Option<f64>,
    /// From `mode`: 7 LTE, 2 WCDMA, 0 GSM.
    pub tech: Option<String>,
}

impl Signal {
    pub fn from_fields(f: &Fields) -> Self {
        let num = |k: &str| f.non_empty(k).and_then(measurement);
        Self {
            rssi_dbm: num("rssi"),
            rsrp_dbm: num("rsrp"),
            rsrq_db: num("rsrq"),
            sinr_db: num("sinr"),
            tech: match f.non_empty("mode") {
                Some("7") => Some("LTE".into()),
                Some("2") => Some("WCDMA".into()),
                Some("0") => Some("GSM".into()),
                _ => None,
            },
        }
    }
}

/// `-93dBm` → -93, `>=-51dBm` → -51, `12dB` → 12; anything else → `None`.
pub fn measurement(v: &str) -> Option<f64> {
    let v = v.trim().trim_start_matches([' ', '>', '<', '=']);
    let end = v
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+'))))
        .map(|(i, _)| i)
        .unwrap_or(v.len());
    v[..end].parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `/api/net/current-plmn`: the operator's name.
pub fn operator(f: &Fields) -> Option<String> {
    ["FullName", "ShortName", "Numeric"]
        .iter()
        .find_map(|k| f.non_empty(k))
        .map(str::to_owned)
}

/// `/api/device/information`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Information {
    pub model: Option<String>,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub firmware: Option<String>,
    pub wan_ip: Option<IpAddr>,
}

impl Information {
    pub fn from_fields(f: &Fields) -> Self {
        let s = |k: &str| f.non_empty(k).map(str::to_owned);
        Self {
            model: s("DeviceName"),
            imei: s("Imei"),
            iccid: s("Iccid"),
            firmware: s("SoftwareVersion"),
            wan_ip: f.non_empty("WanIPAddress").and_then(|v| v.parse().ok()),
        }
    }
}

/// `/api/net/net-mode`: `NetworkMode` 00 auto, 01 2G, 02 3G, 03 LTE only; the band masks are
/// sent back as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetMode {
    pub mode: String,
    pub network_band: String,
    pub lte_band: String,
}

pub const MODE_AUTO: &str = "00";
pub const MODE_LTE: &str = "03";

impl NetMode {
    pub fn from_fields(f: &Fields) -> Result<Self, String> {
        let mode = f
            .non_empty("NetworkMode")
            .ok_or("the stick did not say its network mode")?;
        Ok(Self {
            mode: mode.to_owned(),
            network_band: f.non_empty("NetworkBand").unwrap_or("3FFFFFFF").to_owned(),
            lte_band: f
                .non_empty("LTEBand")
                .unwrap_or("7FFFFFFFFFFFFFFF")
                .to_owned(),
        })
    }

    /// The mode a toggle switches to: auto → LTE only, anything else → auto.
    pub fn flipped(&self) -> Self {
        let mode = if self.mode == MODE_AUTO {
            MODE_LTE
        } else {
            MODE_AUTO
        };
        Self {
            mode: mode.to_owned(),
            ..self.clone()
        }
    }

    pub fn request(&self) -> String {
        request(&[
            ("NetworkMode", &self.mode),
            ("NetworkBand", &self.network_band),
            ("LTEBand", &self.lte_band),
        ])
    }
}

/// `/api/user/state-login`: whether logged in, and which password encoding to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginState {
    pub logged_in: bool,
    pub password_type: u32,
}

impl LoginState {
    pub fn from_fields(f: &Fields) -> Self {
        Self {
            logged_in: f.get("State") == Some("0"),
            password_type: f
                .non_empty("password_type")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// The `content` of every `<meta name="csrf_token" content="…">` of an HTML page, in order.
pub fn csrf_meta_tokens(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = find_ignore_case(rest, "<meta") {
        let after = &rest[start + 5..];
        let end = after.find('>').unwrap_or(after.len());
        let attrs = attributes(&after[..end]);
        let is_csrf = attrs
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("name") && v == "csrf_token");
        if is_csrf {
            if let Some((_, v)) = attrs
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case("content") && !v.is_empty())
            {
                out.push(v.clone());
            }
        }
        rest = &after[end..];
    }
    out
}

fn find_ignore_case(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `name="v" name='v' name=v` pairs of one tag's inside.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = tag.trim_end_matches('/').chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '/') {
            chars.next();
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
        if name.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next_if_eq(&'=').is_none() {
            out.push((name, String::new()));
            continue;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let value: String = match chars.peek().copied() {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                let v = std::iter::from_fn(|| chars.next_if(|c| *c != q)).collect();
                chars.next();
                v
            }
            _ => std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect(),
        };
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests;
