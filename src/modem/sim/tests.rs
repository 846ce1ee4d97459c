//! The simulator through a real PTY: a host opens the symlink like the serial actor does (raw
//! termios, exclusive flock), drives it with the pure [`AtCodec`] and parses the answers with
//! the profile's parsers; ladder rungs are driven by the real [`Ladder`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use super::*;
// Relative paths, so the module moves into the main crate (`crate::modem::sim`) unchanged.
use super::super::at::{AtCodec, AtEvent, ErrorCode, FinalResult};
use super::super::ladder::{Action, Ladder, Limits, Outcome};
use super::super::parse::{self, Category, Parsed, RegStat};
use super::super::profile::{Profile, Query, Step, Vars};

const MS: Duration = Duration::from_millis(1);

/// A directory of its own per test, removed at the end.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("modem-sim-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn port(&self) -> PathBuf {
        self.0.join("ttyUSB2")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(profile: &str) -> SimConfig {
    SimConfig {
        profile: profile.to_string(),
        echo: true,
        line_ending: LineEnding::CrLf,
        initial_ip: "100.64.7.9".parse().unwrap(),
        registration_delay: 20 * MS,
        reply_delay: MS,
        reset_downtime: 30 * MS,
        urc_noise: false,
        seed: 42,
    }
}

#[derive(Debug, PartialEq)]
enum HostError {
    Timeout,
    /// EOF or EIO: the port vanished.
    Gone,
}

#[derive(Debug)]
struct Reply {
    info: Vec<String>,
    result: FinalResult,
}

/// The host side, opened the way the serial actor opens a port.
struct Host {
    port: Flock<File>,
    codec: AtCodec,
    urcs: Vec<String>,
    /// Every byte read, for the tests that look at framing.
    raw: Vec<u8>,
}

impl Host {
    fn open(path: &Path) -> io::Result<Host> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(path)?;
        let mut termios = tcgetattr(&file)?;
        cfmakeraw(&mut termios);
        tcsetattr(&file, SetArg::TCSANOW, &termios)?;
        let port = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
        Ok(Host {
            port,
            codec: AtCodec::new(),
            urcs: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Waits until `path` is back (after a reboot) and opens it.
    fn reopen(path: &Path, within: Duration) -> Host {
        let give_up = Instant::now() + within;
        loop {
            match Host::open(path) {
                Ok(host) => return host,
                Err(_) if Instant::now() < give_up => std::thread::sleep(MS),
                Err(e) => panic!("{} did not come back: {e}", path.display()),
            }
        }
    }

    /// Whatever arrives within `d` (stops early once something came and went quiet).
    fn read_for(&mut self, d: Duration) -> Result<Vec<u8>, HostError> {
        let give_up = Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            let wait = if got.is_empty() {
                left
            } else {
                left.min(5 * MS)
            };
            let mut fds = [PollFd::new(self.port.as_fd(), PollFlags::POLLIN)];
            let n = poll(&mut fds, super::port::timeout(wait)).unwrap_or(0);
            if n == 0 {
                return Ok(got);
            }
            let mut buf = [0u8; 1024];
            match (&*self.port).read(&mut buf) {
                Ok(0) | Err(_) => return Err(HostError::Gone),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    self.raw.extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    fn command(&mut self, cmd: &str, timeout: Duration) -> Result<Reply, HostError> {
        let bytes = self.codec.start_command(cmd);
        (&*self.port)
            .write_all(&bytes)
            .map_err(|_| HostError::Gone)?;
        let give_up = Instant::now() + timeout;
        let mut info = Vec::new();
        loop {
            while let Some(event) = self.codec.poll_event() {
                match event {
                    AtEvent::Final(result) => return Ok(Reply { info, result }),
                    AtEvent::Info(line) => info.push(line),
                    AtEvent::Urc(line) => self.urcs.push(line),
                    _ => {}
                }
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.codec.cancel_command();
                return Err(HostError::Timeout);
            }
            let bytes = self.read_for(left.min(20 * MS))?;
            self.codec.feed(&bytes);
        }
    }

    fn ok(&mut self, cmd: &str) -> Reply {
        let reply = self.command(cmd, Duration::from_secs(2)).unwrap();
        assert_eq!(reply.result, FinalResult::Ok, "{cmd}: {reply:?}");
        reply
    }

    /// Runs the profile's port setup, as the actor does on every (re)open.
    fn setup(&mut self, profile: &Profile, vars: &Vars) {
        for cmd in profile.setup_for(vars) {
            let reply = self.command(&cmd.cmd, Duration::from_secs(2)).unwrap();
            assert!(reply.result.is_ok(), "{}: {reply:?}", cmd.cmd);
        }
    }

    /// Runs one query; its answer must be OK and parse.
    fn query(&mut self, q: &Query, vars: &Vars) -> Result<Parsed, HostError> {
        let cmd = q.render(vars);
        let reply = self.command(&cmd, Duration::from_secs(2))?;
        assert_eq!(reply.result, FinalResult::Ok, "{cmd}: {reply:?}");
        Ok(parse::parse(q.parser, &reply.info)
            .unwrap_or_else(|e| panic!("{cmd}: {e} in {:?}", reply.info)))
    }

    /// The first registration query that parses, as the actor does it.
    fn registration(&mut self, profile: &Profile, vars: &Vars) -> Result<RegStat, HostError> {
        for q in &profile.queries.registration {
            let cmd = q.render(vars);
            let reply = self.command(&cmd, Duration::from_secs(2))?;
            if let Ok(Parsed::Registration(r)) = parse::parse(q.parser, &reply.info) {
                return Ok(r.stat);
            }
        }
        Ok(RegStat::Unknown)
    }

    fn address(&mut self, profile: &Profile, vars: &Vars) -> Result<Option<IpAddr>, HostError> {
        for q in &profile.queries.address {
            let cmd = q.render(vars);
            let reply = self.command(&cmd, Duration::from_secs(2))?;
            if let Ok(Parsed::Address(a)) = parse::parse(q.parser, &reply.info) {
                return Ok(a.primary());
            }
        }
        Ok(None)
    }
}

/// A rung with the profile's commands and the test's short times.
fn quick(mut step: Step) -> Step {
    for cmd in step.commands.iter_mut().chain(step.redial.iter_mut()) {
        cmd.timeout = cmd.timeout.min(Duration::from_secs(2));
        cmd.pause = cmd.pause.min(5 * MS);
    }
    step.settle = step.settle.min(5 * MS);
    step.wait_registration = step.wait_registration.map(|_| Duration::from_secs(2));
    step.wait_address = Duration::from_secs(2);
    step
}

fn limits() -> Limits {
    Limits {
        max_total: Duration::from_secs(15),
        max_attempts: 6,
        poll_interval: 5 * MS,
        query_timeout: Duration::from_secs(2),
        port_return: Duration::from_secs(3),
        require_public: false,
        restore_budget: Duration::from_secs(3),
    }
}

/// A minimal serial actor: drives `ladder` to the end over the port at `path`.
fn drive(
    mut ladder: Ladder,
    host: &mut Host,
    path: &Path,
    profile: &Profile,
    vars: &Vars,
) -> Outcome {
    loop {
        let now = Instant::now();
        let Some(action) = ladder.poll_action(now) else {
            panic!("ladder waits for an answer the driver does not owe");
        };
        let result = match action {
            Action::Done(outcome) => return outcome,
            Action::Wait { until } => {
                std::thread::sleep(until.saturating_duration_since(now));
                Ok(())
            }
            Action::Send { cmd, timeout } => match host.command(&cmd, timeout) {
                Ok(reply) => {
                    ladder.on_response(reply.result, Instant::now());
                    Ok(())
                }
                Err(HostError::Timeout) => {
                    ladder.on_timeout(Instant::now());
                    Ok(())
                }
                Err(HostError::Gone) => Err(HostError::Gone),
            },
            Action::QueryRegistration => host
                .registration(profile, vars)
                .map(|stat| ladder.on_registration(stat, Instant::now())),
            Action::QueryAddress => host
                .address(profile, vars)
                .map(|ip| ladder.on_address(ip, Instant::now())),
        };
        if result.is_err() {
            ladder.on_port_gone(Instant::now());
            *host = Host::reopen(path, Duration::from_secs(3));
            host.setup(profile, vars);
            ladder.on_port_back(Instant::now());
        }
    }
}

/// Every built-in profile against its simulator: setup, every query (must answer OK and parse),
/// then each ladder rung on its own, which must change the address the modem really holds.
#[test]
fn every_profile_end_to_end() {
    let profiles = Profile::builtins().unwrap();
    assert_eq!(profiles.len(), 6);
    for (i, profile) in profiles.iter().enumerate() {
        let dir = TestDir::new(&format!("e2e-{}", profile.name));
        let sim = SimModem::start(
            &dir.port(),
            SimConfig {
                urc_noise: true,
                seed: i as u64,
                ..config(&profile.name)
            },
        )
        .unwrap();
        let vars = profile.vars("internet");
        let mut host = Host::open(sim.path()).unwrap();
        host.setup(profile, &vars);

        let q = &profile.queries;
        for query in q.registration.iter().chain(&q.signal).chain(&q.operator) {
            match (query.parser.category(), host.query(query, &vars).unwrap()) {
                (Category::Registration, Parsed::Registration(r)) => {
                    assert!(r.stat.is_registered(), "{}: {r:?}", query.cmd)
                }
                (Category::Signal, Parsed::Signal(s)) => assert!(
                    s.rssi_dbm.is_some() || s.rsrp_dbm.is_some(),
                    "{}: {s:?}",
                    query.cmd
                ),
                (Category::Operator, Parsed::Operator(o)) => {
                    assert!(o.name.is_some(), "{}", query.cmd)
                }
                (cat, other) => panic!("{}: {cat:?} gave {other:?}", query.cmd),
            }
        }
        for query in &q.address {
            let Parsed::Address(a) = host.query(query, &vars).unwrap() else {
                panic!("{}", query.cmd);
            };
            assert_eq!(
                a.primary(),
                sim.current_ip().map(IpAddr::V4),
                "{}",
                query.cmd
            );
        }
        let (mut manufacturer, mut model) = (String::new(), String::new());
        for query in &q.identity {
            let Parsed::Identity(id) = host.query(query, &vars).unwrap() else {
                panic!("{}", query.cmd);
            };
            manufacturer = id.manufacturer.unwrap_or(manufacturer);
            model = id.model.unwrap_or(model);
        }
        let chosen = Profile::select(&profiles, &manufacturer, &model).unwrap();
        assert_eq!(chosen.name, profile.name, "ATI selects the profile");

        for step in profile.ladder_for(&vars) {
            let before = sim.current_ip();
            let attaches = sim.attach_count();
            let ladder = Ladder::new(
                vec![quick(step.clone())],
                before.map(IpAddr::V4),
                limits(),
                Instant::now(),
            );
            let outcome = drive(ladder, &mut host, sim.path(), profile, &vars);
            let Outcome::Changed { ip, .. } = outcome else {
                panic!("{} {}: {outcome:?}", profile.name, step.name);
            };
            assert_eq!(Some(ip), sim.current_ip().map(IpAddr::V4), "{}", step.name);
            assert_ne!(sim.current_ip(), before, "{} {}", profile.name, step.name);
            assert!(sim.attach_count() > attaches);
        }
        let sent = sim.commands();
        for cmd in profile.ladder_for(&vars).iter().flat_map(|s| &s.commands) {
            assert!(sent.contains(&cmd.cmd), "{} never sent", cmd.cmd);
        }
        drop(host);
        sim.stop();
        assert!(
            std::fs::symlink_metadata(dir.port()).is_err(),
            "link removed"
        );
    }
}

#[test]
fn kept_address_makes_the_ladder_repeat_then_climb() {
    let dir = TestDir::new("keep");
    let sim = SimModem::start(&dir.port(), config("generic")).unwrap();
    let profile = Profile::builtin("generic").unwrap();
    let vars = profile.vars("internet");
    let mut host = Host::open(sim.path()).unwrap();
    host.setup(&profile, &vars);
    let steps: Vec<Step> = profile.ladder_for(&vars).into_iter().map(quick).collect();
    let first = sim.current_ip();

    // The soft rung runs twice (repeat = 1), keeping the address both times: airplane changes it.
    sim.keep_ip_on_next_reattaches(2);
    let ladder = Ladder::new(
        steps.clone(),
        first.map(IpAddr::V4),
        limits(),
        Instant::now(),
    );
    let outcome = drive(ladder, &mut host, sim.path(), &profile, &vars);
    let Outcome::Changed { kind, attempts, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!((kind.as_str(), attempts), ("airplane", 3));
    assert_ne!(sim.current_ip(), first);
    assert_eq!(sim.attach_count(), 3, "two kept attaches and a new one");
    let deacts = sim
        .commands()
        .iter()
        .filter(|c| *c == "AT+CGACT=0,1")
        .count();
    assert_eq!(deacts, 2);
}

#[test]
fn refusals_answer_with_the_configured_error() {
    let dir = TestDir::new("refuse");
    let sim = SimModem::start(&dir.port(), config("generic")).unwrap();
    let mut host = Host::open(sim.path()).unwrap();
    host.ok("AT+CMEE=1");
    let ip = sim.current_ip();
    sim.refuse("AT+CGACT", "+CME ERROR: 148");
    let reply = host
        .command("AT+CGACT=0,1", Duration::from_secs(1))
        .unwrap();
    assert_eq!(reply.result, FinalResult::CmeError(ErrorCode::Numeric(148)));
    assert_eq!(sim.current_ip(), ip, "no effect");
    sim.refuse("at+cfun", "ERROR");
    let reply = host.command("AT+CFUN=4", Duration::from_secs(1)).unwrap();
    assert_eq!(reply.result, FinalResult::Error);
    sim.clear_refusals();
    host.ok("AT+CGACT=0,1");
    assert_eq!(sim.current_ip(), None);
    // Errors of the modem's own follow AT+CMEE.
    let reply = host
        .command("AT+CGPADDR=7", Duration::from_secs(1))
        .unwrap();
    assert_eq!(reply.result, FinalResult::CmeError(ErrorCode::Numeric(50)));
    host.ok("AT+CMEE=2");
    let reply = host
        .command("AT+CGPADDR=7", Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        reply.result,
        FinalResult::CmeError(ErrorCode::Text("Incorrect parameters".into()))
    );
    let reply = host.command("AT+NOSUCH", Duration::from_secs(1)).unwrap();
    assert_eq!(reply.result, FinalResult::Error);
}

#[test]
fn silence_produces_no_bytes() {
    let dir = TestDir::new("silent");
    let sim = SimModem::start(
        &dir.port(),
        SimConfig {
            urc_noise: true,
            ..config("huawei")
        },
    )
    .unwrap();
    let mut host = Host::open(sim.path()).unwrap();
    host.ok("AT");
    sim.set_silent(true);
    // Whatever was already on its way (a URC) has arrived by now.
    let _ = host.read_for(20 * MS);
    (&*host.port).write_all(b"AT\rAT+CSQ\r").unwrap();
    assert_eq!(host.read_for(300 * MS), Ok(Vec::new()));
    assert_eq!(
        host.command("ATI", 50 * MS).unwrap_err(),
        HostError::Timeout
    );
    sim.send_garbage(b"\xff\xfe\x00garbage\r\n");
    assert_eq!(host.read_for(200 * MS).unwrap(), b"\xff\xfe\x00garbage\r\n");
    sim.set_silent(false);
    host.ok("AT");
    let sent = sim.commands();
    assert_eq!(sent[sent.len() - 4..], ["AT", "AT+CSQ", "ATI", "AT"]);
}

#[test]
fn unplug_vanishes_and_comes_back_at_the_same_path() {
    let dir = TestDir::new("unplug");
    let sim = SimModem::start(
        &dir.port(),
        SimConfig {
            echo: false,
            ..config("quectel")
        },
    )
    .unwrap();
    let mut host = Host::open(sim.path()).unwrap();
    host.ok("AT");
    sim.unplug(150 * MS);
    assert_eq!(host.read_for(Duration::from_secs(1)), Err(HostError::Gone));
    assert!((&*host.port).write_all(b"AT\r").is_err(), "writes fail too");
    assert!(std::fs::symlink_metadata(sim.path()).is_err(), "path gone");
    assert!(Host::open(sim.path()).is_err());
    assert_eq!(sim.current_ip(), None);
    drop(host);

    let mut host = Host::reopen(sim.path(), Duration::from_secs(2));
    assert!(std::fs::read_link(sim.path())
        .unwrap()
        .starts_with("/dev/pts"));
    // Boot URCs waited in the buffer; the modem echoes again, as after any reboot.
    let reply = host.ok("AT");
    assert!(reply.info.is_empty());
    assert_eq!(
        host.urcs,
        [
            "RDY",
            "+CFUN: 1",
            "+CPIN: READY",
            "+QUSIM: 1",
            "+QIND: SMS DONE"
        ]
    );
    assert!(host.raw.ends_with(b"AT\r\r\nOK\r\n"), "{:?}", host.raw);
    // It registers and attaches after registration_delay, with a new address.
    let give_up = Instant::now() + Duration::from_secs(2);
    while sim.current_ip().is_none() && Instant::now() < give_up {
        std::thread::sleep(2 * MS);
    }
    assert!(sim.current_ip().is_some());
    assert_ne!(sim.current_ip(), Some("100.64.7.9".parse().unwrap()));
}

/// Echo on and off, and every line ending, decode to the same answers through the codec.
#[test]
fn echo_and_line_endings() {
    for (i, line_ending) in [LineEnding::CrLf, LineEnding::Lf, LineEnding::Cr]
        .into_iter()
        .enumerate()
    {
        for echo in [true, false] {
            let dir = TestDir::new(&format!("eol-{i}-{echo}"));
            let sim = SimModem::start(
                &dir.port(),
                SimConfig {
                    echo,
                    line_ending,
                    urc_noise: true,
                    ..config("simcom")
                },
            )
            .unwrap();
            let mut host = Host::open(sim.path()).unwrap();
            let reply = host.ok("ATI");
            let Parsed::Identity(id) = parse::parse(parse::ParserKind::Ati, &reply.info).unwrap()
            else {
                panic!()
            };
            assert_eq!(id.model.as_deref(), Some("SIMCOM_SIM7600G-H"));
            assert_eq!(
                reply.info.len(),
                8,
                "{:?} {echo}: {:?}",
                line_ending,
                reply.info
            );
            let reply = host.ok("AT+CSQ");
            assert!(parse::csq(&reply.info).unwrap().rssi_dbm.is_some());
            let eol = line_ending.as_bytes();
            let ok: Vec<u8> = [eol, b"OK", eol].concat();
            assert!(
                host.raw.ends_with(&ok),
                "{:?}",
                String::from_utf8_lossy(&host.raw)
            );
            let echoed = host.raw.windows(7).any(|w| w == b"AT+CSQ\r");
            assert_eq!(echoed, echo, "{line_ending:?}");
            // ATE flips it at run time.
            host.ok(if echo { "ATE0" } else { "ATE1" });
            host.raw.clear();
            host.ok("AT+CGMM");
            let echoed = host.raw.windows(8).any(|w| w == b"AT+CGMM\r");
            assert_eq!(echoed, !echo, "{line_ending:?}");
        }
    }
}

#[test]
fn start_replaces_stale_links_and_refuses_files() {
    let dir = TestDir::new("links");
    let path = dir.port();
    std::os::unix::fs::symlink("/dev/pts/does-not-exist", &path).unwrap();
    let sim = SimModem::start(&path, config("sierra")).unwrap();
    let mut host = Host::open(&path).unwrap();
    host.ok("AT");
    // A second opener is refused while the first holds its lock, as with a real port.
    assert!(Host::open(&path).is_err());
    drop(host);
    drop(sim);
    assert!(std::fs::symlink_metadata(&path).is_err());

    std::fs::write(&path, b"not a port").unwrap();
    let err = SimModem::start(&path, config("sierra")).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), b"not a port");
    let err = SimModem::start(&dir.0.join("x"), config("nokia"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
