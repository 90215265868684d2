//! Who may post events: the source network, and the optional shared token.
//!
//! The source network is the peer address of the engine's connection (Envoy's
//! `source.address`, never `X-Forwarded-For`), checked against the plugin's `callers` list of
//! CIDRs, loopback only by default ([`DEFAULT_CALLERS`]):
//!
//! ```json
//! {"callers": ["127.0.0.0/8", "::1/128", "10.20.0.0/16"]}
//! ```
//!
//! On top of that, the plugin configuration may require a shared token in a request header:
//!
//! ```json
//! {"caller_token": {"header": "x-hookgate-token", "token": "a long random secret"}}
//! ```
//!
//! A request without the header, or with another value, is refused as
//! [`Failure::CallerRefused`] (403, 21111011) before its body is read. The comparison takes a
//! time that depends only on the length of what the caller sent, never on the secret or on where
//! the first difference is. The token never appears in a log line, a `Debug` output or a failure
//! detail, and it never reaches a receiver (hookgate replaces every header the caller sent).

use crate::cidr::{parse_cidr, Net};
use crate::error::Failure;
use crate::headers;
use std::net::{IpAddr, SocketAddr};

/// The networks allowed to post events when `callers` is not set: loopback.
pub const DEFAULT_CALLERS: &[&str] = &["127.0.0.0/8", "::1/128"];

pub fn default_callers() -> Vec<String> {
    DEFAULT_CALLERS.iter().map(|c| c.to_string()).collect()
}

/// The `callers` key, parsed.
#[derive(Clone, Debug)]
pub struct Callers(Vec<Net>);

impl Callers {
    /// Err names the entry: `callers[1]: invalid CIDR "10.0.0.1/8"`.
    pub fn new(cidrs: &[String]) -> Result<Callers, String> {
        cidrs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_cidr(text).ok_or_else(|| {
                    format!("callers[{i}]: invalid CIDR {text:?} (address/prefix, no host bits)")
                })
            })
            .collect::<Result<Vec<Net>, String>>()
            .map(Callers)
    }

    /// Judges the peer address as Envoy writes it (`ip:port`, `[v6]:port`); an address that
    /// cannot be read is refused. IPv4-mapped IPv6 peers (a dual-stack listener) are judged as
    /// the IPv4 address they carry.
    pub fn check(&self, source: &str) -> Result<(), Failure> {
        let ip = match source.parse::<SocketAddr>() {
            Ok(socket) => socket.ip().to_canonical(),
            Err(_) => match source.parse::<IpAddr>() {
                Ok(ip) => ip.to_canonical(),
                Err(_) => {
                    return Err(Failure::CallerRefused(format!(
                        "source address {source:?} cannot be read"
                    )))
                }
            },
        };
        if self.0.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        Err(Failure::CallerRefused(format!(
            "source {ip} is not in the configured callers"
        )))
    }
}

/// Shortest token accepted: 16 characters (e.g. 128 bits of hex would be 32).
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The `caller_token` key of the plugin configuration.
#[derive(serde::Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CallerToken {
    /// The request header that carries the token (lower-case), e.g. "x-hookgate-token".
    pub header: String,
    /// The shared secret.
    pub token: String,
}

/// Never prints the secret.
impl std::fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerToken")
            .field("header", &self.header)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl CallerToken {
    /// Checks the configuration; the error names the key at fault, never the token.
    pub fn validate(&self) -> Result<(), String> {
        if !headers::is_lowercase_name(&self.header) {
            return Err(format!(
                "caller_token.header: {:?} is not a lower-case header name",
                self.header
            ));
        }
        if headers::is_reserved(&self.header) {
            return Err(format!(
                "caller_token.header: {:?} is set or read by hookgate or Envoy",
                self.header
            ));
        }
        let length = self.token.len();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&length) {
            return Err(format!(
                "caller_token.token: must be {MIN_TOKEN_LEN}..={MAX_TOKEN_LEN} characters, got {length}"
            ));
        }
        if !self.token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(
                "caller_token.token: only visible ASCII characters (no spaces) are allowed".into(),
            );
        }
        Ok(())
    }
}

/// The caller check: Ok when no token is configured, or when the header `read` returns holds
/// exactly the token. `read` gets the header name and returns its value, if any.
pub fn check(
    expected: Option<&CallerToken>,
    read: impl FnOnce(&str) -> Option<String>,
) -> Result<(), Failure> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match read(&expected.header) {
        None => Err(Failure::CallerRefused(format!(
            "no {} header",
            expected.header
        ))),
        Some(presented) if constant_time_eq(presented.as_bytes(), expected.token.as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(Failure::CallerRefused(format!(
            "wrong {} header",
            expected.header
        ))),
    }
}

/// Equality in a time that depends only on `presented.len()`: every byte of `presented` is
/// compared (against the secret, cycled), and the length difference is folded into the result.
pub fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut difference = u64::from(presented.len() != secret.len());
    for (a, b) in presented.iter().zip(secret.iter().cycle()) {
        difference |= u64::from(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_default_to_loopback_and_judge_the_peer_address() {
        let callers = Callers::new(&default_callers()).unwrap();
        for ok in [
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(callers.check(ok), Ok(()), "{ok}");
        }
        for refused in ["10.0.0.1:5000", "[::2]:80", "", "somewhere"] {
            let failure = callers.check(refused).unwrap_err();
            assert_eq!(
                (failure.http_status(), failure.code().number()),
                (403, 21111011)
            );
        }
        let wide = Callers::new(&["10.20.0.0/16".to_string()]).unwrap();
        assert_eq!(wide.check("10.20.3.4:1"), Ok(()));
        assert!(wide.check("127.0.0.1:1").is_err());
        assert_eq!(
            Callers::new(&["127.0.0.0/8".into(), "10.0.0.1/8".into()]).unwrap_err(),
            "callers[1]: invalid CIDR \"10.0.0.1/8\" (address/prefix, no host bits)"
        );
        assert!(Callers::new(&[]).unwrap().check("127.0.0.1:1").is_err());
    }

    fn token() -> CallerToken {
        CallerToken {
            header: "x-hookgate-token".into(),
            token: "s3cret-s3cret-s3cret".into(),
        }
    }

    #[test]
    fn no_token_configured_lets_everyone_through() {
        assert_eq!(check(None, |_| None), Ok(()));
        assert_eq!(check(None, |_| Some("anything".into())), Ok(()));
    }

    #[test]
    fn the_right_token_passes() {
        let expected = token();
        let mut asked = String::new();
        let verdict = check(Some(&expected), |name| {
            asked = name.to_string();
            Some("s3cret-s3cret-s3cret".into())
        });
        assert_eq!(verdict, Ok(()));
        assert_eq!(asked, "x-hookgate-token");
    }

    #[test]
    fn missing_or_wrong_tokens_are_caller_refused_without_the_secret() {
        let expected = token();
        let presented = [
            None,
            Some(""),
            Some("s3cret-s3cret-s3cre"),
            Some("s3cret-s3cret-s3cret "),
            Some("s3cret-s3cret-s3creT"),
            Some("S3cret-s3cret-s3cret"),
            Some("s3cret-s3cret-s3crets3cret-s3cret-s3cret"),
            Some("s3cret"),
        ];
        for value in presented {
            let failure = check(Some(&expected), |_| value.map(str::to_owned)).unwrap_err();
            assert_eq!(failure.http_status(), 403, "{value:?}");
            assert_eq!(failure.code().number(), 21111011, "{value:?}");
            assert!(matches!(failure, Failure::CallerRefused(_)));
            assert!(!failure.to_string().contains("s3cret"), "{failure}");
        }
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdeg", b"abcdef"));
        assert!(!constant_time_eq(b"abcde", b"abcdef"));
        assert!(!constant_time_eq(b"abcdefabcdef", b"abcdef"));
        assert!(!constant_time_eq(b"", b"abcdef"));
        assert!(!constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let text = format!("{:?}", token());
        assert!(text.contains("x-hookgate-token"));
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn validation_names_the_key_never_the_token() {
        assert_eq!(token().validate(), Ok(()));
        let bad = [
            ("X-Token", "s3cret-s3cret-s3cret", "caller_token.header"),
            ("", "s3cret-s3cret-s3cret", "caller_token.header"),
            ("host", "s3cret-s3cret-s3cret", "caller_token.header"),
            (
                "x-envoy-token",
                "s3cret-s3cret-s3cret",
                "caller_token.header",
            ),
            (
                "x-hookgate-route",
                "s3cret-s3cret-s3cret",
                "caller_token.header",
            ),
            ("x-token", "short", "caller_token.token"),
            ("x-token", "s3cret s3cret s3cret", "caller_token.token"),
            ("x-token", "s3cret-s3cret-s3cret\n", "caller_token.token"),
        ];
        for (header, secret, key) in bad {
            let error = CallerToken {
                header: header.into(),
                token: secret.into(),
            }
            .validate()
            .unwrap_err();
            assert!(error.starts_with(key), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
