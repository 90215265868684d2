//! The plugin configuration (JSON, from Envoy's StringValue or Struct), validated once in
//! `on_configure`. Every error names the key at fault.

use crate::caller::{CallerToken, Callers};
use crate::destination::{DestinationConfig, DestinationPolicy, RecentChecks};
use crate::limit::etcd::{Backend, Etcd, StateConfig};
use crate::limit::{LimitConfig, Limiter};
use crate::signing::{Signer, SigningConfig};
use std::collections::BTreeMap;

/// Envoy's default connection buffer limit is 1 MiB; the filter's caps stay well below it so that
/// an oversized body ends in an envelope, never in Envoy's bare overflow reply.
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 * 1024;
const MAX_BODY_CAP: usize = 64 * 1024 * 1024;

#[derive(serde::Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Largest event body accepted from the engine (413 above).
    pub max_event_bytes: usize,
    /// Largest receiver answer read; a longer one is dropped and judged not JSON.
    pub max_response_bytes: usize,
    /// Longest webhook name accepted.
    pub max_name_length: usize,
    /// Headers added to every outbound webhook (lower-case names).
    pub static_headers: BTreeMap<String, String>,
    /// Where webhooks may go.
    pub destination: DestinationConfig,
    /// The hourly limit and the verification key.
    pub limit: LimitConfig,
    /// Where the limit and verification state live: this Envoy (default) or etcd (a fleet).
    pub state: StateConfig,
    /// Networks allowed to post events (CIDRs, the connection's peer address); loopback only
    /// by default.
    pub callers: Vec<String>,
    /// A shared token every caller must send in a header (see `caller`); none by default.
    pub caller_token: Option<CallerToken>,
    /// Standard Webhooks signing secrets per webhook name; off (no secret) by default.
    pub signing: SigningConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_event_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_BODY_BYTES,
            max_name_length: 64,
            static_headers: BTreeMap::new(),
            destination: DestinationConfig::default(),
            limit: LimitConfig::default(),
            state: StateConfig::default(),
            callers: crate::caller::default_callers(),
            caller_token: None,
            signing: SigningConfig::default(),
        }
    }
}

/// The configuration with its policies built, ready for every request.
pub struct Settings {
    pub config: Config,
    pub destinations: DestinationPolicy,
    /// The networks allowed to post events (`callers`).
    pub callers: Callers,
    /// The policy's recent answers, by URL (kept with the configuration they come from).
    pub recent_destinations: RecentChecks,
    pub limiter: Limiter,
    /// Set when `state.backend` is `etcd`.
    pub etcd: Option<Etcd>,
    /// The decoded signing secrets (`signing`).
    pub signer: Signer,
}

/// Headers hookgate or Envoy set or read, or that change how a request travels: neither a static
/// header nor the caller token's header may be one of them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
    "user-agent",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-hookgate-route",
    "x-hookgate-test",
];

/// A lower-case header name (the form configuration keys must use).
pub(crate) fn is_lowercase_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(crate) fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name) || name.starts_with("x-envoy-")
}

impl Settings {
    /// Parses and validates the plugin configuration; an empty one means every default.
    pub fn parse(bytes: &[u8]) -> Result<Settings, String> {
        let config: Config = if bytes.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            deserialize(bytes)?
        };
        for (key, value) in [
            ("max_event_bytes", config.max_event_bytes),
            ("max_response_bytes", config.max_response_bytes),
        ] {
            if value == 0 || value > MAX_BODY_CAP {
                return Err(format!("{key}: must be 1..={MAX_BODY_CAP}, got {value}"));
            }
        }
        if config.max_name_length == 0 || config.max_name_length > 1024 {
            return Err(format!(
                "max_name_length: must be 1..=1024, got {}",
                config.max_name_length
            ));
        }
        for (name, value) in &config.static_headers {
            check_static_header(name, value)?;
        }
        if let Some(token) = &config.caller_token {
            token.validate()?;
        }
        let callers = Callers::new(&config.callers)?;
        let destinations = DestinationPolicy::new(&config.destination)?;
        let limiter = Limiter::new(&config.limit)?;
        config.state.validate()?;
        let signer = Signer::new(&config.signing)?;
        let etcd = (config.state.backend == Backend::Etcd).then(|| Etcd::new(&config.state));
        Ok(Settings {
            config,
            destinations,
            callers,
            recent_destinations: RecentChecks::default(),
            limiter,
            etcd,
            signer,
        })
    }
}

/// The checker (feature `cli`) names the key of a type error (`destination.allow[0].port:
/// invalid type ...`); the filter keeps serde's own words, with line and column, so that
/// hookgate.wasm does not carry the path tracking.
#[cfg(feature = "cli")]
fn deserialize(bytes: &[u8]) -> Result<Config, String> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(
        |e| match e.path().to_string().as_str() {
            "." => format!("plugin configuration: {}", e.inner()),
            path => format!("{path}: {}", e.inner()),
        },
    )
}

#[cfg(not(feature = "cli"))]
fn deserialize(bytes: &[u8]) -> Result<Config, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("plugin configuration: {e}"))
}

fn check_static_header(name: &str, value: &str) -> Result<(), String> {
    if !is_lowercase_header_name(name) {
        return Err(format!(
            "static_headers: {name:?} is not a lower-case header name"
        ));
    }
    // x-hookgate-* names hookgate's own headers to the engine and receiver.
    // webhook-id, -timestamp and -signature are signing's (crate::signing).
    if is_reserved_header(name)
        || name.starts_with("x-hookgate-")
        || crate::signing::HEADERS.contains(&name)
    {
        return Err(format!(
            "static_headers: {name:?} is set by hookgate or Envoy"
        ));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(format!(
            "static_headers.{name}: value has characters not allowed in a header"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        Settings::parse(json.as_bytes()).err().unwrap()
    }

    #[test]
    fn empty_configuration_means_defaults() {
        for empty in ["", "  ", "{}"] {
            let settings = Settings::parse(empty.as_bytes()).unwrap();
            assert_eq!(settings.config, Config::default());
        }
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error(r#"{"max_event_bytes":0}"#).contains("max_event_bytes"));
        assert!(error(r#"{"max_name_length":0}"#).contains("max_name_length"));
        assert!(error(r#"{"surprise":1}"#).contains("surprise"));
        assert!(
            error(r#"{"max_event_bytes":"x"}"#).contains("max_event_bytes")
                || error(r#"{"max_event_bytes":"x"}"#).contains("invalid type")
        );
        assert!(error(r#"{"static_headers":{"Host":"x"}}"#).contains("static_headers"));
        assert!(error(r#"{"static_headers":{"host":"x"}}"#).contains("static_headers"));
        assert!(error(r#"{"static_headers":{"x-a":"a\nb"}}"#).contains("static_headers.x-a"));
        assert!(error("not json").contains("plugin configuration"));
    }

    #[test]
    fn caller_token_is_validated_and_never_echoed() {
        let settings = Settings::parse(
            br#"{"caller_token":{"header":"x-hookgate-token","token":"0123456789abcdef"}}"#,
        )
        .unwrap();
        let token = settings.config.caller_token.unwrap();
        assert_eq!(token.header, "x-hookgate-token");
        assert_eq!(token.token, "0123456789abcdef");
        let short = error(r#"{"caller_token":{"header":"x-hookgate-token","token":"tooshort"}}"#);
        assert!(short.starts_with("caller_token.token"), "{short}");
        assert!(!short.contains("tooshort"), "{short}");
        assert!(
            error(r#"{"caller_token":{"header":"Host","token":"0123456789abcdef"}}"#)
                .starts_with("caller_token.header")
        );
        assert!(error(r#"{"caller_token":{"header":"x-a"}}"#).contains("token"));
        assert!(
            error(r#"{"caller_token":{"header":"x-a","token":"0123456789abcdef","x":1}}"#)
                .contains("x")
        );
    }

    #[test]
    fn state_selects_the_backend_and_is_validated() {
        assert!(Settings::parse(b"{}").unwrap().etcd.is_none());
        let etcd = Settings::parse(
            br#"{"state":{"backend":"etcd","cluster":"etcd","timeout_ms":500,"prefix":"hookgate","on_failure":"deny"}}"#,
        )
        .unwrap();
        assert!(etcd.etcd.is_some());
        assert!(
            error(r#"{"state":{"backend":"etcd","timeout_ms":0}}"#).starts_with("state.timeout_ms")
        );
        assert!(error(r#"{"state":{"backend":"zookeeper"}}"#).contains("zookeeper"));
        assert!(error(r#"{"state":{"on_failure":"allow"}}"#).contains("allow"));
    }

    #[test]
    fn signing_is_off_by_default_and_validated() {
        assert!(!Settings::parse(b"{}").unwrap().signer.is_enabled());
        let settings = Settings::parse(
            br#"{"signing":{"secrets":{"orders":["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]}}}"#,
        )
        .unwrap();
        assert_eq!(settings.signer.secrets_for("orders").len(), 1);
        assert!(!format!("{:?}", settings.config).contains("C2FVsBQ"));
        let bad = error(r#"{"signing":{"secrets":{"orders":["whsec_C2FVsBQIhrsc"]}}}"#);
        assert!(bad.starts_with("signing.secrets.orders[0]"), "{bad}");
        assert!(!bad.contains("C2FVsBQ"), "{bad}");
        assert!(error(r#"{"signing":{"secret":{}}}"#).contains("secret"));
        for name in crate::signing::HEADERS {
            let json = format!(r#"{{"static_headers":{{"{name}":"x"}}}}"#);
            assert!(error(&json).starts_with("static_headers"), "{name}");
        }
        assert!(error(r#"{"signing":{"default_secrets":["x"]}}"#)
            .starts_with("signing.default_secrets[0]"));
    }

    #[test]
    fn static_headers_are_accepted() {
        let settings = Settings::parse(br#"{"static_headers":{"x-source":"sendpulse"}}"#).unwrap();
        assert_eq!(
            settings
                .config
                .static_headers
                .get("x-source")
                .map(String::as_str),
            Some("sendpulse")
        );
    }
}
