//! Standard Webhooks signatures (standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
//! `webhook-signature: v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`, one per
//! secret, space-separated (rotation). Pure: no host calls; SHA-256 (FIPS 180-4) and HMAC
//! (RFC 2104) are written here, a page of code instead of two crates in the filter.

use crate::base64;
use crate::error::Failure;
use std::collections::BTreeMap;

/// The headers signing sets (Standard Webhooks); no static header may be one of them.
pub const HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// A secret's written form: `whsec_` and the base64 of its bytes.
const PREFIX: &str = "whsec_";
/// The spec asks for 24 to 64 random bytes.
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
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
        let bytes = base64::decode(encoded).ok_or("is not whsec_ and standard base64")?;
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
        .map(|secret| format!("v1,{}", base64::encode(&hmac_sha256(&secret.0, &parts))))
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

/// The engine's own idempotency key for an event, when it has one: a signed webhook carries it as
/// its `webhook-id`, so a resend of the same event keeps its id (README, "Signed webhooks").
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The engine's `idempotency-key` among the request's headers, checked for every webhook, signed
/// or not: at most one header, 1 to 128 of `A-Z a-z 0-9 _ - :`; else the event is refused.
pub fn idempotency_key(headers: &[(&[u8], &[u8])]) -> Result<Option<String>, Failure> {
    let mut keys = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(IDEMPOTENCY_HEADER.as_bytes()));
    let Some((_, key)) = keys.next() else {
        return Ok(None);
    };
    if keys.next().is_some() {
        return Err(Failure::InvalidEvent(format!(
            "{IDEMPOTENCY_HEADER} header given more than once"
        )));
    }
    match std::str::from_utf8(key) {
        Ok(key) if is_valid_id(key) => Ok(Some(key.to_owned())),
        _ => Err(Failure::InvalidEvent(format!(
            "{IDEMPOTENCY_HEADER} header: 1 to 128 of A-Z a-z 0-9 _ - :"
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
    let digest: String = sha256(&[node.as_bytes()])
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{readable}-{digest}")
}

// ---- HMAC-SHA256 (RFC 2104 over FIPS 180-4) ----

const BLOCK: usize = 64;

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        for (b, k) in block.iter_mut().zip(sha256(&[key])) {
            *b = k;
        }
    } else {
        for (b, k) in block.iter_mut().zip(key) {
            *b = *k;
        }
    }
    let ipad = block.map(|b| b ^ 0x36);
    let opad = block.map(|b| b ^ 0x5c);
    let mut inner = Sha256::new();
    inner.update(&ipad);
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finish();
    sha256(&[&opad, &inner])
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finish()
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

struct Sha256 {
    state: [u32; 8],
    /// Bytes not yet compressed (fewer than 64).
    pending: Vec<u8>,
    length: u64,
}

impl Sha256 {
    fn new() -> Self {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            pending: Vec::with_capacity(BLOCK),
            length: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() < BLOCK {
                return;
            }
            let block = std::mem::take(&mut self.pending);
            compress(&mut self.state, &block);
            self.pending = block;
            self.pending.clear();
        }
        let blocks = data.chunks_exact(BLOCK);
        let rest = blocks.remainder();
        for block in blocks {
            compress(&mut self.state, block);
        }
        self.pending.extend_from_slice(rest);
    }

    fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = vec![0x80u8];
        let used = (self.pending.len() + 1) % BLOCK;
        let zeros = (BLOCK + BLOCK - 8 - used) % BLOCK;
        tail.resize(1 + zeros, 0);
        tail.extend_from_slice(&bits.to_be_bytes());
        let length = self.length;
        self.update(&tail);
        self.length = length;
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

fn compress(state: &mut [u32; 8], block: &[u8]) {
    let mut w: Vec<u32> = block
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])))
        .collect();
    let at = |w: &[u32], i: usize| w.get(i).copied().unwrap_or(0);
    for i in 16..64 {
        let (w15, w2) = (at(&w, i - 15), at(&w, i - 2));
        let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
        let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
        w.push(
            at(&w, i - 16)
                .wrapping_add(s0)
                .wrapping_add(at(&w, i - 7))
                .wrapping_add(s1),
        );
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (k, wi) in K.iter().zip(&w) {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(*k)
            .wrapping_add(*wi);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_matches_fips_180_vectors() {
        assert_eq!(
            hex(&sha256(&[b""])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex(&sha256(&[two_blocks])),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // The same bytes in uneven pieces, and a million 'a's.
        let pieces: Vec<&[u8]> = two_blocks.chunks(7).collect();
        assert_eq!(sha256(&pieces), sha256(&[two_blocks]));
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha256(&[&million])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_vectors() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 test case 6).
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
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
        let new = Secret::parse(&format!("whsec_{}", base64::encode(&[7u8; 32]))).unwrap();
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
            &format!("whsec_{}", base64::encode(&[1u8; 65])),
        ] {
            let error = Secret::parse(bad).unwrap_err();
            assert!(!error.contains(bad), "{error}");
        }
        assert!(Secret::parse(&format!("whsec_{}", base64::encode(&[1u8; 24]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", base64::encode(&[1u8; 64]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", base64::encode(&[1u8; 23]))).is_err());
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
        let other = format!("whsec_{}", base64::encode(&[9u8; 24]));
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
            assert_eq!(
                key(&[(IDEMPOTENCY_HEADER, good)]),
                Ok(Some(good.to_string()))
            );
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
            let refused = key(&[(IDEMPOTENCY_HEADER, bad)]).unwrap_err();
            assert_eq!(refused.code().number(), 21111011, "{bad:?}");
            assert_eq!(refused.http_status(), 400, "{bad:?}");
        }
        let twice = key(&[(IDEMPOTENCY_HEADER, "a"), ("Idempotency-Key", "a")]).unwrap_err();
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
