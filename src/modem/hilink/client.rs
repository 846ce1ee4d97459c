//! The HiLink HTTP client: the I/O shell around [`super::session`] and [`super::xml`].
//!
//! Every request is one HTTP/1.1 exchange on hyper's client over a fresh TCP connection
//! bound to the stick's own interface (`SO_BINDTODEVICE`, needs `CAP_NET_RAW`): identical
//! sticks all sit at 192.168.8.1 on 192.168.8.0/24, often with one MAC, so the route table
//! cannot tell them apart and no connection is ever pooled or shared between sticks. Each
//! exchange is bounded by one timeout, connect included; bodies are capped.
//!
//! Error handling follows the firmware: 125002/125003 (stale session or token) start a new
//! session and send the request once more; 100003 logs in (password type 4 or 0, as
//! `/api/user/state-login` says) and sends it once more; refused credentials (108006...) are a
//! clear failure, and the login is not tried again for [`LOGIN_BACKOFF`] so a wrong password
//! never becomes a retry storm that locks the stick (108007).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::session::{self, code, OnError, Session};
use super::xml::{self, Fields, LoginState, Reply};
use crate::modem::ipcheck::{parse_url, CheckUrl};

/// Largest answer read from a stick (its home page is ~20 KiB).
const MAX_BODY: usize = 512 * 1024;

/// After refused credentials, how long logins are not tried again.
pub const LOGIN_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HiLinkError {
    /// No HTTP answer: connect refused or timed out, connection dropped (a rebooting stick).
    #[error("{0}")]
    Unreachable(String),
    #[error("{path} answered error {code} ({})", session::describe(*code))]
    Api { path: String, code: u32 },
    #[error("login refused with error {code} ({}); check hilink_username and hilink_password", session::describe(*code))]
    Credentials { code: u32 },
    #[error("the stick asks for a login (error 100003) and no hilink_password is configured")]
    NeedsPassword,
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
}

impl HiLinkError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// What one exchange brought back.
struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    token: Option<String>,
    token_one: Option<String>,
    token_two: Option<String>,
    body: String,
}

/// One stick's client. Not `Clone`: one session per stick, owned by its actor.
pub struct Client {
    url: CheckUrl,
    netdev: String,
    username: String,
    password: Option<String>,
    timeout: Duration,
    session: Session,
    /// The home page (or token endpoint) was read for this session.
    open: bool,
    /// Refused credentials: when logins may be tried again, and the refusal.
    login_blocked: Option<(Instant, HiLinkError)>,
}

impl Client {
    /// `url` is `http://host[:port]` (a path is ignored: the API lives at `/api/...`).
    pub fn new(
        url: &str,
        netdev: &str,
        username: &str,
        password: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            url: parse_url(url)?,
            netdev: netdev.to_owned(),
            username: username.to_owned(),
            password: password.filter(|p| !p.is_empty()),
            timeout,
            session: Session::default(),
            open: false,
            login_blocked: None,
        })
    }

    /// Requests leave through `netdev` from now on (the stick re-enumerated under another name).
    pub fn set_netdev(&mut self, netdev: &str) {
        netdev.clone_into(&mut self.netdev);
        self.reset();
    }

    /// Forgets the session (the stick rebooted: its sessions are gone).
    pub fn reset(&mut self) {
        self.session.reset();
        self.open = false;
    }

    pub async fn get(&mut self, path: &str) -> Result<Fields, HiLinkError> {
        self.call(Method::GET, path, None).await
    }

    /// A set; fails unless the stick answers `OK`.
    pub async fn set(&mut self, path: &str, body: String) -> Result<(), HiLinkError> {
        let f = self.call(Method::POST, path, Some(body)).await?;
        if f.is_ok() {
            Ok(())
        } else {
            Err(HiLinkError::Bad {
                path: path.to_owned(),
                why: format!("answered {:?}, not OK", f.text()),
            })
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Fields, HiLinkError> {
        let post = method == Method::POST;
        let (mut resessioned, mut logged_in) = (false, false);
        loop {
            self.ensure_session(post).await?;
            let token = if post {
                self.session.take_token()
            } else {
                self.session.peek_token().map(str::to_owned)
            };
            let answer = self
                .exchange(method.clone(), path, body.clone(), token.as_deref())
                .await?;
            self.absorb(&answer, false);
            let code = match xml::parse_reply(&answer.body) {
                Ok(Reply::Response(f)) => return Ok(f),
                Ok(Reply::Error { code, .. }) => code,
                Err(why) => {
                    return Err(HiLinkError::Bad {
                        path: path.to_owned(),
                        why: format!("HTTP {}: {why}", answer.status),
                    })
                }
            };
            match session::on_error(code) {
                OnError::NewSession if !resessioned => {
                    log::debug!("hilink {}: {path}: error {code}, new session", self.netdev);
                    resessioned = true;
                    self.reset();
                }
                OnError::Login if !logged_in => {
                    self.session.on_logged_out();
                    self.login().await?;
                    logged_in = true;
                }
                OnError::BadCredentials => return Err(HiLinkError::Credentials { code }),
                _ => {
                    return Err(HiLinkError::Api {
                        path: path.to_owned(),
                        code,
                    })
                }
            }
        }
    }

    /// A session (cookie and tokens from the home page, else `/api/webserver/token`, else
    /// `/api/webserver/SesTokInfo`), and a token when a POST needs one.
    async fn ensure_session(&mut self, need_token: bool) -> Result<(), HiLinkError> {
        if !self.open {
            let home = self.exchange(Method::GET, "/", None, None).await?;
            self.absorb(&home, false);
            self.open = true;
            if self.session.on_home_page(&home.body) {
                return Ok(());
            }
            return self.fetch_token().await;
        }
        if need_token && !self.session.has_token() {
            self.fetch_token().await?;
        }
        Ok(())
    }

    async fn fetch_token(&mut self) -> Result<(), HiLinkError> {
        let path = "/api/webserver/token";
        let answer = self.exchange(Method::GET, path, None, None).await?;
        self.absorb(&answer, false);
        if let Ok(Reply::Response(f)) = xml::parse_reply(&answer.body) {
            if let Some(token) = f.non_empty("token") {
                self.session.on_token(token);
                return Ok(());
            }
        }
        let path = "/api/webserver/SesTokInfo";
        let answer = self.exchange(Method::GET, path, None, None).await?;
        self.absorb(&answer, false);
        match xml::parse_reply(&answer.body) {
            Ok(Reply::Response(f)) => {
                let (Some(ses), Some(tok)) = (f.non_empty("SesInfo"), f.non_empty("TokInfo"))
                else {
                    return Err(HiLinkError::Bad {
                        path: path.to_owned(),
                        why: "no SesInfo/TokInfo".into(),
                    });
                };
                self.session.on_ses_tok_info(ses, tok);
                Ok(())
            }
            Ok(Reply::Error { code, .. }) => Err(HiLinkError::Api {
                path: path.to_owned(),
                code,
            }),
            Err(why) => Err(HiLinkError::Bad {
                path: path.to_owned(),
                why,
            }),
        }
    }

    /// Logs in (see the module docs); refused credentials block logins for a while.
    async fn login(&mut self) -> Result<(), HiLinkError> {
        if let Some((until, err)) = &self.login_blocked {
            if Instant::now() < *until {
                return Err(err.clone());
            }
        }
        let Some(password) = self.password.clone() else {
            return Err(HiLinkError::NeedsPassword);
        };
        let mut resessioned = false;
        loop {
            self.ensure_session(true).await?;
            let state = self
                .exchange(
                    Method::GET,
                    "/api/user/state-login",
                    None,
                    self.session.peek_token(),
                )
                .await?;
            self.absorb(&state, false);
            let password_type = match xml::parse_reply(&state.body) {
                Ok(Reply::Response(f)) => LoginState::from_fields(&f).password_type,
                _ => 4,
            };
            self.ensure_session(true).await?;
            let token = self.session.take_token().unwrap_or_default();
            let encoded = if password_type == 4 {
                session::login_password(&self.username, &password, &token)
            } else {
                session::login_password_plain(&password)
            };
            let body = xml::request(&[
                ("Username", &self.username),
                ("Password", &encoded),
                ("password_type", &password_type.to_string()),
            ]);
            let answer = self
                .exchange(Method::POST, "/api/user/login", Some(body), Some(&token))
                .await?;
            self.absorb(&answer, true);
            let code = match xml::parse_reply(&answer.body) {
                Ok(Reply::Response(_)) => {
                    self.session.on_login();
                    self.login_blocked = None;
                    log::info!("hilink {}: logged in as {}", self.netdev, self.username);
                    return Ok(());
                }
                Ok(Reply::Error { code, .. }) => code,
                Err(why) => {
                    return Err(HiLinkError::Bad {
                        path: "/api/user/login".into(),
                        why,
                    })
                }
            };
            match session::on_error(code) {
                OnError::NewSession if !resessioned => {
                    resessioned = true;
                    self.reset();
                }
                _ if code == code::ALREADY_LOGIN => {
                    self.session.on_login();
                    return Ok(());
                }
                OnError::BadCredentials => {
                    let err = HiLinkError::Credentials { code };
                    log::error!(
                        "hilink {}: {err}; not trying again for {LOGIN_BACKOFF:?}",
                        self.netdev
                    );
                    self.login_blocked = Some((
                        crate::modem::ladder::later(Instant::now(), LOGIN_BACKOFF),
                        err.clone(),
                    ));
                    return Err(err);
                }
                _ => {
                    return Err(HiLinkError::Api {
                        path: "/api/user/login".into(),
                        code,
                    })
                }
            }
        }
    }

    fn absorb(&mut self, answer: &Answer, fresh: bool) {
        for c in &answer.set_cookies {
            self.session.on_set_cookie(c);
        }
        self.session.on_answer_tokens(
            answer.token.as_deref(),
            answer.token_one.as_deref(),
            answer.token_two.as_deref(),
            fresh,
        );
    }

    /// One request on its own connection out of the stick's interface, within the timeout.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> Result<Answer, HiLinkError> {
        let what = format!("{} {path}", method.as_str());
        tokio::time::timeout(
            self.timeout,
            self.exchange_unbounded(method, path, body, token),
        )
        .await
        .map_err(|_| {
            HiLinkError::Unreachable(format!(
                "{what}: no answer from {} through {} within {:?}",
                self.url.host, self.netdev, self.timeout
            ))
        })?
    }

    async fn exchange_unbounded(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> Result<Answer, HiLinkError> {
        let unreachable = |e: String| {
            HiLinkError::Unreachable(format!(
                "{} {path} via {}: {e}",
                method.as_str(),
                self.netdev
            ))
        };
        // An empty name would UNbind the socket: the request would leave by the main table, to
        // whatever answers at the stick's address there (the box's own LAN is often
        // 192.168.8.0/24 too). A stick whose interface is not there yet is simply unreachable.
        if self.netdev.is_empty() {
            return Err(unreachable(
                "no interface yet (its USB device is not there)".to_owned(),
            ));
        }
        let addr: SocketAddr = tokio::net::lookup_host((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", self.url.host)))?
            .next()
            .ok_or_else(|| unreachable(format!("{} has no address", self.url.host)))?;
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        socket
            .bind_device(Some(self.netdev.as_bytes()))
            .map_err(|e| unreachable(format!("cannot bind to interface {}: {e}", self.netdev)))?;
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| unreachable(format!("cannot connect to {addr}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // Ends with the connection (`Connection: close`), or when this exchange is dropped.
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = if self.url.port == 80 {
            self.url.host.clone()
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONNECTION, "close")
            .header(hyper::header::USER_AGENT, "edgeward")
            .header("X-Requested-With", "XMLHttpRequest");
        if let Some(cookie) = self.session.cookie() {
            req = req.header(hyper::header::COOKIE, cookie);
        }
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            req = req.header("__RequestVerificationToken", token);
        }
        if body.is_some() {
            req = req.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=UTF-8",
            );
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(e.to_string()))?;
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            Ok(Answer {
                status: parts.status.as_u16(),
                set_cookies: parts
                    .headers
                    .get_all(hyper::header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .collect(),
                token: header("__RequestVerificationToken"),
                token_one: header("__RequestVerificationTokenone"),
                token_two: header("__RequestVerificationTokentwo"),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        }
        .await;
        conn.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stick configured by usb_path whose device is away has no interface: nothing is sent
    /// (an unbound socket would reach whatever answers at its address through the main table).
    #[tokio::test]
    async fn without_an_interface_nothing_leaves_unbound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut c = Client::new(&url, "", "admin", None, Duration::from_secs(1)).unwrap();
        let e = c.get("/api/monitoring/status").await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert!(e.to_string().contains("no interface yet"), "{e}");
        assert!(listener.accept().is_err(), "a connection was made");
    }
}
