//! The support API: on a listener of its own (loopback by default), a support operator looks
//! up one webhook's limit state and lifts it (marks it verified, or resets its window), with a
//! token that names who asked. Pure: the filter (`filter/support.rs`) carries the bytes and
//! runs the limit backend; every decision and every text is made here.
//!
//! The listener's hookgate filter has this plugin configuration, and shares the `vm_id` of
//! the engine's filter, whose limit configuration (and backend) it uses:
//!
//! ```json
//! {"role": "support", "namespace": "default",
//!  "tokens": [{"name": "alice", "token": "a long random secret"}]}
//! ```
//!
//! Requests: `POST /webhook/state`, `/webhook/verify`, `/webhook/reset` with
//! `authorization: Bearer <token>` and the body `{"name": "...", "url": "..."}`. Reference:
//! docs/support.md.

use crate::caller::{constant_time_eq, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
use crate::error::Code;
use crate::limit::{Lift, Lifted, LimitState};
use serde::{Deserialize, Serialize};

/// The largest request body read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
const MAX_TOKENS: usize = 100;
const MAX_TOKEN_NAME_LEN: usize = 64;

/// The plugin configuration of a support listener's filter.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    /// Always `support` (what tells this configuration from the engine filter's).
    pub role: Role,
    /// The `limit.namespace` of the engine filter whose state this listener serves.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Who may ask; none: every request is refused.
    #[serde(default)]
    pub tokens: Vec<SupportToken>,
}

#[derive(Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Support,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// One operator's (or one team's) token; `name` is what the audit log shows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportToken {
    pub name: String,
    pub token: String,
}

/// Never prints the secret.
impl std::fmt::Debug for SupportToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SupportToken({:?}, <redacted>)", self.name)
    }
}

/// Whether a plugin configuration is a support listener's (`"role": "support"`).
pub fn is_support_config(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        role: Option<String>,
    }
    serde_json::from_slice::<Peek>(bytes).is_ok_and(|p| p.role.as_deref() == Some("support"))
}

impl SupportConfig {
    /// Parses and checks the configuration; errors name the key, never a token.
    pub fn parse(bytes: &[u8]) -> Result<SupportConfig, String> {
        let config: SupportConfig = serde_json::from_slice(bytes)
            .map_err(|e| format!("support plugin configuration: {e}"))?;
        if config.tokens.len() > MAX_TOKENS {
            return Err(format!("tokens: at most {MAX_TOKENS}"));
        }
        for (i, token) in config.tokens.iter().enumerate() {
            let name_ok = (1..=MAX_TOKEN_NAME_LEN).contains(&token.name.len())
                && token
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
            if !name_ok {
                return Err(format!(
                    "tokens[{i}].name: 1..={MAX_TOKEN_NAME_LEN} of A-Z a-z 0-9 . _ - @"
                ));
            }
            let length = token.token.len();
            if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&length)
                || !token.token.bytes().all(|b| (0x21..0x7f).contains(&b))
            {
                return Err(format!(
                    "tokens[{i}].token ({}): {MIN_TOKEN_LEN}..={MAX_TOKEN_LEN} visible ASCII characters",
                    token.name
                ));
            }
            let earlier = config.tokens.get(..i).unwrap_or_default();
            if earlier.iter().any(|t| t.name == token.name) {
                return Err(format!("tokens[{i}].name: {:?} twice", token.name));
            }
            if earlier.iter().any(|t| t.token == token.token) {
                return Err(format!(
                    "tokens[{i}].token ({}): the same as another's",
                    token.name
                ));
            }
        }
        Ok(config)
    }

    /// The name of the token the `authorization` header presents (`Bearer <token>`). Every
    /// configured token is compared, in a time that does not depend on which one matched.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<&str, SupportError> {
        if self.tokens.is_empty() {
            return Err(SupportError::Unauthorized(
                "no support token is configured on this listener".into(),
            ));
        }
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| SupportError::Unauthorized("no `authorization: Bearer` token".into()))?;
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(presented.as_bytes(), token.token.as_bytes()) {
                found = Some(token.name.as_str());
            }
        }
        found.ok_or_else(|| SupportError::Unauthorized("wrong support token".into()))
    }
}

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Look,
    Lift(Lift),
}

impl Operation {
    /// The operation a path names (`POST` only).
    pub fn route(method: &str, path: &str) -> Result<Operation, SupportError> {
        let path = path.split('?').next().unwrap_or_default();
        let operation = match path {
            "/webhook/state" => Operation::Look,
            "/webhook/verify" => Operation::Lift(Lift::Verify),
            "/webhook/reset" => Operation::Lift(Lift::ResetWindow),
            _ => return Err(SupportError::NotFound(path.chars().take(100).collect())),
        };
        if method != "POST" {
            return Err(SupportError::MethodNotAllowed(
                method.chars().take(20).collect(),
            ));
        }
        Ok(operation)
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Look => "state",
            Operation::Lift(Lift::Verify) => "verify",
            Operation::Lift(Lift::ResetWindow) => "reset",
        }
    }
}

/// The webhook a request is about: its name and URL as the engine sends them.
#[derive(Deserialize, Serialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub url: String,
}

impl Target {
    pub fn parse(body: &[u8]) -> Result<Target, SupportError> {
        let target: Target = serde_json::from_slice(body)
            .map_err(|e| SupportError::BadRequest(format!("body: {e}")))?;
        if target.name.is_empty() || target.url.is_empty() {
            return Err(SupportError::BadRequest(
                "body: name and url must not be empty".into(),
            ));
        }
        Ok(target)
    }
}

/// Why a support request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupportError {
    Unauthorized(String),
    NotFound(String),
    MethodNotAllowed(String),
    BadRequest(String),
    /// The state could not be read or written, or no engine filter serves the namespace.
    Unavailable(String),
}

impl SupportError {
    pub fn status(&self) -> u32 {
        match self {
            SupportError::Unauthorized(_) => 401,
            SupportError::NotFound(_) => 404,
            SupportError::MethodNotAllowed(_) => 405,
            SupportError::BadRequest(_) => 400,
            SupportError::Unavailable(_) => 503,
        }
    }

    /// For `x-hookgate-detail` and the log line.
    pub fn detail(&self) -> String {
        match self {
            SupportError::Unauthorized(why) => format!("unauthorized: {why}"),
            SupportError::NotFound(path) => {
                format!("no such operation {path:?}: use /webhook/state, /webhook/verify or /webhook/reset")
            }
            SupportError::MethodNotAllowed(method) => {
                format!("method {method} not allowed, use POST")
            }
            SupportError::BadRequest(why) => format!("bad request: {why}"),
            SupportError::Unavailable(why) => format!("limit state unavailable: {why}"),
        }
    }

    /// The body: the envelope the engine gets for a refused request (21111011).
    pub fn body(&self) -> Vec<u8> {
        crate::envelope::refusal(Code::QueryError)
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    status: bool,
    webhook: &'a Target,
    namespace: &'a str,
    backend: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a LimitState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a LimitState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a LimitState>,
}

/// The answer to a request that was carried out.
pub fn render(
    operation: Operation,
    namespace: &str,
    backend: &str,
    target: &Target,
    lifted: &Lifted,
) -> Vec<u8> {
    let lift = matches!(operation, Operation::Lift(_));
    let answer = Answer {
        status: true,
        webhook: target,
        namespace,
        backend,
        state: (!lift).then_some(&lifted.after),
        action: lift.then_some(operation.name()),
        changed: lift.then_some(lifted.changed),
        before: lift.then_some(&lifted.before),
        after: lift.then_some(&lifted.after),
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// The audit line: who asked what about which webhook, and what changed. The webhook's host
/// only, never its path or query.
pub fn audit(
    who: &str,
    operation: Operation,
    namespace: &str,
    target: &Target,
    result: Result<&Lifted, &SupportError>,
) -> String {
    let host = crate::destination::host_as_written(&target.url);
    let head = format!(
        "support token={who} action={} namespace={namespace} webhook={:?} host={host}",
        operation.name(),
        target.name.chars().take(100).collect::<String>()
    );
    match result {
        Ok(lifted) if lifted.changed => format!(
            "{head} changed=true before={} after={}",
            brief(&lifted.before),
            brief(&lifted.after)
        ),
        Ok(lifted) => format!("{head} changed=false state={}", brief(&lifted.after)),
        Err(error) => format!("{head} refused={:?}", error.detail()),
    }
}

fn brief(state: &LimitState) -> String {
    format!(
        "verified:{},sends:{},retry_after:{}",
        state.verified,
        state.sends_in_window,
        state.retry_after.map_or("-".to_string(), |s| s.to_string())
    )
}

#[cfg(test)]
mod tests;
