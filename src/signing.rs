//! Standard Webhooks signatures (standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
//! `webhook-signature: v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`, one per
//! secret, space-separated (rotation). Pure: no host calls; HMAC-SHA256 from the `hmac-sha256` crate
//! (the one svix and the Standard Webhooks Rust library use), base64 from `base64`.

use crate::error::Failure;
use crate::headers::IDEMPOTENCY_KEY;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use std::collections::BTreeMap;

/// The headers signing sets (Standard Webhooks); no static header may be one of them.
pub const HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// A secret's written form: `whsec_` and the base64 of its bytes.
const PREFIX: &str = "whsec_";
/// The spec asks for 24 to 64 random bytes.
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
/// Secrets are standard base64, with or without their padding.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Several secrets per webhook are for rotation; a handful is plenty.
const MAX_SECRETS: usize = 8;

/// The plugin configuration's `signing` key.
#[derive(serde::Deserialize, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Secrets per webhook name (the event's `webhook.name`).
    pub secrets: BTreeMap<String, Vec<String>>,
    /// Secrets for every webhook name not in `secrets`; none: those webhooks go unsigned.
    pub default_secrets: Vec<String>,
}

/// Never shows a secret: only which names have how many.
impl std::fmt::Debug for SigningConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: BTreeMap<&str, usize> = self
            .secrets
            .iter()
            .map(|(name, list)| (name.as_str(), list.len()))
            .collect();
        f.debug_struct("SigningConfig")
            .field("secrets", &names)
            .field("default_secrets", &self.default_secrets.len())
            .finish()
    }
}

/// One decoded secret; its Debug shows nothing of it.
#[derive(Clone, PartialEq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(redacted, {} bytes)", self.0.len())
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (24..=64 bytes). The error never contains the text.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("does not start with {PREFIX:?}"))?;
        let bytes = SECRET_BASE64
            .decode(encoded)
            .map_err(|_| "is not whsec_ and standard base64")?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "must decode to {MIN_SECRET_BYTES}..={MAX_SECRET_BYTES} bytes, got {}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }
}

/// The validated signing policy: decoded secrets per webhook name.
#[derive(Debug, Default)]
pub struct Signer {
    by_name: BTreeMap<String, Vec<Secret>>,
    default: Vec<Secret>,
}

impl Signer {
    /// Validates `signing`; errors name the key (`signing.secrets.<name>[i]`), never the secret.
    pub fn new(config: &SigningConfig) -> Result<Signer, String> {
        let parse_list = |key: &str, list: &[String]| -> Result<Vec<Secret>, String> {
            if list.len() > MAX_SECRETS {
                return Err(format!("{key}: at most {MAX_SECRETS} secrets"));
            }
            list.iter()
                .enumerate()
                .map(|(i, text)| Secret::parse(text).map_err(|e| format!("{key}[{i}]: {e}")))
                .collect()
        };
        let mut by_name = BTreeMap::new();
        for (name, list) in &config.secrets {
            let key = format!("signing.secrets.{name}");
            if name.is_empty() {
                return Err("signing.secrets: an empty webhook name".into());
            }
            if list.is_empty() {
                return Err(format!("{key}: at least one secret"));
            }
            by_name.insert(name.clone(), parse_list(&key, list)?);
        }
        let default = parse_list("signing.default_secrets", &config.default_secrets)?;
        Ok(Signer { by_name, default })
    }

    /// The secrets that sign a webhook of this name; empty: it goes unsigned.
    pub fn secrets_for(&self, name: &str) -> &[Secret] {
        self.by_name.get(name).map_or(&self.default, Vec::as_slice)
    }

    pub fn is_enabled(&self) -> bool {
        !self.by_name.is_empty() || !self.default.is_empty()
    }
}

/// The `webhook-signature` value: `v1,<base64>` per secret, space-separated.
pub fn signature(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    secrets
        .iter()
        .map(|secret| {
            let mut mac = hmac_sha256::HMAC::new(&secret.0);
            for part in parts {
                mac.update(part);
            }
            format!("v1,{}", STANDARD.encode(mac.finalize()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a text may be a `webhook-id` (the spec's ids are printable; hookgate also bounds the
/// length and keeps out the `.` that separates the signed parts' fields, and spaces).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

/// The engine's `idempotency-key` among the request's headers, checked for every webhook, signed
/// or not: at most one header, 1 to 128 of `A-Z a-z 0-9 _ - :`; else the event is refused.
pub fn idempotency_key(headers: &[(&[u8], &[u8])]) -> Result<Option<String>, Failure> {
    let mut keys = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(IDEMPOTENCY_KEY.as_bytes()));
    let Some((_, key)) = keys.next() else {
        return Ok(None);
    };
    if keys.next().is_some() {
        return Err(Failure::InvalidEvent(format!(
            "{IDEMPOTENCY_KEY} header given more than once"
        )));
    }
    match std::str::from_utf8(key) {
        Ok(key) if is_valid_id(key) => Ok(Some(key.to_owned())),
        _ => Err(Failure::InvalidEvent(format!(
            "{IDEMPOTENCY_KEY} header: 1 to 128 of A-Z a-z 0-9 _ - :"
        ))),
    }
}

/// `msg_` + the host's time in nanoseconds + this Envoy's node + this worker's counter, all
/// hex: no random source needed. Unique because (node, worker context, counter) never repeats
/// within one Envoy process and the nanosecond time moves on across restarts (see README).
/// `node` is the node id as `id_node` spells it.
pub fn make_id(now_nanos: u64, node: &str, worker: u32, counter: u64) -> String {
    format!("msg_{now_nanos:x}_{node}_{worker:x}_{counter:x}")
}

/// The longest node id that goes into webhook ids unchanged.
const NODE_MAX: usize = 48;

/// Envoy's node id as it goes into webhook ids: unchanged when it is at most 48 of
/// `A-Z a-z 0-9 -`; otherwise its first 31 bytes with every other byte as `-`, then `-` and the
/// first 16 hex digits of the SHA-256 of the whole node id, so that two node ids keep apart
/// however they are spelt (`_` separates the id's fields, `.` is outside the id charset).
pub fn id_node(node: &str) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    if node.len() <= NODE_MAX && node.bytes().all(allowed) {
        return node.to_string();
    }
    let readable: String = node
        .bytes()
        .take(31)
        .map(|b| if allowed(b) { char::from(b) } else { '-' })
        .collect();
    let digest: String = hmac_sha256::Hash::hash(node.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{readable}-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn the_specs_test_vector_reproduces() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            signature(&[secret], SPEC_ID, 1649367553, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn several_secrets_give_space_separated_signatures_in_order() {
        let old = Secret::parse(SPEC_SECRET).unwrap();
        let new = Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let both = signature(&[new.clone(), old.clone()], SPEC_ID, 1649367553, SPEC_BODY);
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[new], SPEC_ID, 1649367553, SPEC_BODY));
        assert_eq!(parts[1], SPEC_SIGNATURE);
        // Any change to id, time or body changes the signature.
        let old = [old];
        assert_ne!(
            signature(&old, SPEC_ID, 1649367554, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_ne!(
            signature(&old, "msg_x", 1649367553, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_ne!(signature(&old, SPEC_ID, 1649367553, b"{}"), SPEC_SIGNATURE);
        assert_eq!(signature(&[], SPEC_ID, 1, b""), "");
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        for bad in [
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_not*base64",
            "whsec_c2hvcnQ=",
            &format!("whsec_{}", STANDARD.encode([1u8; 65])),
        ] {
            let error = Secret::parse(bad).unwrap_err();
            assert!(!error.contains(bad), "{error}");
        }
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 24]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 64]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 23]))).is_err());
        // Padding may be left out: 25 bytes are 36 characters with "==", 34 without.
        let padded = STANDARD.encode([1u8; 25]);
        assert_eq!(padded.len(), 36);
        let unpadded = Secret::parse(&format!("whsec_{}", padded.trim_end_matches('=')));
        assert_eq!(unpadded, Secret::parse(&format!("whsec_{padded}")));
        assert!(unpadded.is_ok());
        let config = SigningConfig {
            secrets: BTreeMap::from([("orders".into(), vec![SPEC_SECRET.into()])]),
            default_secrets: vec![SPEC_SECRET.into()],
        };
        let signer = Signer::new(&config).unwrap();
        for shown in [format!("{config:?}"), format!("{signer:?}")] {
            assert!(!shown.contains("C2FVsBQ"), "{shown}");
            assert!(!shown.contains(&hex(&Secret::parse(SPEC_SECRET).unwrap().0)));
        }
    }

    #[test]
    fn secrets_apply_by_name_then_default() {
        let other = format!("whsec_{}", STANDARD.encode([9u8; 24]));
        let config = SigningConfig {
            secrets: BTreeMap::from([("orders".into(), vec![SPEC_SECRET.into(), other.clone()])]),
            default_secrets: vec![],
        };
        let signer = Signer::new(&config).unwrap();
        assert_eq!(signer.secrets_for("orders").len(), 2);
        assert!(signer.secrets_for("invoices").is_empty());
        assert!(signer.is_enabled());
        let with_default = Signer::new(&SigningConfig {
            default_secrets: vec![other],
            ..config
        })
        .unwrap();
        assert_eq!(with_default.secrets_for("invoices").len(), 1);
        assert!(!Signer::new(&SigningConfig::default()).unwrap().is_enabled());
    }

    #[test]
    fn errors_name_the_key_not_the_secret() {
        let config = SigningConfig {
            secrets: BTreeMap::from([("orders".into(), vec!["whsec_c2hvcnQ=".into()])]),
            default_secrets: vec![],
        };
        let error = Signer::new(&config).unwrap_err();
        assert!(error.starts_with("signing.secrets.orders[0]"), "{error}");
        assert!(!error.contains("c2hvcnQ"), "{error}");
        let error = Signer::new(&SigningConfig {
            secrets: BTreeMap::from([("orders".into(), vec![])]),
            default_secrets: vec!["nope".into()],
        })
        .unwrap_err();
        assert!(error.starts_with("signing.secrets.orders"), "{error}");
        let error = Signer::new(&SigningConfig {
            secrets: BTreeMap::new(),
            default_secrets: vec!["nope".into()],
        })
        .unwrap_err();
        assert!(error.starts_with("signing.default_secrets[0]"), "{error}");
    }

    #[test]
    fn ids_are_valid_and_differ() {
        let a = make_id(1_700_000_000_000_000_000, &id_node("envoy-1.example"), 3, 0);
        let b = make_id(1_700_000_000_000_000_000, &id_node("envoy-1.example"), 3, 1);
        assert_ne!(a, b);
        assert!(a.starts_with("msg_"));
        assert!(is_valid_id(&a), "{a}");
        assert!(is_valid_id(&make_id(1, &id_node("we\"ird node\n"), 0, 0)));
        assert!(is_valid_id(&make_id(
            u64::MAX,
            &id_node(&"n".repeat(500)),
            u32::MAX,
            u64::MAX
        )));
        assert!(!is_valid_id("a.b"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id(&"x".repeat(129)));
    }

    #[test]
    fn one_idempotency_key_rule_for_every_webhook() {
        let key = |headers: &[(&str, &str)]| {
            let pairs: Vec<(&[u8], &[u8])> = headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            idempotency_key(&pairs)
        };
        assert_eq!(key(&[("content-type", "application/json")]), Ok(None));
        let longest = "k".repeat(128);
        for good in ["evt_2024-01:42", "A", longest.as_str()] {
            assert_eq!(key(&[(IDEMPOTENCY_KEY, good)]), Ok(Some(good.to_string())));
        }
        let too_long = "k".repeat(129);
        for bad in [
            "",
            "has space",
            "semi;colon",
            "dot.ted",
            "é",
            too_long.as_str(),
        ] {
            let refused = key(&[(IDEMPOTENCY_KEY, bad)]).unwrap_err();
            assert_eq!(refused.code().number(), 21111011, "{bad:?}");
            assert_eq!(refused.http_status(), 400, "{bad:?}");
        }
        let twice = key(&[(IDEMPOTENCY_KEY, "a"), ("Idempotency-Key", "a")]).unwrap_err();
        assert_eq!(twice.http_status(), 400);
        assert!(twice.to_string().contains("more than once"), "{twice}");
    }

    #[test]
    fn node_ids_keep_apart_in_webhook_ids() {
        assert_eq!(id_node("hf-fleet-1"), "hf-fleet-1");
        assert_eq!(id_node(""), "");
        assert_eq!(id_node(&"a".repeat(48)), "a".repeat(48));
        // Spelt differently, never the same form; the readable part stays.
        let dotted = id_node("envoy-1.example");
        assert!(dotted.starts_with("envoy-1-example-"), "{dotted}");
        assert_eq!(dotted.len(), "envoy-1-example-".len() + 16);
        assert_ne!(dotted, id_node("envoy-1-example"));
        assert_ne!(id_node("a_b"), id_node("a.b"));
        assert_ne!(id_node("é"), id_node("è"));
        let long = id_node(&"a".repeat(49));
        assert_eq!(long.len(), 31 + 1 + 16, "{long}");
        assert_ne!(long, id_node(&"a".repeat(50)));
        for node in [
            "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local",
            "we\"ird node\n",
            "é",
        ] {
            let form = id_node(node);
            assert!(
                form.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{form}"
            );
        }
    }
}
