//! The `limit` section of the configuration, and the [`Limiter`] it makes (refused when a value
//! is out of range).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Limiter, BUCKET_ENTRIES};

const MAX_UNVERIFIED_PER_HOUR: u32 = 1000;
const MAX_VERIFIED_PER_HOUR: u32 = 10_000;
const MAX_TRACKED: u32 = 1_000_000;
const MAX_NAMESPACE_LEN: usize = 64;

/// The `limit` section of the configuration.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Sends allowed in any rolling hour before verification: 1..=1000, default 1.
    pub unverified_per_hour: u32,
    /// Sends allowed in any rolling hour once verified: 1..=10000; unset = unlimited.
    pub verified_per_hour: Option<u32>,
    /// Expected verification key per webhook name.
    pub keys: BTreeMap<String, String>,
    /// Expected key for names not in `keys`.
    pub default_key: Option<String>,
    /// Top-level field of the receiver's JSON answer that carries the key, default "key".
    pub key_field: String,
    /// Webhooks verified before this configuration (e.g. restored after a `vm_id` change).
    pub verified: Vec<VerifiedWebhook>,
    /// Webhooks the table can track: 1..=1000000, default 10000.
    pub max_tracked: u32,
    /// Two configurations in one `vm_id` share state iff they have the same namespace.
    pub namespace: String,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            unverified_per_hour: 1,
            verified_per_hour: None,
            keys: BTreeMap::new(),
            default_key: None,
            key_field: "key".to_string(),
            verified: Vec::new(),
            max_tracked: 10_000,
            namespace: "default".to_string(),
        }
    }
}

/// A webhook known to be verified; `url` is compared after normalisation.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VerifiedWebhook {
    pub name: String,
    pub url: String,
}

impl Limiter {
    pub fn new(config: &LimitConfig) -> Result<Self, String> {
        if !(1..=MAX_UNVERIFIED_PER_HOUR).contains(&config.unverified_per_hour) {
            return Err(format!(
                "limit.unverified_per_hour: must be 1..={MAX_UNVERIFIED_PER_HOUR}"
            ));
        }
        if let Some(v) = config.verified_per_hour {
            if !(1..=MAX_VERIFIED_PER_HOUR).contains(&v) {
                return Err(format!(
                    "limit.verified_per_hour: must be 1..={MAX_VERIFIED_PER_HOUR}, or absent for unlimited"
                ));
            }
        }
        if !(1..=MAX_TRACKED).contains(&config.max_tracked) {
            return Err(format!("limit.max_tracked: must be 1..={MAX_TRACKED}"));
        }
        if config.key_field.is_empty() {
            return Err("limit.key_field: must not be empty".to_string());
        }
        for (name, key) in &config.keys {
            if name.is_empty() {
                return Err("limit.keys: a webhook name must not be empty".to_string());
            }
            if key.is_empty() {
                return Err(format!("limit.keys.{name}: the key must not be empty"));
            }
        }
        if config.default_key.as_deref() == Some("") {
            return Err("limit.default_key: must not be empty".to_string());
        }
        let ns = &config.namespace;
        if ns.is_empty()
            || ns.len() > MAX_NAMESPACE_LEN
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "limit.namespace: must be 1..={MAX_NAMESPACE_LEN} characters of A-Z a-z 0-9 . _ -"
            ));
        }
        let mut pre_verified = BTreeSet::new();
        for (index, webhook) in config.verified.iter().enumerate() {
            if webhook.name.is_empty() {
                return Err(format!("limit.verified[{index}].name: must not be empty"));
            }
            let mut url = url::Url::parse(&webhook.url)
                .map_err(|e| format!("limit.verified[{index}].url: {e}"))?;
            url.set_fragment(None);
            pre_verified.insert((webhook.name.clone(), String::from(url)));
        }
        Ok(Limiter {
            unverified_per_hour: config.unverified_per_hour,
            verified_per_hour: config.verified_per_hour,
            keys: config.keys.clone(),
            default_key: config.default_key.clone(),
            key_field: config.key_field.clone(),
            pre_verified,
            max_tracked: config.max_tracked,
            buckets: config.max_tracked.div_ceil(BUCKET_ENTRIES),
            namespace: config.namespace.clone(),
        })
    }
}
