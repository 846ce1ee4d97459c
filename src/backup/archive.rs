//! The archive (`vm` feature: the `zstd` crate links libzstd): a tar, optionally in a zstd
//! stream, of `qemu-server.xml`, the disk image(s) and `manifest.json` (last, so each disk's
//! sha256 is computed while it is copied: one read of every disk).
//!
//! Writing goes to a dot-file beside the final name and is renamed only when complete, after
//! its `.log` and `.notes`: a half-written backup never lists. Reading ([`unpack`]) writes each
//! disk to a temp file beside its destination, checks sizes and sha256 against the manifest and
//! the manifest against the VM, and only [`Unpacked::commit`] renames them over the VM's disks;
//! a corrupt or foreign archive changes nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{disk_entry_name, BackupName, Compress, DiskEntry, Manifest, Mode, Progress};

/// The domain XML's entry.
pub const XML_ENTRY: &str = "qemu-server.xml";
/// The manifest's entry (the last one).
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Larger XML or manifest entries are refused (real ones are a few KiB).
const SMALL_ENTRY_MAX: u64 = 4 << 20;
/// zstd level (vzdump's default is 1 thread at level 3 too).
const ZSTD_LEVEL: i32 = 3;

/// Why an archive was not written or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The archive is not what it says (corrupt, truncated, another VM's, hand-made).
    #[error("the archive is invalid: {0}")]
    Invalid(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

fn invalid(msg: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(msg.into())
}

/// What a backup copies: the VM's identity, its domain XML and its disks (target, file).
#[derive(Debug, Clone)]
pub struct Source {
    pub vmid: u32,
    pub uuid: String,
    pub name: String,
    pub mac: String,
    pub xml: String,
    pub disks: Vec<(String, PathBuf)>,
    pub mode: Mode,
}

/// A written (not yet published) archive.
#[derive(Debug)]
pub struct Written {
    pub name: BackupName,
    pub size: u64,
    pub manifest: Manifest,
    dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes and counts what passes; fails on EOF before `expect` bytes (a disk that shrank).
struct Tap<R> {
    inner: R,
    hash: Sha256,
    seen: u64,
    expect: u64,
    copied: Arc<AtomicU64>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.expect - self.seen;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the disk shrank while it was copied",
            ));
        }
        self.hash.update(&buf[..n]);
        self.seen += n as u64;
        self.copied.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reports `copied / total` as whole percents, each step once.
struct Meter<'a> {
    progress: &'a dyn Progress,
    copied: Arc<AtomicU64>,
    total: u64,
    last: u8,
    what: &'static str,
}

impl Meter<'_> {
    fn tick(&mut self) {
        let done = self.copied.load(Ordering::Relaxed);
        let pct = if self.total == 0 {
            100
        } else {
            u8::try_from((u128::from(done) * 100 / u128::from(self.total)).min(100)).unwrap_or(100)
        };
        if pct != self.last {
            self.last = pct;
            self.progress.progress(pct, self.what);
            if pct.is_multiple_of(10) {
                self.progress.log(&format!(
                    "INFO: {pct:3}% ({} of {} bytes)",
                    done.min(self.total),
                    self.total
                ));
            }
        }
    }
}

/// A reader that ticks the meter as it goes.
struct Ticking<'a, 'm, R> {
    inner: R,
    meter: &'m mut Meter<'a>,
}

impl<R: Read> Read for Ticking<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.tick();
        Ok(n)
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h
}

/// Writes the archive `name` into `dir` under its temp name; call [`publish`] to make it
/// visible. The caller holds the guest still (stopped or suspended) meanwhile.
pub fn write(
    dir: &Path,
    name: BackupName,
    src: &Source,
    progress: &dyn Progress,
) -> Result<Written, ArchiveError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let temp = dir.join(name.temp_name());
    let result = write_temp(&temp, name, src, progress);
    match result {
        Ok((size, manifest)) => Ok(Written {
            name,
            size,
            manifest,
            dir: dir.to_owned(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

fn write_temp(
    temp: &Path,
    name: BackupName,
    src: &Source,
    progress: &dyn Progress,
) -> Result<(u64, Manifest), ArchiveError> {
    let file = File::create(temp).map_err(io_err(format!("create {}", temp.display())))?;
    let out: Box<dyn Write> = match name.compress {
        Compress::None => Box::new(BufWriter::new(file)),
        Compress::Zstd => Box::new(
            zstd::stream::write::Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
                .map_err(io_err("start zstd"))?
                .auto_finish(),
        ),
    };
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let xml = src.xml.as_bytes();
    tar.append_data(&mut header(xml.len() as u64), XML_ENTRY, xml)
        .map_err(io_err("write the domain XML"))?;

    let mut disks = Vec::with_capacity(src.disks.len());
    let mut opened = Vec::with_capacity(src.disks.len());
    for (target, path) in &src.disks {
        let f = File::open(path).map_err(io_err(format!("open disk {target}")))?;
        let len = f
            .metadata()
            .map_err(io_err(format!("stat disk {target}")))?
            .len();
        let ext = path.extension().and_then(|e| e.to_str());
        let entry = disk_entry_name(target, ext)
            .ok_or_else(|| invalid(format!("disk target {target:?}")))?;
        opened.push((target.clone(), entry, f, len));
    }
    let total: u64 = opened.iter().map(|d| d.3).sum();
    let copied = Arc::new(AtomicU64::new(0));
    let mut meter = Meter {
        progress,
        copied: Arc::clone(&copied),
        total,
        last: u8::MAX,
        what: "copying disks",
    };
    for (target, entry, f, len) in opened {
        progress.log(&format!(
            "INFO: backup disk {target} ({len} bytes) as {entry}"
        ));
        let mut tap = Tap {
            inner: f,
            hash: Sha256::new(),
            seen: 0,
            expect: len,
            copied: Arc::clone(&copied),
        };
        tar.append_data(
            &mut header(len),
            &entry,
            Ticking {
                inner: &mut tap,
                meter: &mut meter,
            },
        )
        .map_err(io_err(format!("copy disk {target}")))?;
        disks.push(DiskEntry {
            target,
            entry,
            size: len,
            sha256: hex(&tap.hash.finalize()),
        });
    }
    let manifest = Manifest {
        format: 1,
        vmid: src.vmid,
        uuid: src.uuid.clone(),
        name: src.name.clone(),
        mac: src.mac.clone(),
        mode: src.mode.as_str().to_owned(),
        disks,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(format!("manifest: {e}")))?;
    tar.append_data(
        &mut header(json.len() as u64),
        MANIFEST_ENTRY,
        json.as_slice(),
    )
    .map_err(io_err("write the manifest"))?;
    let mut out = tar.into_inner().map_err(io_err("finish the tar"))?;
    out.flush().map_err(io_err("flush the archive"))?;
    drop(out);
    let f = File::open(temp).map_err(io_err("reopen the archive"))?;
    f.sync_all().map_err(io_err("sync the archive"))?;
    let size = f.metadata().map_err(io_err("stat the archive"))?.len();
    Ok((size, manifest))
}

/// Writes the `.log` (every line, then `INFO: Finished Backup of VM <vmid>`) and the `.notes`
/// (when not empty), then renames the archive to its name: from now on it lists.
pub fn publish(w: &Written, log: &[String], notes: &str) -> Result<PathBuf, ArchiveError> {
    let mut text = String::new();
    for line in log {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("INFO: Finished Backup of VM {}\n", w.name.vmid));
    let log_path = w.dir.join(w.name.log_name());
    std::fs::write(&log_path, text).map_err(io_err("write the log"))?;
    if !notes.is_empty() {
        std::fs::write(w.dir.join(w.name.notes_name()), notes)
            .map_err(io_err("write the notes"))?;
    }
    let final_path = w.dir.join(w.name.to_string());
    std::fs::rename(w.dir.join(w.name.temp_name()), &final_path)
        .map_err(io_err("rename the archive"))?;
    Ok(final_path)
}

/// Removes the archive's temp file (a backup that was written but not published).
pub fn discard(w: Written) {
    let _ = std::fs::remove_file(w.dir.join(w.name.temp_name()));
}

/// Removes the archive and its `.log`/`.notes`. `Ok(false)`: there was no such archive.
pub fn remove(dir: &Path, name: BackupName) -> Result<bool, ArchiveError> {
    let archive = dir.join(name.to_string());
    let existed = match std::fs::remove_file(&archive) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("remove the archive")(e)),
    };
    for side in [name.log_name(), name.notes_name()] {
        match std::fs::remove_file(dir.join(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove a side file")(e)),
        }
    }
    Ok(existed)
}

/// Every archive in `dir` whose name parses (others are ignored), with size and mtime. A
/// missing directory is an empty list.
pub fn scan(dir: &Path, storage: &str) -> Vec<super::Found> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().and_then(BackupName::parse) else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let ctime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.push(super::Found {
            name,
            storage: storage.to_owned(),
            size: meta.len(),
            ctime,
        });
    }
    out
}

/// Whether `dir` is a live backup job's staging directory (`.vzdump-qemu-….live`, its name
/// checked).
pub fn is_live_leftover(dir: &str) -> bool {
    dir.strip_prefix('.')
        .and_then(|d| d.strip_suffix(".live"))
        .and_then(BackupName::parse)
        .is_some()
}

/// Whether `file` is one of the temp files a backup or restore leaves when it dies mid-way:
/// an archive being written (`.vzdump-qemu-….partial`, its name checked) or a disk being
/// staged for a restore (`.<disk file>.restore`).
pub fn is_leftover(file: &str) -> bool {
    if let Some(archive) = file
        .strip_prefix('.')
        .and_then(|f| f.strip_suffix(".partial"))
    {
        return BackupName::parse(archive).is_some();
    }
    file.strip_prefix('.')
        .and_then(|f| f.strip_suffix(".restore"))
        .is_some_and(|disk| !disk.is_empty() && !disk.contains('/'))
}

/// Removes the [leftovers](is_leftover) and [live staging directories](is_live_leftover) in
/// `dir` (at start: no job runs yet); how many went.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let (Some(name), Ok(kind)) = (e.file_name().to_str().map(str::to_owned), e.file_type())
        else {
            continue;
        };
        let gone = if kind.is_file() && is_leftover(&name) {
            std::fs::remove_file(e.path()).is_ok()
        } else if kind.is_dir() && is_live_leftover(&name) {
            std::fs::remove_dir_all(e.path()).is_ok()
        } else {
            false
        };
        removed += usize::from(gone);
    }
    removed
}

/// What the VM must be for an archive to be restored onto it.
#[derive(Debug, Clone)]
pub struct Expect {
    pub vmid: u32,
    pub uuid: String,
    /// Each disk's target and the VM's own file it will overwrite.
    pub disks: BTreeMap<String, PathBuf>,
}

/// An archive read and checked: its XML and manifest, its disks in temp files beside their
/// destinations. Dropped without [`Unpacked::commit`], the temp files are removed.
#[derive(Debug)]
pub struct Unpacked {
    pub xml: String,
    pub manifest: Manifest,
    /// (temp, destination)
    files: Vec<(PathBuf, PathBuf)>,
}

impl Unpacked {
    /// Renames every disk over its destination (same directory: atomic per disk).
    pub fn commit(mut self) -> Result<(), ArchiveError> {
        for (temp, dest) in std::mem::take(&mut self.files) {
            std::fs::rename(&temp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                io_err(format!("write {}", dest.display()))(e)
            })?;
        }
        Ok(())
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        for (temp, _) in &self.files {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn temp_beside(dest: &Path) -> PathBuf {
    let file = dest
        .file_name()
        .map_or_else(|| "disk".into(), |f| f.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{file}.restore"))
}

/// Reads the archive at `path`, checks it and stages its disks (see [`Unpacked`]).
pub fn unpack(
    path: &Path,
    name: BackupName,
    expect: &Expect,
    progress: &dyn Progress,
) -> Result<Unpacked, ArchiveError> {
    let file = File::open(path).map_err(io_err("open the archive"))?;
    let total = file.metadata().map_err(io_err("stat the archive"))?.len();
    let copied = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: file,
        copied: Arc::clone(&copied),
    };
    let mut meter = Meter {
        progress,
        copied,
        total,
        last: u8::MAX,
        what: "restoring disks",
    };
    let reader: Box<dyn Read> = match name.compress {
        Compress::None => Box::new(io::BufReader::new(counted)),
        Compress::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(counted).map_err(io_err("start zstd"))?)
        }
    };
    let mut staged = Unpacked {
        xml: String::new(),
        manifest: Manifest {
            format: 0,
            vmid: 0,
            uuid: String::new(),
            name: String::new(),
            mac: String::new(),
            mode: String::new(),
            disks: Vec::new(),
        },
        files: Vec::new(),
    };
    // entry name → (size, sha256, target)
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| invalid(format!("not a tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("damaged: {e}")))?;
        if manifest.is_some() {
            return Err(invalid("entries after the manifest"));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(invalid("an entry that is not a regular file"));
        }
        let entry_name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| invalid("an entry name that is not UTF-8"))?;
        let size = entry
            .header()
            .size()
            .map_err(|_| invalid("a bad entry size"))?;
        if entry_name == XML_ENTRY || entry_name == MANIFEST_ENTRY {
            if size > SMALL_ENTRY_MAX {
                return Err(invalid(format!("{entry_name} is too large")));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| invalid(format!("{entry_name}: {e}")))?;
            if entry_name == XML_ENTRY {
                if !staged.xml.is_empty() {
                    return Err(invalid("two domain XMLs"));
                }
                staged.xml = text;
            } else {
                manifest = Some(
                    serde_json::from_str(&text).map_err(|e| invalid(format!("manifest: {e}")))?,
                );
            }
            continue;
        }
        // A disk: its target is in its name; only the VM's own disks are written.
        let target = entry_name
            .strip_prefix("disk-")
            .map(|t| t.split('.').next().unwrap_or(t).to_owned())
            .filter(|t| disk_entry_name(t, None).is_some())
            .ok_or_else(|| invalid(format!("unexpected entry {entry_name:?}")))?;
        let dest = expect
            .disks
            .get(&target)
            .ok_or_else(|| invalid(format!("disk {target} is not one of this VM's")))?;
        if seen.contains_key(&entry_name) || staged.files.iter().any(|(_, d)| d == dest) {
            return Err(invalid(format!("disk {target} twice")));
        }
        let temp = temp_beside(dest);
        let out = File::create(&temp).map_err(io_err(format!("create {}", temp.display())))?;
        staged.files.push((temp.clone(), dest.clone()));
        let mut out = BufWriter::new(out);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| invalid(format!("disk {target}: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(io_err(format!("write {}", temp.display())))?;
            written += n as u64;
            meter.tick();
        }
        if written != size {
            return Err(invalid(format!("disk {target} is truncated")));
        }
        let f = out
            .into_inner()
            .map_err(|e| io_err(format!("write {}", temp.display()))(e.into_error()))?;
        f.sync_all().map_err(io_err("sync a restored disk"))?;
        seen.insert(entry_name, (written, hex(&hash.finalize())));
    }
    let manifest = manifest.ok_or_else(|| invalid("no manifest (truncated?)"))?;
    if manifest.vmid != expect.vmid || !manifest.uuid.eq_ignore_ascii_case(&expect.uuid) {
        return Err(invalid(format!(
            "it is of VM {} ({}), not of VM {}",
            manifest.vmid, manifest.uuid, expect.vmid
        )));
    }
    if staged.xml.is_empty() {
        return Err(invalid("no domain XML"));
    }
    if manifest.disks.len() != seen.len() || manifest.disks.len() != expect.disks.len() {
        return Err(invalid("its disks are not this VM's disks"));
    }
    for d in &manifest.disks {
        match seen.get(&d.entry) {
            Some((size, sha)) if *size == d.size && sha.eq_ignore_ascii_case(&d.sha256) => {}
            Some(_) => return Err(invalid(format!("disk {} fails its checksum", d.target))),
            None => return Err(invalid(format!("disk {} is missing", d.target))),
        }
        if !expect.disks.contains_key(&d.target) {
            return Err(invalid(format!(
                "disk {} is not one of this VM's",
                d.target
            )));
        }
    }
    progress.progress(100, "restoring disks");
    staged.manifest = manifest;
    Ok(staged)
}

struct Counted<R> {
    inner: R,
    copied: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copied.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NoProgress, Stamp};
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<(Vec<u8>, Vec<String>)>);

    impl Progress for Record {
        fn progress(&self, pct: u8, _: &str) {
            self.0.lock().expect("lock").0.push(pct);
        }
        fn log(&self, line: &str) {
            self.0.lock().expect("lock").1.push(line.to_owned());
        }
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    struct Fixture {
        dir: tempfile::TempDir,
        disk: PathBuf,
        src: Source,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = dir.path().join("vm.qcow2");
        std::fs::write(&disk, bytes(3 << 20, 7)).expect("disk");
        let src = Source {
            vmid: 101,
            uuid: "0a1b2c3d-0000-4000-8000-000000000001".into(),
            name: "web".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            xml: "<domain><name>web</name></domain>".into(),
            disks: vec![("vda".into(), disk.clone())],
            mode: Mode::Stop,
        };
        Fixture { dir, disk, src }
    }

    fn name(c: Compress) -> BackupName {
        BackupName {
            vmid: 101,
            stamp: Stamp::new(2024, 1, 1, 12, 0, 0).expect("stamp"),
            compress: c,
        }
    }

    fn expect(f: &Fixture) -> Expect {
        Expect {
            vmid: 101,
            uuid: f.src.uuid.clone(),
            disks: [("vda".to_owned(), f.disk.clone())].into_iter().collect(),
        }
    }

    #[test]
    fn a_sweep_removes_only_what_a_dead_job_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let leftovers = [
            ".vzdump-qemu-101-2024_01_01-12_00_00.tar.zst.partial",
            ".disk.qcow2.restore",
        ];
        let kept = [
            "vzdump-qemu-101-2024_01_01-12_00_00.tar.zst",
            "vzdump-qemu-101-2024_01_01-12_00_00.log",
            ".vzdump-qemu-x.partial",
            "disk.qcow2",
            ".restore",
            "notes.partial",
            ".other.live",
        ];
        for f in leftovers.iter().chain(&kept) {
            std::fs::write(dir.path().join(f), b"x").expect("write");
        }
        let live = dir
            .path()
            .join(".vzdump-qemu-101-2024_01_01-12_00_00.tar.live");
        std::fs::create_dir(&live).expect("mkdir");
        std::fs::write(live.join("vda.qcow2"), b"x").expect("write");
        assert_eq!(sweep(dir.path()), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort_unstable();
        let mut want: Vec<String> = kept.iter().map(|s| (*s).to_owned()).collect();
        want.sort_unstable();
        assert_eq!(left, want);
        assert_eq!(sweep(&dir.path().join("missing")), 0);
    }

    #[test]
    fn both_compressions_round_trip_the_same_bytes() {
        for c in [Compress::None, Compress::Zstd] {
            let f = fixture();
            let store = f.dir.path().join("dump");
            let original = std::fs::read(&f.disk).expect("read");
            let rec = Record::default();
            let w = write(&store, name(c), &f.src, &rec).expect("write");
            assert!(
                scan(&store, "local").is_empty(),
                "not listed before publish"
            );
            assert_eq!(w.manifest.disks[0].sha256, sha(&original));
            let path = publish(&w, &["INFO: hello".into()], "정기 백업").expect("publish");
            let found = scan(&store, "local");
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].size, w.size);
            let log = std::fs::read_to_string(store.join(name(c).log_name())).expect("log");
            assert!(log.ends_with("INFO: Finished Backup of VM 101\n"), "{log}");
            let pcts = rec.0.lock().expect("lock").0.clone();
            assert_eq!(pcts.last(), Some(&100));
            assert!(pcts.windows(2).all(|w| w[0] < w[1]), "{pcts:?}");

            std::fs::write(&f.disk, b"changed").expect("change the disk");
            let u = unpack(&path, name(c), &expect(&f), &NoProgress).expect("unpack");
            assert_eq!(u.xml, f.src.xml);
            assert_eq!(std::fs::read(&f.disk).expect("read"), b"changed", "not yet");
            u.commit().expect("commit");
            assert_eq!(std::fs::read(&f.disk).expect("read"), original);
            assert!(remove(&store, name(c)).expect("remove"));
            assert_eq!(std::fs::read_dir(&store).expect("dir").count(), 0);
            assert!(!remove(&store, name(c)).expect("remove again"));
        }
    }

    #[test]
    fn corrupt_truncated_or_foreign_archives_change_nothing() {
        let f = fixture();
        let store = f.dir.path().join("dump");
        let w = write(&store, name(Compress::None), &f.src, &NoProgress).expect("write");
        let path = publish(&w, &[], "").expect("publish");
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&f.disk, b"current").expect("disk");
        let try_with = |bytes: &[u8], exp: &Expect| {
            std::fs::write(&path, bytes).expect("write");
            let r = unpack(&path, name(Compress::None), exp, &NoProgress);
            assert!(matches!(r, Err(ArchiveError::Invalid(_))), "{r:?}");
            assert_eq!(std::fs::read(&f.disk).expect("read"), b"current");
            let left: Vec<_> = std::fs::read_dir(f.dir.path())
                .expect("dir")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left.len(), 2, "no temp file left: {left:?}");
        };
        // One flipped byte in the middle of the disk.
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        try_with(&flipped, &expect(&f));
        // Truncated (no manifest).
        try_with(&good[..good.len() / 2], &expect(&f));
        // Another VM.
        let mut other = expect(&f);
        other.vmid = 102;
        try_with(&good, &other);
        // Not a tar at all.
        try_with(b"hello", &expect(&f));
    }

    #[test]
    fn a_disk_that_shrinks_fails_the_backup_and_leaves_no_file() {
        struct Shrink(PathBuf);
        impl Progress for Shrink {
            fn progress(&self, pct: u8, _: &str) {
                if pct == 10 {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&self.0)
                        .and_then(|f| f.set_len(1 << 20));
                }
            }
            fn log(&self, _: &str) {}
        }
        let f = fixture();
        let store = f.dir.path().join("dump");
        let r = write(
            &store,
            name(Compress::None),
            &f.src,
            &Shrink(f.disk.clone()),
        );
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(&store).expect("dir").count(), 0);
    }
}
