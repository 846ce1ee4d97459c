//! What a create or a resize may ask for (pure): the seed's rules in the original's check
//! order — name, then CPU, then memory, then OS type; the first broken rule is the answer.
//!
//! The words belong to the API (`api/vms.rs` maps each [`Invalid`] to seed 002's or the
//! seed-era original's message); the original's substring blacklist (which refused names such
//! as `my-selection`) is deliberately not here: the character rule already keeps names to
//! letters, digits, `-` and `_`.

/// Seed 002: 3–64 characters.
pub const NAME_MIN: usize = 3;
pub const NAME_MAX: usize = 64;
/// Seed 002: 1–32 vCPUs.
pub const CPU_MIN: i64 = 1;
pub const CPU_MAX: i64 = 32;
/// Seed 002: 512–65536 MiB, in steps of 256.
pub const MEMORY_MIN: i64 = 512;
pub const MEMORY_MAX: i64 = 65_536;
pub const MEMORY_STEP: i64 = 256;

/// The guest families with a template (seed 002's list, in its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OsType {
    UbuntuDesktop,
    UbuntuServer,
    Kali,
    Windows,
}

impl OsType {
    pub const ALL: [OsType; 4] = [
        OsType::UbuntuDesktop,
        OsType::UbuntuServer,
        OsType::Kali,
        OsType::Windows,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UbuntuDesktop => "ubuntu-desktop",
            Self::UbuntuServer => "ubuntu-server",
            Self::Kali => "kali",
            Self::Windows => "windows",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The first rule a request breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    NameRequired,
    NameTooShort,
    NameTooLong,
    /// Control characters.
    NameControl,
    /// Anything but ASCII letters, digits, `-`, `_`.
    NameCharset,
    CpuTooLow,
    CpuTooHigh,
    MemoryTooLow,
    MemoryTooHigh,
    MemoryNotMultiple,
    OsType,
    /// `update`/`resize` without both `cpu` and `memory`.
    ResourcesRequired,
    /// A snapshot without a name.
    SnapshotNameRequired,
    /// A snapshot name or description that is too long or has control characters.
    SnapshotText,
}

/// A create request that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVm {
    pub name: String,
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    pub os_type: OsType,
}

/// Checks a create request. `cpu`/`memory` are what the client sent (absent = 0), so a
/// negative or missing number is answered by the range rule, as the original does.
pub fn check_create(name: &str, cpu: i64, memory: i64, os_type: &str) -> Result<NewVm, Invalid> {
    let name = check_name(name)?;
    let (cpu, memory) = check_resources(cpu, memory)?;
    let os_type = OsType::parse(os_type.trim()).ok_or(Invalid::OsType)?;
    Ok(NewVm {
        name,
        cpu,
        memory,
        os_type,
    })
}

/// Checks an `update`/`resize`: both numbers are required (0 or absent is "missing"), then
/// the same ranges as a create.
pub fn check_resize(cpu: i64, memory: i64) -> Result<(u32, u64), Invalid> {
    if cpu == 0 || memory == 0 {
        return Err(Invalid::ResourcesRequired);
    }
    check_resources(cpu, memory)
}

/// The name rules; returns the name as it will be stored (surrounding whitespace removed).
pub fn check_name(raw: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Invalid::NameRequired);
    }
    // Bytes, as the original counts (every accepted name is ASCII anyway).
    if name.len() < NAME_MIN {
        return Err(Invalid::NameTooShort);
    }
    if name.len() > NAME_MAX {
        return Err(Invalid::NameTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::NameControl);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Invalid::NameCharset);
    }
    Ok(name.to_owned())
}

fn check_resources(cpu: i64, memory: i64) -> Result<(u32, u64), Invalid> {
    if cpu < CPU_MIN {
        return Err(Invalid::CpuTooLow);
    }
    if cpu > CPU_MAX {
        return Err(Invalid::CpuTooHigh);
    }
    if memory < MEMORY_MIN {
        return Err(Invalid::MemoryTooLow);
    }
    if memory > MEMORY_MAX {
        return Err(Invalid::MemoryTooHigh);
    }
    if memory % MEMORY_STEP != 0 {
        return Err(Invalid::MemoryNotMultiple);
    }
    // Both are in range, so they fit.
    let cpu = u32::try_from(cpu).map_err(|_| Invalid::CpuTooHigh)?;
    let memory = u64::try_from(memory).map_err(|_| Invalid::MemoryTooLow)?;
    Ok((cpu, memory))
}

/// Longest snapshot name and description we keep.
pub const SNAPSHOT_NAME_MAX: usize = 128;
pub const SNAPSHOT_DESCRIPTION_MAX: usize = 1024;

/// A snapshot's name (required) and description (optional), trimmed.
pub fn check_snapshot(name: &str, description: &str) -> Result<(String, String), Invalid> {
    let name = name.trim();
    let description = description.trim();
    if name.is_empty() {
        return Err(Invalid::SnapshotNameRequired);
    }
    let bad = |s: &str, max: usize| {
        s.len() > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
    };
    if bad(name, SNAPSHOT_NAME_MAX) || bad(description, SNAPSHOT_DESCRIPTION_MAX) {
        return Err(Invalid::SnapshotText);
    }
    Ok((name.to_owned(), description.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_check_order() {
        assert_eq!(check_name(""), Err(Invalid::NameRequired));
        assert_eq!(check_name("   "), Err(Invalid::NameRequired));
        assert_eq!(check_name("ab"), Err(Invalid::NameTooShort));
        assert_eq!(check_name(" ab "), Err(Invalid::NameTooShort));
        assert_eq!(check_name(&"a".repeat(65)), Err(Invalid::NameTooLong));
        assert_eq!(check_name(&"a".repeat(64)), Ok("a".repeat(64)));
        assert_eq!(check_name("ab\u{7}c"), Err(Invalid::NameControl));
        assert_eq!(check_name("My VM"), Err(Invalid::NameCharset));
        assert_eq!(check_name("vm.1"), Err(Invalid::NameCharset));
        assert_eq!(check_name("vmé1"), Err(Invalid::NameCharset));
        assert_eq!(check_name("<script>"), Err(Invalid::NameCharset));
        // The original's blacklist refused these; the character rule is enough.
        assert_eq!(check_name("my-selection"), Ok("my-selection".into()));
        assert_eq!(check_name("sp_x"), Ok("sp_x".into()));
        assert_eq!(check_name(" test-vm "), Ok("test-vm".into()));
    }

    #[test]
    fn resources_in_check_order() {
        let c = |cpu, mem| check_create("vm-1", cpu, mem, "kali").map(|v| (v.cpu, v.memory));
        assert_eq!(c(0, 0), Err(Invalid::CpuTooLow));
        assert_eq!(c(-3, 2048), Err(Invalid::CpuTooLow));
        assert_eq!(c(33, 2048), Err(Invalid::CpuTooHigh));
        assert_eq!(c(2, 256), Err(Invalid::MemoryTooLow));
        assert_eq!(c(2, 65_792), Err(Invalid::MemoryTooHigh));
        assert_eq!(c(2, 1000), Err(Invalid::MemoryNotMultiple));
        assert_eq!(c(32, 65_536), Ok((32, 65_536)));
        assert_eq!(c(1, 512), Ok((1, 512)));
        // Name first, then CPU, then memory, then OS type.
        assert_eq!(check_create("x", 0, 0, "dos"), Err(Invalid::NameTooShort));
        assert_eq!(check_create("vm-1", 0, 1, "dos"), Err(Invalid::CpuTooLow));
        assert_eq!(
            check_create("vm-1", 1, 1, "dos"),
            Err(Invalid::MemoryTooLow)
        );
        assert_eq!(check_create("vm-1", 1, 512, "dos"), Err(Invalid::OsType));
        assert_eq!(
            check_create("vm-1", 1, 512, "Windows"),
            Err(Invalid::OsType)
        );
        for os in OsType::ALL {
            assert_eq!(
                check_create("vm-1", 1, 512, os.as_str()).map(|v| v.os_type),
                Ok(os)
            );
        }
    }

    #[test]
    fn resize_needs_both_numbers() {
        assert_eq!(check_resize(0, 4096), Err(Invalid::ResourcesRequired));
        assert_eq!(check_resize(4, 0), Err(Invalid::ResourcesRequired));
        assert_eq!(check_resize(-1, 4096), Err(Invalid::CpuTooLow));
        assert_eq!(check_resize(4, 4000), Err(Invalid::MemoryNotMultiple));
        assert_eq!(check_resize(4, 4096), Ok((4, 4096)));
    }

    #[test]
    fn snapshots() {
        assert_eq!(check_snapshot(" ", "x"), Err(Invalid::SnapshotNameRequired));
        assert_eq!(
            check_snapshot(&"s".repeat(129), ""),
            Err(Invalid::SnapshotText)
        );
        assert_eq!(check_snapshot("a\u{0}b", ""), Err(Invalid::SnapshotText));
        assert_eq!(
            check_snapshot(" Snapshot 1 ", "Before <update> & more"),
            Ok(("Snapshot 1".into(), "Before <update> & more".into()))
        );
    }
}
