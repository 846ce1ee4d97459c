//! The service over a real store with a recording enforcer, and properties of the pure parts.

use std::sync::Mutex;

use proptest::prelude::*;

use super::rules::{Action, Protocol, Source};
use super::*;
use crate::clock::ManualClock;

/// Records every script; refuses while `refuse` is set.
#[derive(Default)]
struct Recorder {
    scripts: Mutex<Vec<String>>,
    refuse: std::sync::atomic::AtomicBool,
}

impl Enforcer for Arc<Recorder> {
    fn load(&self, script: &str) -> Result<(), String> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("refused".into());
        }
        self.scripts.lock().unwrap().push(script.to_owned());
        Ok(())
    }
}

fn tap(vmid: u32) -> String {
    format!("ew{vmid}i0")
}

fn open(store: &Arc<Store>, rec: &Arc<Recorder>) -> FirewallService {
    FirewallService::open(
        Arc::clone(store),
        Arc::new(ManualClock::new(1_000)),
        Some(Box::new(Arc::clone(rec))),
        Features::default(),
        tap,
    )
    .unwrap()
}

fn rule(action: &str, protocol: &str, port: &str, source: &str) -> RuleInput {
    RuleInput {
        action: action.into(),
        protocol: protocol.into(),
        port: port.into(),
        source: source.into(),
        description: "desc".into(),
    }
}

#[test]
fn changes_reach_the_kernel_and_the_store_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let rec = Arc::new(Recorder::default());
    let fw = open(&store, &rec);
    assert_eq!(rec.scripts.lock().unwrap().len(), 1, "reconciled at start");
    fw.create_group("web", "웹").unwrap();
    assert_eq!(
        fw.create_group("WEB", ""),
        Err(FwError::GroupExists("web".into()))
    );
    let r0 = fw
        .add_rule("web", &rule("ACCEPT", "tcp", "8080", ""))
        .unwrap();
    let r1 = fw.add_rule("Web", &rule("DENY", "udp", "53", "")).unwrap();
    assert_eq!((r0.pos, r1.pos), (0, 1));
    fw.assign(101, "web").unwrap();
    fw.assign(101, "web").unwrap();
    assert_eq!(fw.groups_of(101), ["web"]);
    assert_eq!(fw.group("web").unwrap().vmids, [101]);
    let last = rec.scripts.lock().unwrap().last().cloned().unwrap();
    assert!(last.contains("\"ew101i0\" : jump vm_101"), "{last}");
    assert!(last.contains("tcp dport 8080 accept"));
    assert!(!last.contains("desc"));
    assert_eq!(fw.delete_group("web"), Err(FwError::GroupInUse(vec![101])));
    fw.delete_rule("web", 0).unwrap();
    assert_eq!(fw.delete_rule("web", 0), Err(FwError::RuleNotFound));
    let r2 = fw
        .add_rule("web", &rule("ACCEPT", "tcp", "22", ""))
        .unwrap();
    assert_eq!(r2.pos, 2, "positions are never reused");
    let before = fw.ruleset();
    drop(fw);

    let rec2 = Arc::new(Recorder::default());
    let again = open(&store, &rec2);
    assert_eq!(
        again.ruleset(),
        before,
        "the store gives back the same table"
    );
    assert_eq!(rec2.scripts.lock().unwrap().as_slice(), [before]);
    let g = again.group("web").unwrap();
    assert_eq!(g.rules.iter().map(|r| r.pos).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(g.description, "웹");
    assert_eq!(again.unassign(101, None).unwrap(), ["web"]);
    assert!(!again.ruleset().contains("ew101i0"));
    again.delete_group("web").unwrap();
    assert_eq!(again.group("web"), Err(FwError::GroupNotFound));
}

#[test]
fn refusals_change_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let rec = Arc::new(Recorder::default());
    let fw = open(&store, &rec);
    fw.create_group("web", "").unwrap();
    fw.assign(101, "web").unwrap();
    let loads = rec.scripts.lock().unwrap().len();
    let table = fw.ruleset();
    for bad in [
        rule("MAYBE", "tcp", "80", ""),
        rule("ACCEPT", "tcp", "80; drop table", ""),
        rule("ACCEPT", "icmp", "80", ""),
        rule("ACCEPT", "tcp", "80", "10.0.0.0/8 accept"),
    ] {
        assert!(matches!(fw.add_rule("web", &bad), Err(FwError::Invalid(_))));
    }
    assert_eq!(
        fw.create_group("a b", ""),
        Err(FwError::Invalid(Invalid::GroupNameCharset))
    );
    assert_eq!(fw.assign(102, "nope"), Err(FwError::GroupNotFound));
    assert_eq!(fw.unassign(102, Some("web")), Err(FwError::NotAssigned));
    assert_eq!(rec.scripts.lock().unwrap().len(), loads, "nothing loaded");
    assert_eq!(fw.ruleset(), table);
    // The kernel refuses: neither the state nor the store changes.
    rec.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        fw.add_rule("web", &rule("ACCEPT", "tcp", "80", "")),
        Err(FwError::Enforce(_))
    ));
    assert!(fw.group("web").unwrap().rules.is_empty());
    assert!(store.fw_groups().unwrap()[0].rules.is_empty());
    rec.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
}

fn arb_input() -> impl Strategy<Value = RuleInput> {
    let action = prop::sample::select(vec![
        "ACCEPT", "DROP", "REJECT", "DENY", "deny", "MAYBE", "",
    ]);
    let protocol = prop::sample::select(vec!["tcp", "udp", "icmp", "any", "", "TCP", "gre"]);
    let port = prop_oneof![
        Just(String::new()),
        (0u32..70000).prop_map(|p| p.to_string()),
        ((0u32..70000), (0u32..70000)).prop_map(|(a, b)| format!("{a}:{b}")),
        ((1u32..65536), (1u32..65536)).prop_map(|(a, b)| format!("{a}-{b}")),
        prop::collection::vec(1u32..65536, 1..6).prop_map(|v| v
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")),
        "[0-9:,; a-z-]{0,12}",
    ];
    let source = prop_oneof![
        Just(String::new()),
        Just("0.0.0.0/0".to_owned()),
        (any::<[u8; 4]>(), 0u8..40)
            .prop_map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3])),
        (any::<[u16; 8]>(), 0u8..140)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        "[0-9a-f.:/; ]{0,16}",
    ];
    (action, protocol, port, source, ".{0,300}").prop_map(|(a, p, port, s, d)| RuleInput {
        action: a.into(),
        protocol: p.into(),
        port,
        source: s,
        description: d,
    })
}

proptest! {
    #[test]
    fn every_valid_rule_renders_to_plain_nft_tokens(input in arb_input()) {
        if let Ok(rule) = Rule::parse(&input) {
            // The canonical form parses back to the same rule.
            prop_assert_eq!(Rule::parse(&rule.to_input()), Ok(rule.clone()));
            for f in [Features::default(), Features { conntrack: true, reject: true }] {
                let text = render::rule_text(&rule, f);
                // Only nft words, numbers, addresses and set braces: nothing from the
                // description, no statement separators.
                prop_assert!(
                    text.bytes().all(|b| b.is_ascii_alphanumeric() || b" .:/,{}-".contains(&b)),
                    "{}", text
                );
                let verdict = text.rsplit(' ').next().unwrap_or("");
                prop_assert!(["accept", "drop", "reject", "reset"].contains(&verdict));
                if rule.action == Action::Accept {
                    prop_assert!(text.ends_with("accept"));
                }
                if matches!(rule.source, Source::Any) {
                    prop_assert!(!text.contains("saddr"));
                }
                if rule.ports.is_some() {
                    prop_assert!(matches!(rule.protocol, Protocol::Tcp | Protocol::Udp));
                    prop_assert!(text.contains(" dport "));
                }
            }
        }
    }
}
