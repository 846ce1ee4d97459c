//! TLS for the `tls_listen` listeners: rustls with the ring provider (no OpenSSL).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio_rustls::TlsAcceptor;

/// Builds an acceptor from PEM files: a certificate chain and its private key.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> anyhow::Result<TlsAcceptor> {
    let open = |p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .with_context(|| format!("cannot read {}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", cert_path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate found", cert_path.display()));
    }
    let key = rustls_pemfile::private_key(&mut open(key_path)?)
        .with_context(|| format!("{}: not a PEM key file", key_path.display()))?
        .ok_or_else(|| anyhow!("{}: no private key found", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
