//! The local control channel: `edgeward user …` and `edgeward auth rotate-key` on a box whose
//! store is held by a running server.
//!
//! The server listens on a Unix socket beside its store ([`socket_path`]); only root and the
//! service's own user may use it (peer credentials, [`socket`]). When nothing listens there,
//! the CLI opens the store itself — redb's file lock makes that fail, with a clear message,
//! if a server holds the store after all. Both paths run the same [`Request`]s through
//! [`AuthCommands`], so a command means the same whichever way it travels.

pub mod protocol;
pub mod socket;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::auth::{AuthError, AuthService, NewUser, Principal, Role, UserPatch, UserView};

pub use protocol::{Reply, Request, UserLine};

/// Where the control socket of the server whose store is `store_path` lives: beside the
/// store, in the state directory that only the service user (and root) can enter.
pub fn socket_path(store_path: &Path) -> PathBuf {
    let dir = store_path.parent().unwrap_or_else(|| Path::new("."));
    dir.join("edgeward.sock")
}

/// Runs control requests; `uid` is the caller's user id (for the log).
pub trait Commands: Send + Sync {
    fn run(&self, request: Request, uid: u32) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>>;
}

/// The requests, carried out on the accounts service.
pub struct AuthCommands(pub AuthService);

impl Commands for AuthCommands {
    fn run(&self, request: Request, uid: u32) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(async move {
            let what = request.to_string();
            let reply = match execute(&self.0, request).await {
                Ok(reply) => reply,
                Err(e) => Reply::error(e.to_string()),
            };
            if reply.ok {
                log::info!("control: {what} by uid {uid}: {}", reply.message);
            } else {
                log::warn!("control: {what} by uid {uid} refused: {}", reply.message);
            }
            reply
        })
    }
}

fn role(name: &str) -> Result<Role, AuthError> {
    name.parse::<Role>().map_err(|_| AuthError::Invalid {
        field: "role",
        message: format!("unknown role {name:?} (one of admin, user, developer, operator, viewer)"),
    })
}

/// One request against the service.
pub async fn execute(auth: &AuthService, request: Request) -> Result<Reply, AuthError> {
    match request {
        Request::UserAdd {
            username,
            email,
            password,
            role: role_name,
        } => {
            let user = auth
                .create_user(NewUser {
                    username,
                    email,
                    password,
                    role: role(&role_name)?,
                    approved: true,
                })
                .await?;
            Ok(Reply::done(format!(
                "created user {} (id {}, role {})",
                user.username,
                user.id,
                user.role.as_str()
            )))
        }
        Request::UserPasswd { username, password } => {
            let user = auth.user_by_name(&username)?;
            let patch = UserPatch {
                password: Some(password),
                ..UserPatch::default()
            };
            auth.update_user(user.id, patch, &Principal::local())
                .await?;
            Ok(Reply::done(format!("password of {username} changed")))
        }
        Request::UserList => {
            let users = auth.list_users()?;
            Ok(Reply::users(users.iter().map(line).collect()))
        }
        Request::UserApprove { username } => {
            let user = auth.user_by_name(&username)?;
            auth.approve(user.id).await?;
            Ok(Reply::done(format!("{username} approved")))
        }
        Request::UserRole {
            username,
            role: role_name,
        } => {
            let role = role(&role_name)?;
            let user = auth.user_by_name(&username)?;
            auth.set_role(user.id, role, &Principal::local()).await?;
            Ok(Reply::done(format!("{username} is now {}", role.as_str())))
        }
        Request::UserDelete { username } => {
            let user = auth.user_by_name(&username)?;
            auth.delete_user(user.id, &Principal::local()).await?;
            Ok(Reply::done(format!("{username} deleted")))
        }
        Request::AuthRotateKey => {
            auth.rotate_key().await?;
            Ok(Reply::done(
                "signing key rotated: every access token issued before now is refused; \
                 clients refresh to get a new one",
            ))
        }
    }
}

fn line(user: &UserView) -> UserLine {
    UserLine {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
        role: user.role.as_str().to_owned(),
        approved: user.approved,
        active: user.active,
        permissions: user
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    }
}

/// Runs `request` for the CLI: through the control socket of the running server of `config`,
/// or, when none listens, on its store directly.
pub async fn run_local(config: &crate::config::Config, request: Request) -> anyhow::Result<Reply> {
    use anyhow::Context;
    let store_path = config.store.path.as_path();
    let path = socket_path(store_path);
    if let Some(reply) = socket::call(&path, &request)
        .await
        .with_context(|| format!("control socket {}", path.display()))?
    {
        return Ok(reply);
    }
    let store = crate::store::Store::open(store_path).with_context(|| {
        format!(
            "no edgeward answers on {} and the store cannot be opened directly \
             (if a server is running, its control socket is missing: restart it)",
            path.display()
        )
    })?;
    let auth = AuthService::open(
        std::sync::Arc::new(store),
        std::sync::Arc::new(crate::clock::SystemClock),
        config.auth.settings(),
    )?;
    Ok(execute(&auth, request)
        .await
        .unwrap_or_else(|e| Reply::error(e.to_string())))
}

/// Reads a line from the terminal with echo off (restored even when reading fails).
pub fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin)?;
    let mut quiet = before.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &before)?;
    writeln!(err)?;
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
