//! `state`: where the limit and verification state live, whichever backend keeps them.

use serde::Deserialize;

/// `state`: where the limit and verification state live.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `local` (proxy-wasm shared data, one state per Envoy) or `etcd` (one state per fleet).
    pub backend: Backend,
    /// The Envoy cluster that reaches etcd's client port.
    pub cluster: String,
    /// Timeout of one call to etcd, in milliseconds (1..=10000).
    pub timeout_ms: u32,
    /// First part of every key (1..=128 of `A-Z a-z 0-9 . _ - /`, no leading or trailing `/`).
    pub prefix: String,
    /// What a send gets when etcd fails or is slow: `deny` (503, 21111011, nothing sent).
    pub on_failure: OnFailure,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Local,
    Etcd,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Deny,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: Backend::Local,
            cluster: "etcd".to_string(),
            timeout_ms: 500,
            prefix: "hookgate".to_string(),
            on_failure: OnFailure::Deny,
        }
    }
}

impl StateConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty()
            || self.cluster.len() > 256
            || !self.cluster.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("state.cluster: must be 1..=256 printable characters".to_string());
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err(format!(
                "state.timeout_ms: must be 1..=10000, got {}",
                self.timeout_ms
            ));
        }
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 128
            || p.starts_with('/')
            || p.ends_with('/')
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        {
            return Err(
                "state.prefix: must be 1..=128 characters of A-Z a-z 0-9 . _ - /, without a \
                 leading or trailing /"
                    .to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_config_defaults_and_validation() {
        let config: StateConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, StateConfig::default());
        assert_eq!(config.backend, Backend::Local);
        assert_eq!(
            (
                config.cluster.as_str(),
                config.timeout_ms,
                config.prefix.as_str()
            ),
            ("etcd", 500, "hookgate")
        );
        let config: StateConfig = serde_json::from_str(
            r#"{"backend":"etcd","cluster":"etcd-fleet","timeout_ms":250,"prefix":"a/b","on_failure":"deny"}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert!(serde_json::from_str::<StateConfig>(r#"{"backend":"redis"}"#).is_err());
        assert!(serde_json::from_str::<StateConfig>(r#"{"on_failure":"allow"}"#).is_err());
        assert!(serde_json::from_str::<StateConfig>(r#"{"surprise":1}"#).is_err());
        for (edit, key) in [
            (json!({"timeout_ms": 0}), "state.timeout_ms"),
            (json!({"timeout_ms": 10001}), "state.timeout_ms"),
            (json!({"cluster": ""}), "state.cluster"),
            (json!({"cluster": "a b"}), "state.cluster"),
            (json!({"prefix": ""}), "state.prefix"),
            (json!({"prefix": "/a"}), "state.prefix"),
            (json!({"prefix": "a/"}), "state.prefix"),
            (json!({"prefix": "a b"}), "state.prefix"),
        ] {
            let config: StateConfig = serde_json::from_value(edit).unwrap();
            assert!(config.validate().unwrap_err().starts_with(key));
        }
    }
}
