//! The work of one backup or restore, off the request: holding the guest as the mode says
//! (stop, suspend, or libvirt's live backup job), writing and publishing the archive, pruning,
//! and putting a checked archive back. It reports to the job's [`Cell`] (status, log, task).

use std::path::PathBuf;
use std::sync::Arc;

use super::{archive_failure, vm_failure, Cell, Plan};
use crate::backup::{self, BackupName, Compress, Mode, Progress};
use crate::vm::{Caller, LiveBackup, VmService, VmStatus};

pub(super) struct BackupJob {
    pub(super) vms: VmService,
    pub(super) caller: Caller,
    pub(super) key: String,
    pub(super) target: crate::vm::BackupTarget,
    pub(super) plan: Plan,
    pub(super) keep_last: usize,
    pub(super) cell: Arc<Cell>,
}

/// How the guest was held, to undo it.
enum Held {
    Nothing,
    Stopped,
    Suspended,
    /// A live backup job wrote `outputs` (device, copy) into `staging`.
    Live {
        staging: PathBuf,
        outputs: Vec<(String, PathBuf)>,
    },
}

/// How often a live backup job is polled, and how long it may copy nothing.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_millis(500);
const LIVE_STALL: std::time::Duration = std::time::Duration::from_secs(300);
/// The share of the progress bar the live copy takes (the archive the rest).
const LIVE_SHARE: u8 = 50;

/// The archive's progress placed after `from` percent (a live job's copy came first).
struct Scaled {
    cell: Arc<Cell>,
    from: u8,
}

impl Progress for Scaled {
    fn progress(&self, pct: u8, msg: &str) {
        let span = u16::from(100 - self.from.min(100));
        let scaled = u16::from(self.from) + u16::from(pct.min(100)) * span / 100;
        self.cell.progress(u8::try_from(scaled).unwrap_or(100), msg);
    }

    fn log(&self, line: &str) {
        self.cell.log(line);
    }
}

impl BackupJob {
    /// `Ok(true)`: done, with `snapshot` run as `suspend`.
    pub(super) async fn run(&self) -> Result<bool, String> {
        let vm = &self.target.view;
        let log = |l: &str| self.cell.log(l);
        let mut name = BackupName {
            vmid: vm.vmid,
            stamp: backup::Stamp::local_now(0),
            compress: self.plan.compress,
        };
        // One second later for a stem already taken (two backups within a second, even of
        // different compression, would share their `.log`).
        let taken = |n: &BackupName| {
            n.stem_files()
                .iter()
                .any(|f| self.plan.dir.join(f).exists())
        };
        let mut step = 1;
        while taken(&name) && step < 120 {
            name.stamp = backup::Stamp::local_now(step);
            step += 1;
        }
        self.cell.set_file(&name.to_string());
        log(&format!(
            "INFO: starting new backup job: vzdump {} --mode {} --compress {} --storage {}",
            vm.vmid,
            self.plan.mode.as_str(),
            match self.plan.compress {
                Compress::Zstd => "zstd",
                Compress::None => "0",
            },
            self.plan.storage
        ));
        log(&format!("INFO: Starting Backup of VM {} (qemu)", vm.vmid));
        log(&format!(
            "INFO: Backup started at {}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        ));
        log(&format!(
            "INFO: status = {}",
            vm.status.as_str().to_ascii_lowercase()
        ));
        log(&format!("INFO: VM Name: {}", vm.name));
        let xml = self
            .vms
            .saved_xml(&self.key, self.caller)
            .await
            .map_err(vm_failure)?;
        log(&format!("INFO: backup mode: {}", self.plan.mode.as_str()));
        let (held, fell_back) = self.hold(name).await?;
        log(&format!(
            "INFO: creating vzdump archive '{}'",
            self.plan.dir.join(name.to_string()).display()
        ));
        // A live job's copies are what goes into the archive; otherwise the disks themselves.
        let (disks, from) = match &held {
            Held::Live { outputs, .. } => (outputs.clone(), LIVE_SHARE),
            _ => (self.target.disks.clone(), 0),
        };
        let src = backup::archive::Source {
            vmid: vm.vmid,
            uuid: vm.uuid.clone(),
            name: vm.name.clone(),
            mac: self.target.mac.clone(),
            xml,
            disks,
            mode: self.plan.mode,
        };
        let dir = self.plan.dir.clone();
        let progress = Scaled {
            cell: Arc::clone(&self.cell),
            from,
        };
        let written = tokio::task::spawn_blocking(move || {
            backup::archive::write(&dir, name, &src, &progress)
        })
        .await
        .map_err(|_| "the copy was interrupted".to_owned());
        // Undo the hold whatever the copy did.
        let released = self.release(held).await;
        let written = written?.map_err(archive_failure)?;
        if let Err(why) = released {
            backup::archive::discard(written);
            return Err(why);
        }
        log(&format!(
            "INFO: archive file size: {:.2}GB",
            backup::size_gb(written.size)
        ));
        // Prune with the new archive counted among the newest.
        let mut doomed = Vec::new();
        if self.plan.remove {
            let mut names: Vec<BackupName> = backup::archive::scan(&self.plan.dir, "")
                .into_iter()
                .map(|f| f.name)
                .collect();
            names.push(name);
            doomed = backup::prune(&names, vm.vmid, self.keep_last);
            doomed.retain(|d| *d != name);
            log(&format!(
                "INFO: prune older backups with retention: keep-last={}",
                self.keep_last
            ));
            for d in &doomed {
                log(&format!("INFO: removing backup '{d}'"));
            }
        }
        backup::archive::publish(&written, &self.cell.lines(), &self.plan.notes)
            .map_err(archive_failure)?;
        self.cell
            .log(&format!("INFO: Finished Backup of VM {}", vm.vmid));
        for d in doomed {
            if let Err(e) = backup::archive::remove(&self.plan.dir, d) {
                log::warn!("backup: pruning {d}: {e}");
            }
        }
        Ok(fell_back)
    }

    /// Holds the guest still for the copy, as the mode says; `true` with it when `snapshot`
    /// had to be done as `suspend` (no live backup job on this hypervisor).
    async fn hold(&self, name: BackupName) -> Result<(Held, bool), String> {
        if self.plan.mode == Mode::Snapshot && self.target.view.status == VmStatus::Running {
            if let Some(live) = self.live(name).await? {
                return Ok((live, false));
            }
            let hv = self
                .vms
                .hypervisor()
                .await
                .unwrap_or_else(|_| "unknown".to_owned());
            self.cell.log(&format!(
                "WARN: snapshot mode: this hypervisor ({hv}) has no live backup job \
                 (virDomainBackupBegin); falling back to suspend mode"
            ));
            return Ok((self.hold_suspended().await?, true));
        }
        Ok((self.hold_plain().await?, false))
    }

    /// libvirt's push-mode backup job: each disk copied, as it is now, into a qcow2 in a
    /// staging directory beside the archive while the guest runs on. `None`: no such job on
    /// this hypervisor (nothing started, nothing left).
    async fn live(&self, name: BackupName) -> Result<Option<Held>, String> {
        let staging = self.plan.dir.join(name.live_dir_name());
        std::fs::create_dir_all(&staging)
            .map_err(|e| format!("cannot make {}: {e}", staging.display()))?;
        let outputs: Vec<(String, PathBuf)> = self
            .target
            .disks
            .iter()
            .map(|(dev, _)| (dev.clone(), staging.join(format!("{dev}.qcow2"))))
            .collect();
        let gone = |staging: &std::path::Path| {
            let _ = std::fs::remove_dir_all(staging);
        };
        match self
            .vms
            .live_backup_begin(&self.key, self.caller, &outputs)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                gone(&staging);
                return Ok(None);
            }
            Err(e) => {
                gone(&staging);
                return Err(vm_failure(e));
            }
        }
        self.cell.log(
            "INFO: started backup job (virDomainBackupBegin, push mode: copy-before-write, \
             the guest keeps running)",
        );
        match self.wait_live().await {
            Ok(()) => Ok(Some(Held::Live { staging, outputs })),
            Err(why) => {
                if let Err(e) = self.vms.live_backup_abort(&self.key, self.caller).await {
                    log::warn!("backup: cannot abort the backup job: {e}");
                }
                gone(&staging);
                Err(why)
            }
        }
    }

    /// Polls the live job until it ends; it fails when QEMU copies nothing for
    /// [`LIVE_STALL`].
    async fn wait_live(&self) -> Result<(), String> {
        let mut last = (0, tokio::time::Instant::now());
        loop {
            tokio::time::sleep(LIVE_POLL).await;
            match self
                .vms
                .live_backup_state(&self.key, self.caller)
                .await
                .map_err(vm_failure)?
            {
                LiveBackup::Completed => {
                    self.cell.log("INFO: backup job finished");
                    return Ok(());
                }
                LiveBackup::Failed(why) => return Err(format!("backup job: {why}")),
                LiveBackup::Running { processed, total } => {
                    if processed != last.0 {
                        last = (processed, tokio::time::Instant::now());
                        if let Some(pct) = processed.saturating_mul(100).checked_div(total) {
                            self.cell
                                .log(&format!("INFO: {pct:3}% ({processed} of {total} bytes)"));
                            let share = u64::from(LIVE_SHARE);
                            self.cell.progress(
                                u8::try_from(pct.min(100) * share / 100).unwrap_or(0),
                                "live copy",
                            );
                        }
                    } else if last.1.elapsed() > LIVE_STALL {
                        return Err(format!(
                            "the backup job copied nothing for {} s",
                            LIVE_STALL.as_secs()
                        ));
                    }
                }
            }
        }
    }

    async fn hold_suspended(&self) -> Result<Held, String> {
        if self
            .vms
            .suspend(&self.key, self.caller)
            .await
            .map_err(vm_failure)?
        {
            self.cell.log("INFO: suspending guest");
            Ok(Held::Suspended)
        } else {
            Ok(Held::Nothing)
        }
    }

    async fn hold_plain(&self) -> Result<Held, String> {
        let log = |l: &str| self.cell.log(l);
        match self.plan.mode {
            Mode::Stop => {
                if self.target.view.status == VmStatus::Stopped {
                    return Ok(Held::Nothing);
                }
                log("INFO: stopping virtual guest");
                self.vms
                    .stop(&self.key, self.caller)
                    .await
                    .map_err(vm_failure)?;
                Ok(Held::Stopped)
            }
            Mode::Suspend | Mode::Snapshot => self.hold_suspended().await,
        }
    }

    async fn release(&self, held: Held) -> Result<(), String> {
        match held {
            Held::Nothing => Ok(()),
            Held::Stopped => {
                self.cell.log("INFO: restarting VM");
                self.vms
                    .start_vm(&self.key, self.caller)
                    .await
                    .map(|_| ())
                    .map_err(vm_failure)
            }
            Held::Live { staging, .. } => {
                if let Err(e) = std::fs::remove_dir_all(&staging) {
                    log::warn!("backup: cannot remove {}: {e}", staging.display());
                }
                Ok(())
            }
            Held::Suspended => {
                self.cell.log("INFO: resuming VM again");
                self.vms
                    .resume(&self.key, self.caller)
                    .await
                    .map(|_| ())
                    .map_err(vm_failure)
            }
        }
    }
}

pub(super) async fn run_restore(
    vms: &VmService,
    caller: Caller,
    key: &str,
    target: &crate::vm::BackupTarget,
    name: BackupName,
    path: PathBuf,
    cell: &Arc<Cell>,
) -> Result<(), String> {
    cell.log(&format!(
        "INFO: restore vzdump backup file '{name}' onto VM {}",
        target.view.vmid
    ));
    let expect = backup::archive::Expect {
        vmid: target.view.vmid,
        uuid: target.view.uuid.clone(),
        disks: target.disks.iter().cloned().collect(),
    };
    let progress = Arc::clone(cell);
    let unpacked = tokio::task::spawn_blocking(move || {
        backup::archive::unpack(&path, name, &expect, progress.as_ref())
    })
    .await
    .map_err(|_| "the restore was interrupted".to_owned())?
    .map_err(archive_failure)?;
    cell.log("INFO: archive verified (manifest, sizes, sha256)");
    vms.check_saved_xml(key, caller, &unpacked.xml)
        .map_err(vm_failure)?;
    let was_running = target.view.status != VmStatus::Stopped;
    let current = vms.find_for(key, caller).map_err(vm_failure)?;
    if current.status != VmStatus::Stopped {
        cell.log("INFO: stopping VM");
        vms.stop(key, caller).await.map_err(vm_failure)?;
    }
    let xml = unpacked.xml.clone();
    vms.redefine(key, caller, xml).await.map_err(vm_failure)?;
    tokio::task::spawn_blocking(move || unpacked.commit())
        .await
        .map_err(|_| "the restore was interrupted".to_owned())?
        .map_err(archive_failure)?;
    cell.log("INFO: disks written");
    if was_running || current.status != VmStatus::Stopped {
        cell.log("INFO: starting VM");
        vms.start_vm(key, caller).await.map_err(vm_failure)?;
    }
    Ok(())
}
