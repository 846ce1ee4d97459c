//! The firewall tables: security groups (each with its description and its rules, every rule
//! with a `pos` that never changes and is never reused in its group) and assignments
//! (vmid -> the group names applied to it, in order). Plain typed records of strings; what a
//! rule means is `crate::firewall`'s business.

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError};
use crate::clock::UnixMillis;

/// Lower-case group name -> group.
pub(super) const FW_GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("fw_groups");
/// vmid -> JSON list of group names.
pub(super) const FW_ASSIGNMENTS: TableDefinition<u32, &[u8]> =
    TableDefinition::new("fw_assignments");

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwGroupRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// In `pos` order.
    #[serde(default)]
    pub rules: Vec<FwRuleRecord>,
    /// The `pos` the next rule gets.
    #[serde(default)]
    pub next_pos: u32,
    pub created_at: UnixMillis,
}

/// A stored rule, in its canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwRuleRecord {
    pub pos: u32,
    pub action: String,
    pub protocol: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub description: String,
}

pub(super) fn create_tables(store: &Store, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(FW_GROUPS).map_err(|e| store.db_err(e))?;
    txn.open_table(FW_ASSIGNMENTS)
        .map_err(|e| store.db_err(e))?;
    Ok(())
}

impl Store {
    /// Every group, by lower-case name.
    pub fn fw_groups(&self) -> Result<Vec<FwGroupRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(FW_GROUPS).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in redb::ReadableTable::iter(&table).map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            out.push(self.decode("fw_groups", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Every assignment: vmid and its group names.
    pub fn fw_assignments(&self) -> Result<Vec<(u32, Vec<String>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(FW_ASSIGNMENTS).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in redb::ReadableTable::iter(&table).map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            out.push((
                k.value(),
                self.decode("fw_assignments", k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// Writes the groups in `put` (by lower-case name), removes those named in `remove`, and
    /// sets the assignments in `assign` (an empty list removes the vmid), in one transaction.
    pub fn fw_write(
        &self,
        put: &[FwGroupRecord],
        remove: &[String],
        assign: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut groups = txn.open_table(FW_GROUPS).map_err(|e| self.db_err(e))?;
            for g in put {
                groups
                    .insert(g.name.to_ascii_lowercase().as_str(), encode(g).as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
            for name in remove {
                groups
                    .remove(name.to_ascii_lowercase().as_str())
                    .map_err(|e| self.db_err(e))?;
            }
            let mut assignments = txn.open_table(FW_ASSIGNMENTS).map_err(|e| self.db_err(e))?;
            for (vmid, names) in assign {
                if names.is_empty() {
                    assignments.remove(*vmid).map_err(|e| self.db_err(e))?;
                } else {
                    assignments
                        .insert(*vmid, encode(names).as_slice())
                        .map_err(|e| self.db_err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_assignments_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let g = FwGroupRecord {
            name: "Web".into(),
            description: "d".into(),
            rules: vec![FwRuleRecord {
                pos: 0,
                action: "ACCEPT".into(),
                protocol: "tcp".into(),
                port: "80".into(),
                source: "0.0.0.0/0".into(),
                description: String::new(),
            }],
            next_pos: 1,
            created_at: 5,
        };
        {
            let s = Store::open(&path).unwrap();
            s.fw_write(std::slice::from_ref(&g), &[], &[(101, vec!["Web".into()])])
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.fw_groups().unwrap(), vec![g]);
        assert_eq!(
            s.fw_assignments().unwrap(),
            vec![(101, vec!["Web".to_owned()])]
        );
        s.fw_write(&[], &["WEB".into()], &[(101, vec![])]).unwrap();
        assert!(s.fw_groups().unwrap().is_empty());
        assert!(s.fw_assignments().unwrap().is_empty());
    }
}
