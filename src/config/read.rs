//! Reading the layered configuration into a [`Config`] while collecting EVERY problem: unknown
//! keys, wrong types, missing keys. Serde stops at the first error, so this reads in rounds:
//! deserialize the merged value tree; on an error, record it (with its dotted key and where it
//! came from: the file, or the `EDGEWARD_…` variable), set the offending value aside, and try
//! again. The serde derives on the config types stay the one schema: a key added there is known
//! here without a second list.
//!
//! Setting aside: an unknown key or a wrongly typed value is removed (its default applies); a
//! wrongly typed list entry is replaced by a copy of the first entry, which has already read
//! fine, so the later entries keep their indices and are still checked; a missing required key
//! gets a placeholder so the rest of its table is still checked. Values set aside are
//! [`Unreliable`]: validation problems about them are not reported, they would only confuse.

use figment::error::Kind;
use figment::value::Value;
use figment::{Figment, Source};
use serde::Deserialize;

use super::{Config, ModemConfig, PoolConfig, Problem, ENV_PREFIX};

/// More rounds than any honest file needs; a bound so a pathological one cannot spin.
const MAX_ROUNDS: usize = 500;

pub(super) struct Outcome {
    /// `None` when reading could not finish (then validation is skipped).
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    pub unreliable: Unreliable,
}

/// What reading replaced: validation problems about these would be about defaults and
/// placeholders, not about what the operator wrote.
#[derive(Debug, Default)]
pub(super) struct Unreliable {
    /// Keys whose value was removed or replaced (`api.listen`, `modem[1].port`).
    keys: Vec<String>,
    /// Tables that got a placeholder for a missing key (`modem[1]`).
    tables: Vec<String>,
}

impl Unreliable {
    pub fn concerns(&self, p: &Problem) -> bool {
        self.keys.iter().any(|k| under(&p.key, k))
            || self
                .tables
                .iter()
                .any(|t| under(&p.key, t) || p.message.contains(t.as_str()))
    }
}

/// `key` is `root` or inside it.
fn under(key: &str, root: &str) -> bool {
    key.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `vpn.pool[0].keys`, the spelling every message uses.
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub(super) fn read(figment: &Figment) -> Outcome {
    let mut tree = match figment.find_value("") {
        Ok(tree) => tree,
        // The file is not TOML, or a provider failed: nothing to read in rounds.
        Err(err) => {
            return Outcome {
                config: None,
                problems: err.into_iter().map(provider_problem).collect(),
                unreliable: Unreliable::default(),
            }
        }
    };
    let mut reader = Reader {
        figment,
        problems: Vec::new(),
        unreliable: Unreliable::default(),
    };
    for _ in 0..MAX_ROUNDS {
        let err = match Config::deserialize(&tree) {
            Ok(config) => {
                return Outcome {
                    config: Some(config),
                    problems: reader.problems,
                    unreliable: reader.unreliable,
                }
            }
            Err(err) => err,
        };
        if !reader.set_aside(&mut tree, err) {
            return reader.gave_up();
        }
    }
    reader.problems.push(Problem {
        key: String::new(),
        message: "too many problems to list; fix these first".to_owned(),
    });
    reader.gave_up()
}

struct Reader<'f> {
    figment: &'f Figment,
    problems: Vec<Problem>,
    unreliable: Unreliable,
}

impl Reader<'_> {
    fn gave_up(self) -> Outcome {
        Outcome {
            config: None,
            problems: self.problems,
            unreliable: self.unreliable,
        }
    }

    /// Records `err` and changes `tree` so the next round gets past it. `false`: cannot.
    fn set_aside(&mut self, tree: &mut Value, err: figment::Error) -> bool {
        let Some(mut path) = locate(tree, &err.path) else {
            self.problems.push(provider_problem(err));
            return false;
        };
        match &err.kind {
            Kind::UnknownField(field, expected) => {
                // The path names the unknown key itself; make sure of it.
                if path.last() != Some(&Seg::Key(field.clone())) {
                    path.push(Seg::Key(field.clone()));
                }
                self.record(tree, &path, unknown_key(field, expected));
                remove(tree, &path)
            }
            Kind::MissingField(name) => {
                let table = dotted(&path);
                let mut field = path.clone();
                field.push(Seg::Key(name.to_string()));
                // A key removed for its type is missing now; it was reported already.
                if !self.unreliable.keys.contains(&dotted(&field)) {
                    self.record(tree, &field, "missing; this key is required".to_owned());
                }
                self.unreliable.tables.push(table);
                placeholder(&path, name).is_some_and(|v| insert(tree, &field, v))
            }
            kind => {
                let mut message = kind.to_string();
                if let Some((Seg::Index(0), list)) = path.split_last() {
                    if matches!(node(tree, list), Some(Value::Array(_, items)) if items.len() > 1) {
                        message.push_str(
                            " (the other entries of this list are checked once this one is fixed)",
                        );
                    }
                }
                // Recorded before the value is set aside: its tag says where it came from.
                self.record(tree, &path, message);
                match replace(tree, &path) {
                    Replaced::Value => true,
                    Replaced::WholeList(list) => {
                        self.unreliable.keys.push(dotted(&list));
                        remove(tree, &list)
                    }
                    Replaced::Nothing => false,
                }
            }
        }
    }

    fn record(&mut self, tree: &Value, path: &[Seg], message: String) {
        let key = dotted(path);
        let source = self.source(tree, path);
        self.unreliable.keys.push(key.clone());
        self.problems.push(Problem {
            key,
            message: format!("{message}{source}"),
        });
    }

    /// ` (in FILE)` or ` (from environment variable EDGEWARD_…)`, from the value's figment tag
    /// (or, for a missing key, its table's).
    fn source(&self, tree: &Value, path: &[Seg]) -> String {
        let node = (0..=path.len()).rev().find_map(|n| node(tree, &path[..n]));
        let Some(meta) = node.and_then(|v| self.figment.get_metadata(v.tag())) else {
            return String::new();
        };
        match &meta.source {
            Some(Source::File(file)) => format!(" (in {})", file.display()),
            _ if meta.name.contains("environment") => {
                format!(" (from environment variable {})", env_var(path))
            }
            _ => String::new(),
        }
    }
}

/// The variable that sets `path`: its keys up to the first list index, `__`-joined.
fn env_var(path: &[Seg]) -> String {
    let keys: Vec<String> = path
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(k.to_ascii_uppercase()),
            Seg::Index(_) => None,
        })
        .collect();
    format!("{ENV_PREFIX}{}", keys.join("__"))
}

fn unknown_key(field: &str, expected: &[&str]) -> String {
    if expected.is_empty() {
        return "unknown key".to_owned();
    }
    let hint = expected
        .iter()
        .filter(|e| edit_distance(field, e) <= 2)
        .min_by_key(|e| edit_distance(field, e))
        .map(|e| format!(" (did you mean `{e}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key{hint}; expected one of: {}",
        expected.join(", ")
    )
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// Turns figment's string path into steps, checking each exists in `tree`.
fn locate(tree: &Value, path: &[String]) -> Option<Vec<Seg>> {
    let mut out = Vec::with_capacity(path.len());
    let mut here = tree;
    for part in path {
        match here {
            Value::Dict(_, dict) => {
                here = dict.get(part)?;
                out.push(Seg::Key(part.clone()));
            }
            Value::Array(_, items) => {
                let i: usize = part.parse().ok()?;
                here = items.get(i)?;
                out.push(Seg::Index(i));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn node<'v>(tree: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    path.iter().try_fold(tree, |here, seg| match (here, seg) {
        (Value::Dict(_, d), Seg::Key(k)) => d.get(k),
        (Value::Array(_, a), Seg::Index(i)) => a.get(*i),
        _ => None,
    })
}

fn node_mut<'v>(tree: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    path.iter().try_fold(tree, |here, seg| match (here, seg) {
        (Value::Dict(_, d), Seg::Key(k)) => d.get_mut(k),
        (Value::Array(_, a), Seg::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

/// Removes the key at `path` (which must end with a key).
fn remove(tree: &mut Value, path: &[Seg]) -> bool {
    let Some((Seg::Key(key), parent)) = path.split_last() else {
        return false;
    };
    match node_mut(tree, parent) {
        Some(Value::Dict(_, dict)) => dict.remove(key).is_some(),
        _ => false,
    }
}

fn insert(tree: &mut Value, path: &[Seg], value: Value) -> bool {
    let Some((Seg::Key(key), parent)) = path.split_last() else {
        return false;
    };
    match node_mut(tree, parent) {
        Some(Value::Dict(_, dict)) => dict.insert(key.clone(), value).is_none(),
        _ => false,
    }
}

enum Replaced {
    /// The key was removed, or the list entry replaced by a copy of the first one.
    Value,
    /// The first entry of the list at this path is bad, and no entry is known to be good: the
    /// caller removes the whole list (its default applies).
    WholeList(Vec<Seg>),
    Nothing,
}

fn replace(tree: &mut Value, path: &[Seg]) -> Replaced {
    match path.split_last() {
        Some((Seg::Key(_), _)) => {
            if remove(tree, path) {
                Replaced::Value
            } else {
                Replaced::Nothing
            }
        }
        Some((Seg::Index(i), list)) => {
            let Some(Value::Array(_, items)) = node_mut(tree, list) else {
                return Replaced::Nothing;
            };
            // Lists deserialize in order: entry 0 read fine if entry i > 0 failed.
            match (items.first().cloned(), *i) {
                (Some(first), i) if i > 0 && i < items.len() => {
                    items[i] = first;
                    Replaced::Value
                }
                _ if matches!(list.last(), Some(Seg::Key(_))) => Replaced::WholeList(list.to_vec()),
                _ => Replaced::Nothing,
            }
        }
        None => Replaced::Nothing,
    }
}

/// A stand-in for a missing required key of a `[[vpn.pool]]` or `[[modem]]` table, so the rest
/// of the table is still read. The values are never used: the table is [`Unreliable`].
fn placeholder(table: &[Seg], field: &str) -> Option<Value> {
    let example = match table {
        [Seg::Key(modem), Seg::Index(_)] if modem == "modem" => Value::serialize(ModemConfig {
            number: u32::MAX,
            port: "/dev/null".into(),
            profile: "generic".to_owned(),
            netdev: "placeholder".to_owned(),
            apn: None,
            ip_check_url: None,
            gateway: None,
            hilink_url: None,
            hilink_username: None,
            hilink_password: None,
            usb_path: None,
        }),
        [Seg::Key(vpn), Seg::Key(pool), Seg::Index(_)] if vpn == "vpn" && pool == "pool" => {
            Value::serialize(PoolConfig {
                subnet: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(192, 0, 2, 0), 24).ok()?,
                keys: 1,
                endpoint_host: None,
            })
        }
        _ => return None,
    };
    example.ok()?.find(field)
}

/// A problem figment found before reading started (TOML syntax, an unreadable file).
fn provider_problem(err: figment::Error) -> Problem {
    let mut key = String::new();
    for part in &err.path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    let source = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(Source::File(path)) => format!(" (in {})", path.display()),
            _ if m.name.contains("environment") => {
                format!(" (from environment variable {ENV_PREFIX}...)")
            }
            _ => String::new(),
        })
        .unwrap_or_default();
    Problem {
        key,
        message: format!("{}{source}", err.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen_prot", "listen_port"), 2);
        assert_eq!(edit_distance("key", "keys"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn under_means_the_key_or_inside_it() {
        assert!(under("modem[1].port", "modem[1]"));
        assert!(under("api.listen", "api.listen"));
        assert!(under("api.listen[2]", "api.listen"));
        assert!(!under("modem[10].port", "modem[1]"));
        assert!(!under("api.listen_x", "api.listen"));
    }
}
