//! HTTPS listeners (`tls_listen`) with rustls: a real TLS client talks to the same API.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{start_app, BASE_TOML};
use edgeward::clock::ManualClock;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

#[tokio::test]
async fn the_api_is_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let toml = BASE_TOML.replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!(
            "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            cert_path.display(),
            key_path.display()
        ),
    );
    let clock = Arc::new(ManualClock::starting_now());
    let app = start_app(&toml, &dir.path().join("s.redb"), &clock).await;
    let addr = app.https_addrs[0];

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/vpn_api/allocate")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], true);
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = common::try_request(addr, hyper::Method::GET, "/vpn_api/list", &[], None).await;
    assert!(plain.is_err(), "plain HTTP answered on the TLS listener");
    app.shutdown().await;
}

#[tokio::test]
async fn a_broken_certificate_stops_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let toml = BASE_TOML.replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!(
            "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            cert_path.display(),
            cert_path.display()
        ),
    );
    let mut config = edgeward::config::Config::from_toml_str_only(&toml).unwrap();
    config.store.path = dir.path().join("s.redb");
    let err = edgeward::app::App::start(config, Default::default())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cert.pem"), "{err:#}");
}
