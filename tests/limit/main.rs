//! End to end: the hourly limit of unverified webhooks and their verification by key,
//! through a real Envoy with several workers. What the receiver got and what the engine got back.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../support/mod.rs"]
mod support;

mod first_sends;
mod give_back;
mod namespaces;
mod reload;

use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use support::{http, EnvoyConfig, Gateway, Reply};

const ALLOW_LOOPBACK: &str = r#"{"allow":[{"cidr":"127.0.0.1/32"}]}"#;

/// The production configuration with the loopback exception and this `limit` section.
fn config(limit: &Value) -> EnvoyConfig {
    let plugin = json!({
        "destination": serde_json::from_str::<Value>(ALLOW_LOOPBACK).unwrap(),
        "limit": limit,
    });
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(&plugin.to_string())
}

/// Envoy with two workers, so that one limit must hold across threads.
fn gateway(limit: &Value) -> Gateway {
    Gateway::start_with(config(limit), 2, support::DECISION_LINES)
}

/// The hookgate filters under `value`: the engine-facing one and the check after DNS.
fn hookgate_filters(value: &mut Yaml) -> Vec<&mut Yaml> {
    if matches!(
        value.get("name").and_then(Yaml::as_str),
        Some("hookgate" | "hookgate-after-dns")
    ) && value.get("typed_config").is_some()
    {
        return vec![value];
    }
    match value {
        Yaml::Mapping(map) => map.values_mut().flat_map(hookgate_filters).collect(),
        Yaml::Sequence(seq) => seq.iter_mut().flat_map(hookgate_filters).collect(),
        _ => Vec::new(),
    }
}

/// Sets the plugin configuration of the hookgate filters under `value`.
fn set_plugin_config(value: &mut Yaml, plugin: &Value) {
    let filters = hookgate_filters(value);
    assert!(!filters.is_empty());
    for filter in filters {
        filter["typed_config"]["config"]["configuration"]["value"] =
            Yaml::String(plugin.to_string());
    }
}

fn plugin_with(limit: &Value, extra: &[(&str, Value)]) -> Value {
    let mut plugin = json!({
        "destination": serde_json::from_str::<Value>(ALLOW_LOOPBACK).unwrap(),
        "limit": limit,
    });
    for (key, value) in extra {
        plugin[*key] = value.clone();
    }
    plugin
}

fn test_report(gw: &Gateway, body: &str) -> (Reply, Value) {
    let reply = gw.post_with(body, &[("x-hookgate-test", "true")]);
    let report = reply.json();
    (reply, report)
}

fn post_to(port: u16, body: &str) -> Reply {
    http::post(port, "/", body.as_bytes(), &[]).unwrap()
}
