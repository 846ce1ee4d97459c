//! The `edgeward` command: parses the CLI and wires the pieces; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgeward::app::{App, AppOptions};
use edgeward::config::{Config, DEFAULT_CONFIG_PATH, ENV_LOG};
use edgeward::control::{self, Reply, Request};

#[derive(Parser)]
#[command(
    name = "edgeward",
    version,
    about = "VPN/dongle host appliance: WireGuard leases, LTE modem IP toggling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run edgeward with a configuration file.
    Serve {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Check a configuration file and report every problem; exits non-zero if there are any.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run a self-contained demo: temporary store, no hardware and no root needed.
    Demo {
        /// Where the demo's HTTP API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Carry real traffic through this TUN device (needs root; adds forwarding and an
        /// nftables masquerade table, removed at exit). Without it the demo is handshake-only.
        #[arg(long)]
        tun: Option<String>,
    },
    /// Manage accounts (on a running server through its control socket, else on the store).
    User {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Accounts' signing keys.
    Auth {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: AuthAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an (approved) user; the password is asked for, or read from stdin.
    Add {
        username: String,
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long, default_value = "")]
        email: String,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List every user.
    List,
    /// Approve a registered user.
    Approve { username: String },
    /// Give a user a role (its default permissions come with it).
    Role { username: String, role: String },
    /// Delete a user (never the last admin).
    Delete { username: String },
}

#[derive(Subcommand)]
enum AuthAction {
    /// New access-token signing key: tokens signed before are refused.
    RotateKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| run(c, AppOptions::default(), None)),
        Command::Demo { listen, tun } => demo(listen, tun),
        Command::User { config, action } => {
            user_request(action).and_then(|request| control(&config, request))
        }
        Command::Auth {
            config,
            action: AuthAction::RotateKey,
        } => control(&config, Request::AuthRotateKey),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = std::env::var(ENV_LOG)
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    env_logger::Builder::new()
        .parse_filters(&filter)
        .format_timestamp_millis()
        .init();
}

#[allow(clippy::print_stdout)]
fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    println!(
        "{}: OK ({} pool(s), {} modem(s), listening on {} address(es))",
        path.display(),
        config.vpn.pools.len(),
        config.modems.len(),
        config.api.listen.len() + config.api.tls_listen.len()
    );
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn demo(listen: SocketAddr, tun: Option<String>) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("edgeward-demo-")
        .tempdir()?;
    let mut demo = edgeward::demo::start(dir.path(), Some(listen))?;
    if let Some(name) = tun {
        demo.config.wireguard.tun = name;
        demo.config.validate()?;
    }
    let options = AppOptions {
        modem_time_scale: edgeward::demo::MODEM_TIME_SCALE,
        wg_port_fallback: true,
        ..AppOptions::default()
    };
    let result = run(
        demo.config.clone(),
        options,
        Some(&|app: &App| {
            if let Some(addr) = app.http_addrs.first() {
                println!("{}", edgeward::demo::banner(*addr));
            }
        }),
    );
    drop(demo);
    result
}

fn run(config: Config, options: AppOptions, on_ready: Option<&dyn Fn(&App)>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edgeward")
        .build()?;
    runtime.block_on(async {
        let app = App::start(config, options).await?;
        if let Some(f) = on_ready {
            f(&app);
        }
        wait_for_signal().await;
        log::info!("shutting down: finishing in-flight requests");
        app.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops edgeward");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn user_request(action: UserAction) -> anyhow::Result<Request> {
    Ok(match action {
        UserAction::Add {
            username,
            role,
            email,
            password_stdin,
        } => Request::UserAdd {
            password: password(password_stdin)?,
            username,
            email,
            role,
        },
        UserAction::Passwd {
            username,
            password_stdin,
        } => Request::UserPasswd {
            password: password(password_stdin)?,
            username,
        },
        UserAction::List => Request::UserList,
        UserAction::Approve { username } => Request::UserApprove { username },
        UserAction::Role { username, role } => Request::UserRole { username, role },
        UserAction::Delete { username } => Request::UserDelete { username },
    })
}

/// The new password: the first line of stdin, or asked twice on the terminal without echo.
fn password(from_stdin: bool) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!line.is_empty(), "no password on stdin");
        return Ok(line);
    }
    let first = edgeward::control::prompt_hidden("password: ")?;
    let second = edgeward::control::prompt_hidden("again: ")?;
    anyhow::ensure!(first == second, "the two passwords differ");
    Ok(first)
}

#[allow(clippy::print_stdout)]
fn control(config: &std::path::Path, request: Request) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply: Reply = runtime.block_on(control::run_local(&config, request))?;
    for user in &reply.users {
        println!(
            "{:>4}  {:<20} {:<9} {:<8} {:<6} {}",
            user.id,
            user.username,
            user.role,
            if user.approved { "approved" } else { "pending" },
            if user.active { "active" } else { "off" },
            user.permissions.join(",")
        );
    }
    anyhow::ensure!(reply.ok, "{}", reply.message);
    println!("{}", reply.message);
    Ok(())
}
