//! `edgeward demo`: a ready-made configuration on a temporary store, no hardware, no root.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{Config, ConfigError};

/// The demo's configuration, embedded from `config/demo.toml`.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// The demo configuration with its store under `dir` and, if given, another listener.
pub fn config(dir: &Path, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
    let mut config = Config::from_toml_str_only(DEMO_TOML)?;
    config.store.path = dir.join("demo.redb");
    if let Some(addr) = listen {
        config.api.listen = vec![addr];
    }
    config.validate()?;
    Ok(config)
}

/// What to try, printed at start.
pub fn banner(addr: SocketAddr) -> String {
    let base = format!("http://{addr}");
    format!(
        "\nedgeward demo is running at {base} (temporary store; Ctrl-C to stop)\n\n\
         Try:\n\
         \x20 curl {base}/vpn_api/list\n\
         \x20 curl {base}/vpn_api/allocate\n\
         \x20 curl '{base}/vpn_api/allocate?ip=localhost'\n\
         \x20 curl {base}/vpn_api/status\n\
         \x20 curl -X POST {base}/vpn_api/release -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"public_key\": \"<public_key from allocate>\"}}'\n\
         \x20 curl {base}/api/health\n\
         \x20 curl {base}/metrics\n\n\
         Client flows: ../shared/acceptance/vpn_bash_flow.sh {base}\n"
    )
}
