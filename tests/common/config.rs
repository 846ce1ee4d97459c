//! The one way tests write an edgeward configuration: a small builder over the TOML file, so a
//! test says only what it changes ("two pools", "a TUN", "this store") and every test file
//! writes the same, valid base.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration under construction. Values are TOML text (`"\"10m\""`, `"[]"`, `"4"`);
/// [`text`] quotes a string.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// `[table]` → `key = value`, in insertion order.
    tables: Vec<(String, Vec<(String, String)>)>,
    /// `[[vpn.pool]]` entries.
    pools: Vec<Vec<(String, String)>>,
    /// `[[modem]]` entries.
    modems: Vec<Vec<(String, String)>>,
}

/// A TOML string literal.
pub fn text(s: impl AsRef<str>) -> String {
    // JSON's string escapes are a subset of TOML's basic-string escapes.
    serde_json::to_string(s.as_ref()).expect("a string serialises")
}

impl TestConfig {
    /// The usual test server: API on `127.0.0.1:0`, endpoint host `203.0.113.10`, no TUN
    /// (handshake-only), `idle_release = "10m"`, one pool `10.8.0.0/24` with 10 keys.
    pub fn new() -> Self {
        Self::bare()
            .set("vpn", "idle_release", text("10m"))
            .pool("10.8.0.0/24", 10)
    }

    /// The same without `[vpn]` settings and pools.
    pub fn bare() -> Self {
        Self {
            tables: Vec::new(),
            pools: Vec::new(),
            modems: Vec::new(),
        }
        .set("api", "listen", r#"["127.0.0.1:0"]"#)
        .set("wireguard", "endpoint_host", text("203.0.113.10"))
        .set("wireguard", "tun", text(""))
    }

    /// Sets `key` of `[table]` to the TOML value `value` (replacing an earlier one).
    pub fn set(mut self, table: &str, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let entries = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => &mut self.tables[i].1,
            None => {
                self.tables.push((table.to_owned(), Vec::new()));
                &mut self.tables.last_mut().expect("the table was just pushed").1
            }
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_owned(), value)),
        }
        self
    }

    /// `api.listen = [addr]`.
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.set("api", "listen", format!("[{}]", text(addr.to_string())))
    }

    /// `store.path`.
    pub fn store(self, path: &Path) -> Self {
        self.set("store", "path", text(path.display().to_string()))
    }

    /// `wireguard.listen_port`.
    pub fn wg_port(self, port: u16) -> Self {
        self.set("wireguard", "listen_port", port.to_string())
    }

    /// A pool on the default endpoint host.
    pub fn pool(mut self, subnet: &str, keys: u32) -> Self {
        self.pools.push(vec![
            ("subnet".into(), text(subnet)),
            ("keys".into(), keys.to_string()),
        ]);
        self
    }

    /// A pool with its own public host.
    pub fn pool_on(mut self, subnet: &str, keys: u32, host: &str) -> Self {
        self = self.pool(subnet, keys);
        if let Some(pool) = self.pools.last_mut() {
            pool.push(("endpoint_host".into(), text(host)));
        }
        self
    }

    /// Drops the pool of `subnet` (as an operator editing the file would).
    pub fn without_pool(mut self, subnet: &str) -> Self {
        let subnet = text(subnet);
        self.pools
            .retain(|p| !p.iter().any(|(k, v)| k == "subnet" && *v == subnet));
        self
    }

    /// A `[[modem]]` on `port`, plus any `(key, TOML value)` extras.
    pub fn modem(
        mut self,
        number: u32,
        port: &Path,
        profile: &str,
        netdev: &str,
        extra: &[(&str, String)],
    ) -> Self {
        let mut entry = vec![
            ("number".to_owned(), number.to_string()),
            ("port".to_owned(), text(port.display().to_string())),
            ("profile".to_owned(), text(profile)),
            ("netdev".to_owned(), text(netdev)),
        ];
        entry.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.modems.push(entry);
        self
    }

    /// Writes `edgeward.toml` into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("edgeward.toml");
        std::fs::write(&path, self.to_string()).expect("write a test file");
        path
    }
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = |f: &mut fmt::Formatter<'_>, e: &[(String, String)]| -> fmt::Result {
            e.iter().try_for_each(|(k, v)| writeln!(f, "{k} = {v}"))
        };
        for (table, e) in &self.tables {
            writeln!(f, "[{table}]")?;
            entries(f, e)?;
        }
        for (array, items) in [("vpn.pool", &self.pools), ("modem", &self.modems)] {
            for e in items {
                writeln!(f, "[[{array}]]")?;
                entries(f, e)?;
            }
        }
        Ok(())
    }
}
