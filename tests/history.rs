//! Lease history in the store: ended leases keep no private key in their records (read back
//! from the file once the server stopped), and history is deleted after
//! `store.history_retention`, at start and by the sweeper, under the manual clock.

mod common;

use std::time::Duration;

use common::{text, TestConfig, TestServer};
use hyper::StatusCode;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const LEASES_ENDED: TableDefinition<u64, &[u8]> = TableDefinition::new("leases_ended");

/// Every record of the history table, as stored.
fn ended_rows(store: &std::path::Path) -> Vec<String> {
    let db = redb::Database::open(store).expect("open the stopped server's store");
    let txn = db.begin_read().expect("read the store");
    let table = txn
        .open_table(LEASES_ENDED)
        .expect("the store has this table");
    table
        .iter()
        .expect("read the table")
        .map(|r| {
            String::from_utf8(r.expect("read a row").1.value().to_vec())
                .expect("records are JSON text")
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_ended_lease_keeps_its_public_key_and_not_its_private_key() {
    let s = TestServer::start(&common::BASE_TOML).await;
    let released = s.get("/vpn_api/allocate").await.json();
    let held = s.get("/vpn_api/allocate").await.json();
    let r = s.release(released["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    let store = s.store_path();
    let _dir = s.stop_keeping_files().await;

    let rows = ended_rows(&store);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let secret = released["private_key"].as_str().unwrap();
    assert!(
        rows[0].contains(released["public_key"].as_str().unwrap()),
        "{}",
        rows[0]
    );
    assert!(rows[0].contains("\"reason\":\"released\""), "{}", rows[0]);
    assert!(
        !rows[0].contains(secret),
        "history holds the private key: {}",
        rows[0]
    );
    assert!(!rows[0].contains("private_key"), "{}", rows[0]);
    // The active lease still has its key (seed 001 hands it out again on renewal). Whether
    // the ended one's bytes are gone from the raw file is not asserted: redb is copy-on-write
    // and does not zero freed pages, so they linger until reused (README, "store").
    let bytes = std::fs::read(&store).unwrap();
    assert!(contains(&bytes, held["private_key"].as_str().unwrap()));
}

#[tokio::test]
async fn history_past_its_retention_is_deleted_by_the_sweeper() {
    // Idle release out of the way: only the history clock matters here.
    let toml = TestConfig::new()
        .set("vpn", "idle_release", text("1d"))
        .set("store", "history_retention", text("1h"))
        .to_string();
    let s = TestServer::start(&toml).await;
    let history = |s: &TestServer| s.app().leases.history_len().unwrap();
    let a = s.get("/vpn_api/allocate").await.json();
    let b = s.get("/vpn_api/allocate").await.json();
    assert_eq!(
        s.release(a["public_key"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
    s.clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(
        s.release(b["public_key"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
    assert_eq!(history(&s), 2);

    // a ended 61 minutes ago, b 31: only a goes.
    s.clock.advance(Duration::from_secs(31 * 60));
    wait_until(|| history(&s) == 1, "the sweeper did not prune a").await;
    // Nothing else goes while b is younger than the retention...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(history(&s), 1);
    // ... and b goes once it is older.
    s.clock.advance(Duration::from_secs(30 * 60));
    wait_until(|| history(&s) == 0, "the sweeper did not prune b").await;
    // The active lease count and the next lease ids are untouched by pruning.
    let c = s.get("/vpn_api/allocate").await.json();
    assert_eq!(c["success"], true);
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(st["statistics"]["keys_in_use"], 1);
    s.stop().await;
}

async fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
