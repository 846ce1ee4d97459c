//! vzdump-style backups of VMs (seed 003): the file names, the strict parser that guards every
//! path a request names, the listing, keep-last pruning, and (`vm` feature) the archive.
//!
//! The pure part ([`BackupName`], [`listing`], [`prune`], [`Manifest`]) has no I/O and exists
//! in every build. Names are `vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.<ext>` in **local time**,
//! like vzdump. The extension says honestly what the file is: `.tar` (a POSIX tar) or
//! `.tar.zst` (that tar in a zstd stream), holding `qemu-server.xml` (the domain XML), the
//! disk image(s) as they are on disk (`disk-<target>.<ext>`, e.g. `disk-vda.qcow2`) and
//! `manifest.json` (vmid, uuid, name, MAC, each disk's target, size and sha256), last. It is
//! not Proxmox's VMA format, so it is not called `.vma`.
//!
//! This module knows nothing about libvirt, accounts or HTTP: the API layer resolves a VM to
//! its vmid and disks, pauses or stops it through the VM service, and hands the files here.
//! Progress is reported through [`Progress`], which a task registry can implement.

#[cfg(feature = "vm")]
pub mod archive;
/// Builds without the `vm` feature (no libzstd): the same API, every call refused. The API
/// answers 503 before it gets here, since such builds have no VM service.
#[cfg(not(feature = "vm"))]
#[path = "archive_off.rs"]
pub mod archive;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where progress and log lines of a backup or restore go (a task, or an in-memory status).
pub trait Progress: Send + Sync {
    /// `pct` 0–100 of the bytes copied so far; `msg` a short line for people.
    fn progress(&self, pct: u8, msg: &str);
    /// One log line, vzdump style (`INFO: …`, `WARN: …`, `ERROR: …`).
    fn log(&self, line: &str);
}

/// A [`Progress`] that drops everything (tests, callers that do not watch).
pub struct NoProgress;

impl Progress for NoProgress {
    fn progress(&self, _: u8, _: &str) {}
    fn log(&self, _: &str) {}
}

/// How the guest is held while its disks are copied (vzdump's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Shut down (bounded wait, then power off), copy, start again if it was running.
    Stop,
    /// Suspend, copy, resume.
    Suspend,
    /// Live. Without a hypervisor backup job this falls back to [`Mode::Suspend`] (said in
    /// the log).
    Snapshot,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop" => Self::Stop,
            "suspend" => Self::Suspend,
            "snapshot" => Self::Snapshot,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Suspend => "suspend",
            Self::Snapshot => "snapshot",
        }
    }
}

/// The archive's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compress {
    None,
    Zstd,
}

impl Compress {
    /// vzdump's words: `zstd`; `0`, `none` or empty for none. (`gzip`/`lzo` are not offered.)
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "zstd" | "1" => Self::Zstd,
            "" | "0" | "none" => Self::None,
            _ => return None,
        })
    }

    /// The file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "tar",
            Self::Zstd => "tar.zst",
        }
    }
}

/// A local date and time as vzdump writes it (`YYYY_MM_DD-HH_MM_SS`), checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Stamp {
    /// A stamp whose fields are in range (day checked against the month, leap years too).
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        let ok = (1000..=9999).contains(&year)
            && (1..=days).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        ok.then_some(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// The local time now (plus `offset_secs`, to step past a name already taken).
    pub fn local_now(offset_secs: i64) -> Self {
        use chrono::{Datelike, Timelike};
        let t = chrono::Local::now() + chrono::Duration::seconds(offset_secs);
        Self::new(
            u16::try_from(t.year()).unwrap_or(9999),
            u8::try_from(t.month()).unwrap_or(1),
            u8::try_from(t.day()).unwrap_or(1),
            u8::try_from(t.hour()).unwrap_or(0),
            u8::try_from(t.minute()).unwrap_or(0),
            u8::try_from(t.second()).unwrap_or(0),
        )
        .unwrap_or(Self {
            year: 2000,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        })
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}_{:02}_{:02}-{:02}_{:02}_{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// A backup archive's file name: the only kind of name a request may make edgeward touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupName {
    pub vmid: u32,
    pub stamp: Stamp,
    pub compress: Compress,
}

/// Longest name the parser looks at (a real one is ~45 bytes).
const NAME_MAX: usize = 80;

impl BackupName {
    /// Parses exactly `vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.tar[.zst]`: ASCII, no leading
    /// zeros in the vmid, a real date, nothing before or after. So no `/`, `..`, NUL or other
    /// byte can ever reach a path.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > NAME_MAX || !s.is_ascii() {
            return None;
        }
        let rest = s.strip_prefix("vzdump-qemu-")?;
        let (vmid, rest) = rest.split_once('-')?;
        if vmid.is_empty()
            || vmid.len() > 10
            || vmid.starts_with('0')
            || !vmid.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let vmid: u32 = vmid.parse().ok()?;
        // "YYYY_MM_DD-HH_MM_SS" is 19 bytes, then ".".
        let (stamp, ext) = (rest.get(..19)?, rest.get(19..)?);
        let b = stamp.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Option<u16> {
            let part = stamp.get(r)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        if b[4] != b'_' || b[7] != b'_' || b[10] != b'-' || b[13] != b'_' || b[16] != b'_' {
            return None;
        }
        let small = |r| digits(r).and_then(|v| u8::try_from(v).ok());
        let stamp = Stamp::new(
            digits(0..4)?,
            small(5..7)?,
            small(8..10)?,
            small(11..13)?,
            small(14..16)?,
            small(17..19)?,
        )?;
        let compress = match ext {
            ".tar" => Compress::None,
            ".tar.zst" => Compress::Zstd,
            _ => return None,
        };
        Some(Self {
            vmid,
            stamp,
            compress,
        })
    }

    /// The `.log` beside the archive (vzdump: the name without its extension, plus `.log`).
    pub fn log_name(&self) -> String {
        format!("vzdump-qemu-{}-{}.log", self.vmid, self.stamp)
    }

    /// The `.notes` beside the archive (vzdump: the archive's name plus `.notes`).
    pub fn notes_name(&self) -> String {
        format!("{self}.notes")
    }

    /// Where the archive is written before it is complete (never listed: a dot file).
    pub fn temp_name(&self) -> String {
        format!(".{self}.partial")
    }

    /// The directory a live backup job writes its disk copies into before they are archived
    /// (a dot directory: never listed).
    pub fn live_dir_name(&self) -> String {
        format!(".{self}.live")
    }

    /// Every file a backup of this VM at this stamp may own, whatever its compression: the
    /// archives, their notes and partials, and the one shared `.log`. A new backup's stamp is
    /// free only when none of them exists (two backups within one second share a stem).
    pub fn stem_files(&self) -> Vec<String> {
        let mut files = vec![self.log_name()];
        for compress in [Compress::None, Compress::Zstd] {
            let n = Self { compress, ..*self };
            files.extend([
                n.to_string(),
                n.notes_name(),
                n.temp_name(),
                n.live_dir_name(),
            ]);
        }
        files
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vzdump-qemu-{}-{}.{}",
            self.vmid,
            self.stamp,
            self.compress.extension()
        )
    }
}

/// A name or path asked for, refused (and why, for the 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("not a backup file name: {0:?}")]
    Pattern(String),
    #[error("backup {name} is not of VM {vmid}")]
    OtherVm { name: String, vmid: u32 },
}

/// `name` if it is a backup file name of VM `vmid`, else why not.
pub fn check_name(name: &str, vmid: u32) -> Result<BackupName, NameError> {
    let parsed = BackupName::parse(name).ok_or_else(|| NameError::Pattern(name.to_owned()))?;
    if parsed.vmid != vmid {
        return Err(NameError::OtherVm {
            name: name.to_owned(),
            vmid,
        });
    }
    Ok(parsed)
}

/// Backup storages: name → directory. An unknown name is refused by the caller.
pub type Storages = BTreeMap<String, PathBuf>;

/// One archive found in a storage directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: BackupName,
    pub storage: String,
    pub size: u64,
    /// The file's mtime, Unix seconds.
    pub ctime: u64,
}

/// One VM's backups in the listing (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct VmBackups {
    pub vmid: u32,
    /// `None` when no VM has that vmid any more (the API names it `VM-<vmid>`).
    pub vm_name: Option<String>,
    pub backups: Vec<Found>,
    pub total_size: u64,
}

/// The listing: every archive whose vmid `names` holds (the caller's visible VMs; with
/// `include_unknown` also archives of vmids no VM has), grouped by vmid in vmid order, newest
/// first within a VM.
pub fn listing(
    found: Vec<Found>,
    names: &BTreeMap<u32, String>,
    include_unknown: bool,
) -> Vec<VmBackups> {
    let mut by_vm: BTreeMap<u32, Vec<Found>> = BTreeMap::new();
    for f in found {
        if include_unknown || names.contains_key(&f.name.vmid) {
            by_vm.entry(f.name.vmid).or_default().push(f);
        }
    }
    by_vm
        .into_iter()
        .map(|(vmid, mut backups)| {
            backups.sort_by(|a, b| {
                (b.name.stamp, &b.storage, b.name.compress).cmp(&(
                    a.name.stamp,
                    &a.storage,
                    a.name.compress,
                ))
            });
            VmBackups {
                vmid,
                vm_name: names.get(&vmid).cloned(),
                total_size: backups.iter().map(|f| f.size).sum(),
                backups,
            }
        })
        .collect()
}

/// Size in GiB, rounded to two decimals (seed 003's `size_gb`).
pub fn size_gb(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0 * 1024.0) * 100.0).round() / 100.0
}

/// Keep-last pruning: of `names` (any VMs), the ones of `vmid` to remove so that the newest
/// `keep_last` stay. `keep_last` 0 removes nothing (it means "keep all").
pub fn prune(names: &[BackupName], vmid: u32, keep_last: usize) -> Vec<BackupName> {
    if keep_last == 0 {
        return Vec::new();
    }
    let mut mine: Vec<BackupName> = names.iter().filter(|n| n.vmid == vmid).copied().collect();
    mine.sort_by(|a, b| b.cmp(a));
    mine.dedup();
    mine.into_iter().skip(keep_last).collect()
}

/// What the archive says it holds (its `manifest.json`, the last entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `1`.
    pub format: u32,
    pub vmid: u32,
    pub uuid: String,
    pub name: String,
    pub mac: String,
    pub mode: String,
    pub disks: Vec<DiskEntry>,
}

/// One disk in an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    /// The guest's device name (`vda`, `sda`).
    pub target: String,
    /// The entry's name in the tar (`disk-vda.qcow2`).
    pub entry: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// The tar entry name for a disk: `disk-<target>[.<qcow2|raw|img>]`; `None` for a target that
/// is not a plain device name.
pub fn disk_entry_name(target: &str, source_ext: Option<&str>) -> Option<String> {
    let ok = !target.is_empty()
        && target.len() <= 16
        && target
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return None;
    }
    Some(match source_ext {
        Some(e @ ("qcow2" | "raw" | "img")) => format!("disk-{target}.{e}"),
        _ => format!("disk-{target}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(vmid: u32, s: (u16, u8, u8, u8, u8, u8), c: Compress) -> BackupName {
        BackupName {
            vmid,
            stamp: Stamp::new(s.0, s.1, s.2, s.3, s.4, s.5).expect("a valid stamp"),
            compress: c,
        }
    }

    #[test]
    fn names_are_vzdumps() {
        let n = name(101, (2024, 1, 1, 12, 0, 0), Compress::Zstd);
        assert_eq!(n.to_string(), "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst");
        assert_eq!(n.log_name(), "vzdump-qemu-101-2024_01_01-12_00_00.log");
        assert_eq!(
            n.notes_name(),
            "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst.notes"
        );
        assert!(n.temp_name().starts_with('.'));
        assert_eq!(BackupName::parse(&n.to_string()), Some(n));
        let plain = name(100, (2024, 2, 29, 23, 59, 59), Compress::None);
        assert_eq!(
            BackupName::parse("vzdump-qemu-100-2024_02_29-23_59_59.tar"),
            Some(plain)
        );
    }

    #[test]
    fn a_stem_owns_both_archives_their_notes_partials_and_the_log() {
        let n = name(100, (2026, 12, 2, 3, 46, 13), Compress::Zstd);
        let files = n.stem_files();
        for f in [
            "vzdump-qemu-100-2026_12_02-03_46_13.log",
            "vzdump-qemu-100-2026_12_02-03_46_13.tar",
            "vzdump-qemu-100-2026_12_02-03_46_13.tar.zst",
            "vzdump-qemu-100-2026_12_02-03_46_13.tar.notes",
            ".vzdump-qemu-100-2026_12_02-03_46_13.tar.zst.partial",
        ] {
            assert!(files.iter().any(|x| x == f), "{f} in {files:?}");
        }
        assert!(files
            .iter()
            .any(|x| x == ".vzdump-qemu-100-2026_12_02-03_46_13.tar.live"));
        assert_eq!(files.len(), 9);
    }

    #[test]
    fn hostile_names_never_parse() {
        for bad in [
            "",
            "../../etc/passwd",
            "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst/../../x",
            "../vzdump-qemu-101-2024_01_01-12_00_00.tar.zst",
            "dir/vzdump-qemu-101-2024_01_01-12_00_00.tar.zst",
            "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst\0",
            "vzdump-qemu-101-2024_01_01-12_00_00.vma.zst",
            "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst.notes",
            "vzdump-qemu-101-2024_01_01-12_00_00.log",
            "vzdump-qemu-0101-2024_01_01-12_00_00.tar",
            "vzdump-qemu--2024_01_01-12_00_00.tar",
            "vzdump-qemu-+101-2024_01_01-12_00_00.tar",
            "vzdump-qemu-101-2023_02_29-12_00_00.tar",
            "vzdump-qemu-101-2024_13_01-12_00_00.tar",
            "vzdump-qemu-101-2024_01_01-24_00_00.tar",
            "vzdump-qemu-101-2024_01_01-12_00_0.tar",
            "vzdump-qemu-101-2024-01-01-12_00_00.tar",
            "vzdump-qemu-99999999999-2024_01_01-12_00_00.tar",
            "vzdump-lxc-101-2024_01_01-12_00_00.tar",
            " vzdump-qemu-101-2024_01_01-12_00_00.tar",
            "vzdump-qemu-101-2024_01_01-12_00_00.tar ",
            "vzdump-qemu-101-2024_01_01-12_00_00.TAR",
            "vzdump-qemu-101-２024_01_01-12_00_00.tar",
        ] {
            assert_eq!(BackupName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_name_belongs_to_one_vm() {
        let n = "vzdump-qemu-101-2024_01_01-12_00_00.tar";
        assert!(check_name(n, 101).is_ok());
        assert_eq!(
            check_name(n, 102),
            Err(NameError::OtherVm {
                name: n.into(),
                vmid: 102
            })
        );
        assert!(matches!(
            check_name("../../etc/passwd", 101),
            Err(NameError::Pattern(_))
        ));
    }

    #[test]
    fn modes_and_compression() {
        for m in [Mode::Stop, Mode::Suspend, Mode::Snapshot] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse("Snapshot"), None);
        assert_eq!(Compress::parse("zstd"), Some(Compress::Zstd));
        assert_eq!(Compress::parse(""), Some(Compress::None));
        assert_eq!(Compress::parse("gzip"), None);
    }

    #[test]
    fn listing_groups_sorts_and_sums() {
        let f = |vmid, sec, size, storage: &str| Found {
            name: name(vmid, (2024, 1, 1, 12, 0, sec), Compress::Zstd),
            storage: storage.into(),
            size,
            ctime: u64::from(sec),
        };
        let names: BTreeMap<u32, String> = [(101, "web".to_owned()), (100, "db".to_owned())]
            .into_iter()
            .collect();
        let found = vec![
            f(101, 1, 1 << 30, "local"),
            f(101, 5, 1 << 29, "nas"),
            f(100, 3, 10, "local"),
            f(555, 3, 10, "local"),
        ];
        let l = listing(found.clone(), &names, false);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].vmid, l[0].vm_name.as_deref()), (100, Some("db")));
        assert_eq!(l[1].backups[0].name.stamp.second, 5, "newest first");
        assert_eq!(l[1].total_size, (1 << 30) + (1 << 29));
        assert_eq!(size_gb(l[1].total_size), 1.5);
        let all = listing(found, &names, true);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].vm_name, None);
        assert_eq!(size_gb(2_684_354_560), 2.5);
        assert_eq!(size_gb(0), 0.0);
        assert_eq!(size_gb(1_234_567_890), 1.15);
    }

    #[test]
    fn prune_keeps_the_newest_of_one_vm() {
        let names: Vec<BackupName> = (0..5)
            .map(|s| name(101, (2024, 1, 1, 12, 0, s), Compress::Zstd))
            .chain([name(102, (2020, 1, 1, 0, 0, 0), Compress::None)])
            .collect();
        let gone = prune(&names, 101, 2);
        let secs: Vec<u8> = gone.iter().map(|n| n.stamp.second).collect();
        assert_eq!(secs, vec![2, 1, 0]);
        assert!(prune(&names, 101, 0).is_empty());
        assert!(prune(&names, 102, 1).is_empty());
        assert!(prune(&names, 103, 1).is_empty());
    }

    #[test]
    fn disk_entries_are_plain() {
        assert_eq!(
            disk_entry_name("vda", Some("qcow2")).as_deref(),
            Some("disk-vda.qcow2")
        );
        assert_eq!(
            disk_entry_name("sda", Some("exe")).as_deref(),
            Some("disk-sda")
        );
        assert_eq!(disk_entry_name("../x", None), None);
        assert_eq!(disk_entry_name("", None), None);
    }

    fn any_stamp() -> impl Strategy<Value = Stamp> {
        (
            1000u16..=9999,
            1u8..=12,
            1u8..=31,
            0u8..24,
            0u8..60,
            0u8..60,
        )
            .prop_filter_map("a real date", |(y, mo, d, h, mi, s)| {
                Stamp::new(y, mo, d, h, mi, s)
            })
    }

    proptest! {
        #[test]
        fn every_formatted_name_parses_back(vmid in 1u32.., stamp in any_stamp(), zst: bool) {
            let n = BackupName {
                vmid,
                stamp,
                compress: if zst { Compress::Zstd } else { Compress::None },
            };
            prop_assert_eq!(BackupName::parse(&n.to_string()), Some(n));
            prop_assert_eq!(check_name(&n.to_string(), vmid), Ok(n));
            if vmid > 1 {
                prop_assert!(check_name(&n.to_string(), vmid - 1).is_err());
            }
        }

        #[test]
        fn names_that_parse_are_safe_path_components(s in "\\PC{0,70}") {
            if let Some(n) = BackupName::parse(&s) {
                prop_assert!(!s.contains('/') && !s.contains("..") && !s.contains('\0'));
                prop_assert_eq!(n.to_string(), s);
            }
        }

        #[test]
        fn mangled_names_never_parse(
            vmid in 100u32..100_000,
            stamp in any_stamp(),
            pos in 0usize..64,
            bad in prop::sample::select(vec!["/", "..", "\0", "../", "\\", " ", "%2f", "\n"]),
        ) {
            let good = BackupName { vmid, stamp, compress: Compress::Zstd }.to_string();
            let at = pos.min(good.len());
            let mangled = format!("{}{}{}", &good[..at], bad, &good[at..]);
            prop_assert_eq!(BackupName::parse(&mangled), None, "{:?}", mangled);
        }

        #[test]
        fn parser_never_panics(s in "[vzdump_qemu0-9.tarst/-]{0,60}") {
            let _ = BackupName::parse(&s);
        }
    }
}
