//! A real libvirt daemon for the tests that need real QEMU (a live backup job): a private one
//! on its own socket in a temp dir (`qemu:///system?socket=…`), running inside a network
//! namespace the test made (so the bridge of its isolated network lives there) — or, on a host
//! whose own libvirtd already runs, that one (a second daemon would fight it over
//! `/run/libvirt/qemu`) — with a transient isolated libvirt network (a bridge, no address, no
//! DHCP: it carries nothing) for the guests' NICs. Guests are real QEMU, on KVM
//! where the host has it, else on TCG; they boot nothing (no OS is needed to copy a disk).
//!
//! Dropping it destroys and undefines the domains whose disks are in its directory (nothing
//! else), removes its network, ends the daemons it started, by PID, and removes the namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::netns::{require_root, run, wait_until, Namespaces, Proc};

pub struct Libvirtd {
    pub uri: String,
    /// The isolated network guests join (`[vm] network`).
    pub network: String,
    /// A directory QEMU's user can reach: disks, backups.
    pub dir: tempfile::TempDir,
    daemon: Option<Proc>,
    virtlogd: Option<Proc>,
    _ns: Namespaces,
}

impl Libvirtd {
    /// Starts the daemons; fails loudly when the host cannot (tests/run.sh installs them).
    pub fn start(tag: &str) -> Self {
        require_root(&[
            "libvirtd",
            "virtlogd",
            "qemu-system-x86_64",
            "qemu-img",
            "ip",
        ]);
        let ns = format!("ew-lv-{tag}-{}", std::process::id());
        run(&["ip", "netns", "add", &ns]);
        let guard = Namespaces(vec![ns.clone()]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().expect("a temp dir");
        // QEMU runs as libvirt-qemu: it must reach the disks under this directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for d in [
            "/var/log/libvirt",
            "/var/lib/libvirt",
            "/var/cache/libvirt",
            "/run/libvirt",
        ] {
            std::fs::create_dir_all(d).expect("libvirt's directories");
        }
        // A host that runs libvirt's own daemon (systemd started it when the package was
        // installed): a second one would fight it over /run/libvirt/qemu, so use it, and touch
        // only what this test makes there.
        let system = Path::new("/run/libvirt/libvirt-sock");
        let (uri, virtlogd, daemon) = if std::os::unix::net::UnixStream::connect(system).is_ok() {
            ("qemu:///system".to_owned(), None, None)
        } else {
            let (virtlogd, daemon, socket) = start_daemons(&ns, dir.path());
            (
                format!("qemu:///system?socket={}", socket.display()),
                virtlogd,
                Some(daemon),
            )
        };
        let network = format!("ewlv{}", std::process::id() % 100_000);
        let conn = connect(&uri);
        // Transient and isolated: a bridge, no address, no dnsmasq.
        let bridge = format!("ewbr{}", std::process::id() % 100_000);
        let xml = format!("<network><name>{network}</name><bridge name='{bridge}'/></network>");
        virt::network::Network::create_xml(&conn, &xml).expect("an isolated libvirt network");
        Self {
            uri,
            network,
            dir,
            daemon,
            virtlogd,
            _ns: guard,
        }
    }

    /// The daemon's log so far (errors and warnings), for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
    }

    pub fn connect(&self) -> virt::connect::Connect {
        connect(&self.uri)
    }
}

/// virtlogd (unless one answers) and a libvirtd on its own socket in `dir`, inside `ns`.
fn start_daemons(ns: &str, dir: &Path) -> (Option<Proc>, Proc, PathBuf) {
    // libvirtd hands QEMU's output to virtlogd; start one unless one answers (a socket file
    // nobody listens on is a dead one's: it goes).
    let sock = Path::new("/run/libvirt/virtlogd-sock");
    let answers = || std::os::unix::net::UnixStream::connect(sock).is_ok();
    let virtlogd = (!answers()).then(|| {
        let _ = std::fs::remove_file(sock);
        let p = Proc(
            Command::new("virtlogd")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start virtlogd"),
        );
        wait_until("virtlogd listens", Duration::from_secs(10), answers);
        p
    });
    let run_dir = dir.join("run");
    std::fs::create_dir(&run_dir).expect("run dir");
    let conf = dir.join("libvirtd.conf");
    std::fs::write(
        &conf,
        format!(
            "unix_sock_dir = \"{}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
            run_dir.display()
        ),
    )
    .expect("libvirtd.conf");
    // Its log (and QEMU's start errors) stay in the temp dir, for a failing test to read.
    let log = std::fs::File::create(dir.join("libvirtd.log")).expect("a log file");
    let daemon = Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "libvirtd", "--config"])
            .arg(&conf)
            .arg("--pid-file")
            .arg(dir.join("libvirtd.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start libvirtd"),
    );
    let socket = run_dir.join("libvirt-sock");
    wait_until("libvirtd listens", Duration::from_secs(30), || {
        socket.exists()
    });
    (virtlogd, daemon, socket)
}

fn connect(uri: &str) -> virt::connect::Connect {
    let mut last = String::new();
    for _ in 0..50 {
        match virt::connect::Connect::open(Some(uri)) {
            Ok(c) => return c,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("cannot connect to {uri}: {last}");
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        // Destroy and undefine what is left, but never hang a test on a stuck daemon.
        let uri = self.uri.clone();
        let ours = self.dir.path().to_string_lossy().into_owned();
        let network = self.network.clone();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(conn) = virt::connect::Connect::open(Some(&uri)) {
                if let Ok(doms) = conn.list_all_domains(0) {
                    // Only the domains whose disks are in this test's directory.
                    let mine = |d: &virt::domain::Domain| {
                        d.get_xml_desc(0).is_ok_and(|x| x.contains(&ours))
                    };
                    for d in doms.into_iter().filter(mine) {
                        let _ = d.destroy();
                        let _ = d.undefine_flags(
                            virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM,
                        );
                    }
                }
                if let Ok(n) = virt::network::Network::lookup_by_name(&conn, &network) {
                    let _ = n.destroy();
                }
            }
            let _ = done_tx.send(());
        });
        let _ = done.recv_timeout(Duration::from_secs(20));
        if let Some(d) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &d.0.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(500));
            drop(d);
        }
        // A guest the daemon could not end: a QEMU of ours (its disk is in our directory).
        let ours = self.dir.path().to_string_lossy().into_owned();
        if let Ok(files) = std::fs::read_dir("/run/libvirt/qemu") {
            for f in files.flatten() {
                let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                else {
                    continue;
                };
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&ours) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
        drop(self.virtlogd.take());
    }
}
