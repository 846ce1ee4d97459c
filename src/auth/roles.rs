//! Roles and permissions: the names (seed 003's permission strings, `reference/servers-003.md`),
//! the default set of each role, and [`PermissionSet`], which is stored and answered as a JSON
//! list of names. Pure: no I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A user's role. `admin` and `user` are LIMEN's (seeds 002/004); `developer`, `operator` and
/// `viewer` are seed 003's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    User,
    Developer,
    Operator,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::User,
        Role::Developer,
        Role::Operator,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// The permissions a new user of this role starts with. `admin` holds everything anyway
    /// ([`crate::auth::Principal::has`]); `user` holds nothing beyond their own VMs.
    pub fn default_permissions(self) -> PermissionSet {
        use Permission::*;
        let list: &[Permission] = match self {
            Role::Admin => &Permission::ALL,
            Role::User => &[],
            Role::Developer => &[
                CreateServer,
                StartServer,
                StopServer,
                RebootServer,
                BackupManagement,
                AssignFirewallGroups,
                ViewLogs,
            ],
            Role::Operator => &[
                StartServer,
                StopServer,
                RebootServer,
                BackupManagement,
                ViewAll,
                ViewLogs,
            ],
            Role::Viewer => &[ViewAll],
        };
        list.iter().copied().collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of [`Role::ALL`]; carries what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: must be one of admin, user, developer, operator, viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One permission, named exactly as seed 003 (and its code) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    CreateServer,
    DeleteServer,
    StartServer,
    StopServer,
    RebootServer,
    BackupManagement,
    ManageFirewallGroups,
    AssignFirewallGroups,
    ManageUsers,
    ManageRoles,
    ViewAll,
    ViewLogs,
    // The original's code adds these to the document's twelve.
    ManageServer,
    AssignRoles,
    RemoveRole,
    RemoveFirewallGroups,
    ManageStorage,
    ManageNetwork,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::CreateServer,
        Permission::DeleteServer,
        Permission::StartServer,
        Permission::StopServer,
        Permission::RebootServer,
        Permission::BackupManagement,
        Permission::ManageFirewallGroups,
        Permission::AssignFirewallGroups,
        Permission::ManageUsers,
        Permission::ManageRoles,
        Permission::ViewAll,
        Permission::ViewLogs,
        Permission::ManageServer,
        Permission::AssignRoles,
        Permission::RemoveRole,
        Permission::RemoveFirewallGroups,
        Permission::ManageStorage,
        Permission::ManageNetwork,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CreateServer => "create_server",
            Permission::DeleteServer => "delete_server",
            Permission::StartServer => "start_server",
            Permission::StopServer => "stop_server",
            Permission::RebootServer => "reboot_server",
            Permission::BackupManagement => "backup_management",
            Permission::ManageFirewallGroups => "manage_firewall_groups",
            Permission::AssignFirewallGroups => "assign_firewall_groups",
            Permission::ManageUsers => "manage_users",
            Permission::ManageRoles => "manage_roles",
            Permission::ViewAll => "view_all",
            Permission::ViewLogs => "view_logs",
            Permission::ManageServer => "manage_server",
            Permission::AssignRoles => "assign_roles",
            Permission::RemoveRole => "remove_role",
            Permission::RemoveFirewallGroups => "remove_firewall_groups",
            Permission::ManageStorage => "manage_storage",
            Permission::ManageNetwork => "manage_network",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names that are not permissions, in the order given (each once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission{}: {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
pub struct UnknownPermissions(pub Vec<String>);

impl FromStr for Permission {
    type Err = UnknownPermissions;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermissions(vec![s.to_owned()]))
    }
}

/// A set of permissions, in [`Permission::ALL`]'s order when listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn all() -> Self {
        Permission::ALL.into_iter().collect()
    }

    pub fn contains(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    pub fn insert(&mut self, p: Permission) -> bool {
        self.0.insert(p)
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in a stable order.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }

    /// Parses a list of names; every unknown one is named in the error (duplicates are fine).
    pub fn parse<I, S>(names: I) -> Result<Self, UnknownPermissions>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Self::new();
        let mut unknown: Vec<String> = Vec::new();
        for name in names {
            let name = name.as_ref();
            match name.parse::<Permission>() {
                Ok(p) => {
                    set.insert(p);
                }
                Err(_) if unknown.iter().any(|u| u == name) => {}
                Err(_) => unknown.push(name.to_owned()),
            }
        }
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(UnknownPermissions(unknown))
        }
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<T: IntoIterator<Item = Permission>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Permission::as_str))
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Self::parse(&names).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sets_are_exactly_the_issues() {
        let names = |r: Role| r.default_permissions().names().join(" ");
        assert_eq!(
            names(Role::Developer),
            "create_server start_server stop_server reboot_server backup_management assign_firewall_groups view_logs"
        );
        assert_eq!(
            names(Role::Operator),
            "start_server stop_server reboot_server backup_management view_all view_logs"
        );
        assert_eq!(names(Role::Viewer), "view_all");
        assert_eq!(names(Role::User), "");
        assert_eq!(Role::Admin.default_permissions(), PermissionSet::all());
    }

    #[test]
    fn names_round_trip_and_seed_003s_twelve_are_known() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        let doc = "create_server delete_server start_server stop_server reboot_server \
                   backup_management manage_firewall_groups assign_firewall_groups manage_users \
                   manage_roles view_all view_logs";
        assert_eq!(PermissionSet::parse(doc.split(' ')).unwrap().len(), 12);
    }

    #[test]
    fn unknown_names_are_all_named_once() {
        let err = PermissionSet::parse(["view_all", "fly", "sudo", "fly"]).unwrap_err();
        assert_eq!(err.0, vec!["fly".to_owned(), "sudo".to_owned()]);
        assert_eq!(err.to_string(), "unknown permissions: fly, sudo");
        assert_eq!(
            PermissionSet::parse(["View_All"]).unwrap_err().to_string(),
            "unknown permission: View_All"
        );
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn serde_is_a_list_of_names() {
        let set = PermissionSet::parse(["view_logs", "create_server", "view_logs"]).unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["create_server","view_logs"]"#);
        let back: PermissionSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<PermissionSet>(r#"["nope"]"#).is_err());
        assert_eq!(
            serde_json::to_string(&Role::Operator).unwrap(),
            r#""operator""#
        );
    }
}
