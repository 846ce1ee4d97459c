//! Vendor profiles as data: what to send to a modem of a given make, how to read its answers,
//! and the rungs of its IP toggle ladder. Profiles are TOML files (`config/modems/*.toml`),
//! embedded in the binary and overridable by a file; this module loads and validates them.
//! It must not run commands or decide when to: that is the shell's and the [ladder]'s job.
//!
//! Durations follow the config file's grammar ([`crate::duration`]: `"30s"`, `"500ms"`, `"2m"`,
//! `"1m30s"`, or a bare number of seconds) and may be at most [`MAX_PROFILE_DURATION`]. Commands may use
//! two placeholders, filled by [`Profile::ladder_for`] and [`Query::render`]: `{cid}` (the PDP
//! context id) and `{apn}`.
//!
//! [ladder]: super::ladder

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Deserialize;

use crate::duration;
pub use crate::duration::{format_duration, parse_duration};

use super::parse::{Category, ParserKind};

/// The built-in profiles. This table is the one place that names the files; paths are from the
/// crate root so they do not depend on where this module lives.
macro_rules! builtin {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/modems/",
                $name,
                ".toml"
            )),
        )
    };
}

const BUILTINS: &[(&str, &str)] = &[
    builtin!("generic"),
    builtin!("quectel"),
    builtin!("simcom"),
    builtin!("huawei"),
    builtin!("sierra"),
    builtin!("fibocom"),
];

/// Why a profile was refused. `key` is the TOML path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("modem profile is not valid TOML for a profile: {0}")]
    Toml(String),
    #[error("modem profile: `{key}` {reason}")]
    Invalid { key: String, reason: String },
    #[error("no built-in modem profile named `{0}`")]
    UnknownBuiltin(String),
}

/// The longest any one profile duration (timeout, pause, settle, wait) may be: longer is a typo,
/// and a bound keeps every deadline computed from it far from overflow.
pub const MAX_PROFILE_DURATION: Duration = Duration::from_secs(3600);

fn check_duration(key: &str, d: Duration) -> Result<(), ProfileError> {
    duration::check_range(d, Duration::ZERO, MAX_PROFILE_DURATION).map_err(|e| invalid(key, e))
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A vendor profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Which modems this profile is for. Empty: the fallback for anything unmatched.
    #[serde(rename = "match", default)]
    pub matches: Match,
    #[serde(default)]
    pub port: Port,
    pub queries: Queries,
    /// Toggle rungs, tried in order.
    pub ladder: Vec<Step>,
    /// How to put the modem back online when a toggle is cut short (edgeward stopping).
    #[serde(default)]
    pub restore: Restore,
}

/// What brings a modem back online from wherever an interrupted rung left it: radio on
/// (`commands`), registration (when `wait_registration` is set), then the data call
/// (`redial`). Every command must be harmless when the modem is already online (`AT+CFUN=1`
/// on a modem that is on, activating an active context with `ignore_error`), because the
/// same restore runs whichever rung was interrupted. The ladder bounds the whole restore by
/// [`Limits::restore_budget`](super::ladder::Limits::restore_budget), so a step's timeout here is
/// only an upper bound.
///
/// Without a `[restore]` table a profile gets the 3GPP TS 27.007 one: `AT+CFUN=1`, wait for
/// registration, `AT+CGACT=1,{cid}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    #[serde(default)]
    pub commands: Vec<Command>,
    #[serde(default, deserialize_with = "duration::de_opt")]
    pub wait_registration: Option<Duration>,
    #[serde(default)]
    pub redial: Vec<Command>,
}

impl Default for Restore {
    fn default() -> Self {
        let best_effort = |cmd: &str| Command {
            cmd: cmd.to_string(),
            timeout: default_timeout(),
            ignore_error: true,
            pause: Duration::ZERO,
            reboots: false,
        };
        Self {
            commands: vec![best_effort("AT+CFUN=1")],
            wait_registration: Some(Duration::from_secs(8)),
            redial: vec![best_effort("AT+CGACT=1,{cid}")],
        }
    }
}

/// Case-insensitive substrings of the `AT+CGMI`/`ATI` manufacturer and `AT+CGMM` model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub manufacturer: Vec<String>,
    /// Empty: any model of a matching manufacturer.
    #[serde(default)]
    pub model: Vec<String>,
}

/// Port setup, sent in order every time the port is (re)opened.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// PDP context id for `{cid}`.
    #[serde(default = "default_cid")]
    pub cid: u32,
    #[serde(default)]
    pub setup: Vec<Command>,
}

impl Default for Port {
    fn default() -> Self {
        Self {
            cid: default_cid(),
            setup: Vec::new(),
        }
    }
}

fn default_cid() -> u32 {
    1
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_wait_address() -> Duration {
    Duration::from_secs(30)
}

/// One command with its timeout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub cmd: String,
    #[serde(default = "default_timeout", deserialize_with = "duration::de")]
    pub timeout: Duration,
    /// An error answer does not fail the step (e.g. deactivating a context that is not active).
    #[serde(default)]
    pub ignore_error: bool,
    /// Wait this long after the answer before the next command.
    #[serde(default, deserialize_with = "duration::de")]
    pub pause: Duration,
    /// The command restarts the modem: no answer, or the port vanishing, is expected.
    #[serde(default)]
    pub reboots: bool,
}

/// Status queries. For registration, signal, operator and address the shell tries the entries in
/// order and keeps the first that parses; identity entries are all run and merged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    pub registration: Vec<Query>,
    #[serde(default)]
    pub signal: Vec<Query>,
    #[serde(default)]
    pub operator: Vec<Query>,
    pub address: Vec<Query>,
    #[serde(default)]
    pub identity: Vec<Query>,
}

/// One status query: the command and the parser for its information lines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub cmd: String,
    pub parser: ParserKind,
    #[serde(default = "default_timeout", deserialize_with = "duration::de")]
    pub timeout: Duration,
}

impl Query {
    /// The command with its placeholders filled.
    pub fn render(&self, vars: &Vars) -> String {
        vars.render(&self.cmd)
    }
}

/// How hard a rung hits the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Re-activate the PDP context / vendor data call.
    Soft,
    /// Radio off and on again (detach and re-attach).
    Airplane,
    /// Restart the modem.
    Reset,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soft => "soft",
            Self::Airplane => "airplane",
            Self::Reset => "reset",
        }
    }
}

/// One rung of the toggle ladder. Phases, in order: `commands`, `settle`, wait for registration
/// (when `wait_registration` is set), `redial`, then wait for an address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Defaults to the kind's name.
    #[serde(default)]
    pub name: String,
    pub kind: StepKind,
    pub commands: Vec<Command>,
    /// Quiet time after the commands (radio settling, modem booting).
    #[serde(default, deserialize_with = "duration::de")]
    pub settle: Duration,
    /// Wait at most this long for the modem to register again.
    #[serde(default, deserialize_with = "duration::de_opt")]
    pub wait_registration: Option<Duration>,
    /// Commands to bring the data call back once registered (vendor dial-up after airplane/reset).
    #[serde(default)]
    pub redial: Vec<Command>,
    /// Wait at most this long for an address (default bearer / data call up).
    #[serde(default = "default_wait_address", deserialize_with = "duration::de")]
    pub wait_address: Duration,
    /// Extra tries of this rung when it ends with the old address.
    #[serde(default)]
    pub repeat: u32,
}

/// Values for the `{cid}` and `{apn}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub cid: u32,
    pub apn: String,
}

impl Vars {
    /// Fills the placeholders. Quotes and line breaks are removed from the APN so it cannot
    /// close the quoted argument or start another command.
    pub fn render(&self, template: &str) -> String {
        let apn: String = self
            .apn
            .chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n'))
            .collect();
        template
            .replace("{cid}", &self.cid.to_string())
            .replace("{apn}", &apn)
    }
}

impl Profile {
    /// Parses and validates a profile.
    pub fn from_toml(text: &str) -> Result<Self, ProfileError> {
        let mut profile: Profile =
            toml::from_str(text).map_err(|e| ProfileError::Toml(e.to_string()))?;
        for step in &mut profile.ladder {
            if step.name.trim().is_empty() {
                step.name = step.kind.as_str().to_string();
            }
        }
        profile.validate()?;
        Ok(profile)
    }

    /// A built-in profile by name (`generic`, `quectel`, `simcom`, `huawei`, `sierra`, `fibocom`).
    pub fn builtin(name: &str) -> Result<Self, ProfileError> {
        let (_, text) = BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ProfileError::UnknownBuiltin(name.to_string()))?;
        Self::from_toml(text)
    }

    /// All built-in profiles, most specific first and `generic` last.
    pub fn builtins() -> Result<Vec<Self>, ProfileError> {
        let mut all = BUILTINS
            .iter()
            .map(|(_, text)| Self::from_toml(text))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by_key(|p| p.is_fallback());
        Ok(all)
    }

    /// A built-in profile by name, or a profile file by path (a value containing `/` or
    /// ending in `.toml`): how `[[modem]] profile` is read.
    pub fn resolve(name_or_path: &str) -> Result<Self, ProfileError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            let text = std::fs::read_to_string(name_or_path).map_err(|e| {
                ProfileError::Toml(format!("cannot read profile file {name_or_path}: {e}"))
            })?;
            return Self::from_toml(&text);
        }
        Self::builtin(name_or_path)
    }

    /// The same profile with every duration multiplied by `factor`: simulated modems in tests
    /// and the demo answer in milliseconds, not the seconds real modems need.
    pub fn scaled(mut self, factor: f64) -> Self {
        let f = |d: &mut Duration| *d = scale_duration(*d, factor);
        let cmd = |c: &mut Command| {
            f(&mut c.timeout);
            f(&mut c.pause);
        };
        self.port.setup.iter_mut().for_each(cmd);
        let q = &mut self.queries;
        for query in q
            .registration
            .iter_mut()
            .chain(q.signal.iter_mut())
            .chain(q.operator.iter_mut())
            .chain(q.address.iter_mut())
            .chain(q.identity.iter_mut())
        {
            f(&mut query.timeout);
        }
        for step in &mut self.ladder {
            step.commands.iter_mut().for_each(cmd);
            step.redial.iter_mut().for_each(cmd);
            f(&mut step.settle);
            f(&mut step.wait_address);
            if let Some(w) = step.wait_registration.as_mut() {
                f(w);
            }
        }
        let r = &mut self.restore;
        r.commands.iter_mut().for_each(cmd);
        r.redial.iter_mut().for_each(cmd);
        if let Some(w) = r.wait_registration.as_mut() {
            f(w);
        }
        self
    }

    /// Names of the built-in profiles.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|(name, _)| *name)
    }

    /// A profile with no manufacturer to match is the fallback.
    pub fn is_fallback(&self) -> bool {
        self.matches.manufacturer.is_empty()
    }

    /// Whether this profile is for the modem that reported `manufacturer` and `model`.
    pub fn matches(&self, manufacturer: &str, model: &str) -> bool {
        let contains = |hay: &str, needle: &String| {
            hay.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase())
        };
        let maker = self
            .matches
            .manufacturer
            .iter()
            .any(|m| contains(manufacturer, m));
        let model_ok =
            self.matches.model.is_empty() || self.matches.model.iter().any(|m| contains(model, m));
        maker && model_ok
    }

    /// The first profile matching the modem, else the first fallback.
    pub fn select<'a>(
        profiles: &'a [Profile],
        manufacturer: &str,
        model: &str,
    ) -> Option<&'a Self> {
        profiles
            .iter()
            .find(|p| !p.is_fallback() && p.matches(manufacturer, model))
            .or_else(|| profiles.iter().find(|p| p.is_fallback()))
    }

    /// Placeholder values with this profile's context id.
    pub fn vars(&self, apn: &str) -> Vars {
        Vars {
            cid: self.port.cid,
            apn: apn.to_string(),
        }
    }

    /// The setup commands with placeholders filled.
    pub fn setup_for(&self, vars: &Vars) -> Vec<Command> {
        self.port.setup.iter().map(|c| render(c, vars)).collect()
    }

    /// The ladder with placeholders filled, ready for [`Ladder::new`](super::ladder::Ladder::new).
    pub fn ladder_for(&self, vars: &Vars) -> Vec<Step> {
        self.ladder
            .iter()
            .map(|step| Step {
                commands: step.commands.iter().map(|c| render(c, vars)).collect(),
                redial: step.redial.iter().map(|c| render(c, vars)).collect(),
                ..step.clone()
            })
            .collect()
    }

    /// The restore with placeholders filled, for [`Ladder::with_restore`](super::ladder::Ladder::with_restore).
    pub fn restore_for(&self, vars: &Vars) -> Restore {
        Restore {
            commands: self
                .restore
                .commands
                .iter()
                .map(|c| render(c, vars))
                .collect(),
            redial: self
                .restore
                .redial
                .iter()
                .map(|c| render(c, vars))
                .collect(),
            wait_registration: self.restore.wait_registration,
        }
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.ladder.is_empty() {
            return Err(invalid("ladder", "needs at least one step"));
        }
        for (i, c) in self.port.setup.iter().enumerate() {
            check_command(&format!("port.setup[{i}]"), c)?;
        }
        let q = &self.queries;
        check_queries(
            "queries.registration",
            &q.registration,
            Category::Registration,
            true,
        )?;
        check_queries("queries.signal", &q.signal, Category::Signal, false)?;
        check_queries("queries.operator", &q.operator, Category::Operator, false)?;
        check_queries("queries.address", &q.address, Category::Address, true)?;
        check_queries("queries.identity", &q.identity, Category::Identity, false)?;
        for (i, step) in self.ladder.iter().enumerate() {
            let key = format!("ladder[{i}]");
            if step.commands.is_empty() {
                return Err(invalid(
                    format!("{key}.commands"),
                    "needs at least one command",
                ));
            }
            for (j, c) in step.commands.iter().enumerate() {
                check_command(&format!("{key}.commands[{j}]"), c)?;
            }
            for (j, c) in step.redial.iter().enumerate() {
                check_command(&format!("{key}.redial[{j}]"), c)?;
            }
            if step.wait_registration == Some(Duration::ZERO) {
                return Err(invalid(
                    format!("{key}.wait_registration"),
                    "must be positive",
                ));
            }
            if step.wait_address.is_zero() {
                return Err(invalid(format!("{key}.wait_address"), "must be positive"));
            }
            check_duration(&format!("{key}.settle"), step.settle)?;
            check_duration(&format!("{key}.wait_address"), step.wait_address)?;
            if let Some(w) = step.wait_registration {
                check_duration(&format!("{key}.wait_registration"), w)?;
            }
        }
        let r = &self.restore;
        for (j, c) in r.commands.iter().enumerate() {
            check_command(&format!("restore.commands[{j}]"), c)?;
        }
        for (j, c) in r.redial.iter().enumerate() {
            check_command(&format!("restore.redial[{j}]"), c)?;
        }
        if r.wait_registration == Some(Duration::ZERO) {
            return Err(invalid("restore.wait_registration", "must be positive"));
        }
        Ok(())
    }
}

/// `d × factor`, saturating: a huge duration from a profile file or a strange factor (NaN,
/// negative) must never panic the way `Duration::mul_f64` does.
pub fn scale_duration(d: Duration, factor: f64) -> Duration {
    if !(factor.is_finite() && factor >= 0.0) {
        return d;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

fn render(c: &Command, vars: &Vars) -> Command {
    Command {
        cmd: vars.render(&c.cmd),
        ..c.clone()
    }
}

/// Commands must be one AT command with known placeholders only.
fn check_text(key: &str, cmd: &str) -> Result<(), ProfileError> {
    if !cmd.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("AT")) {
        return Err(invalid(key, format!("must start with AT, got {cmd:?}")));
    }
    if cmd.contains(['\r', '\n']) {
        return Err(invalid(key, "must be a single line"));
    }
    let stripped = cmd.replace("{cid}", "").replace("{apn}", "");
    if stripped.contains(['{', '}']) {
        return Err(invalid(
            key,
            format!("has an unknown placeholder in {cmd:?} (known: {{cid}}, {{apn}})"),
        ));
    }
    Ok(())
}

fn check_command(key: &str, c: &Command) -> Result<(), ProfileError> {
    check_text(&format!("{key}.cmd"), &c.cmd)?;
    if c.timeout.is_zero() {
        return Err(invalid(format!("{key}.timeout"), "must be positive"));
    }
    check_duration(&format!("{key}.timeout"), c.timeout)?;
    check_duration(&format!("{key}.pause"), c.pause)
}

fn check_queries(
    key: &str,
    queries: &[Query],
    category: Category,
    required: bool,
) -> Result<(), ProfileError> {
    if required && queries.is_empty() {
        return Err(invalid(key, "needs at least one query"));
    }
    for (i, q) in queries.iter().enumerate() {
        let key = format!("{key}[{i}]");
        check_text(&format!("{key}.cmd"), &q.cmd)?;
        if q.timeout.is_zero() {
            return Err(invalid(format!("{key}.timeout"), "must be positive"));
        }
        check_duration(&format!("{key}.timeout"), q.timeout)?;
        if q.parser.category() != category {
            return Err(invalid(
                format!("{key}.parser"),
                format!("`{}` does not parse this kind of answer", q.parser.as_str()),
            ));
        }
    }
    Ok(())
}
