//! `GET /api/openapi.json` over real HTTP: a valid OpenAPI document by a real validator
//! (`openapi-spec-validator` from PyPI; tests/run.sh installs it), with every row of the route
//! table in it; and `/swagger`, the page that reads it.

mod common;

use std::process::Command;

use edgeward::api::routes::ROUTES;
use hyper::StatusCode;

#[tokio::test]
async fn the_document_is_valid_openapi_and_covers_every_route() {
    let server = common::TestServer::start(&common::BASE_TOML).await;
    let r = server.get("/api/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.json();

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &r.body).expect("write the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run python3 (tests/run.sh installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let mut operations = 0;
    for route in ROUTES {
        for method in route.methods {
            let op = &doc["paths"][route.pattern][method.to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{method} {} is not in the document",
                route.pattern
            );
            assert_eq!(op["summary"], route.summary, "{method} {}", route.pattern);
            operations += 1;
        }
    }
    // And nothing that is not in the table.
    let in_doc: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().expect("a path item").len())
        .sum();
    assert_eq!(in_doc, operations);
    // The console is described as a WebSocket with the query token.
    let vnc = &doc["paths"]["/ws/vnc"]["get"];
    assert!(vnc["responses"]["101"].is_object());
    assert_eq!(vnc["security"][0], serde_json::json!({"queryToken": []}));
}

/// In `vm` builds `/swagger` is Swagger UI: headless Chromium loads it from this server alone
/// and renders an operation block for the routes of the document.
#[cfg(feature = "vm")]
#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_renders_the_document_in_chromium() {
    let server = common::TestServer::start(&common::BASE_TOML).await;
    let js = server.get("/swagger/swagger-ui-bundle.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.headers["content-encoding"], "gzip");
    let missing = server.get("/swagger/..%2f..%2fetc%2fpasswd").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let profile = tempfile::tempdir().expect("temp dir");
    let url = format!("http://{}/swagger", server.addr);
    let dom = tokio::task::spawn_blocking(move || {
        let child = Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run /usr/bin/chromium (tests/run.sh installs it)");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(90)) {
            Ok(out) => String::from_utf8_lossy(&out.expect("chromium ran").stdout).into_owned(),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("chromium did not finish within 90 s");
            }
        }
    })
    .await
    .expect("the chromium task");
    assert!(
        dom.contains("opblock") && dom.contains("/vpn_api/allocate"),
        "Swagger UI did not render the operations: {}",
        &dom[..dom.len().min(2000)]
    );
}

#[cfg(not(feature = "vm"))]
#[tokio::test]
async fn swagger_is_a_page_that_reads_the_document() {
    let server = common::TestServer::start(&common::BASE_TOML).await;
    let r = server.get("/swagger").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let page = r.text();
    assert!(page.contains("/api/openapi.json"));
    // Self-contained: nothing fetched from anywhere but this server.
    assert!(!page.contains("https://") && !page.contains("http://"));
}
