//! The operators' checker (`hookgate check`, `hookgate explain`, src/bin/hookgate.rs): finds
//! hookgate's plugin configurations in an Envoy configuration and judges them and webhook URLs
//! with the filter's own code ([`Settings::parse`], [`crate::destination::DestinationPolicy`]).

use crate::config::Settings;
use crate::destination::guard_rules;
use crate::error::Failure;
use crate::support::{is_support_config, SupportConfig};
use serde_yaml::Value;

/// The name of the router's upstream filter that guards before connecting.
const GUARD_FILTER: &str = "envoy.filters.http.upstream_rbac";

/// Where a plugin configuration was found, and its text.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// e.g. `listener hookgate, filter hookgate-after-dns`.
    pub place: String,
    pub root_id: String,
    pub text: String,
}

/// Every hookgate wasm filter of an Envoy configuration (a wasm filter whose root id starts with
/// `hookgate`), or, when the text is not an Envoy configuration, the text itself as one plugin
/// configuration (JSON).
pub fn plugin_configs(text: &str) -> Result<Vec<Found>, String> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    if value.get("static_resources").is_none() {
        return Ok(vec![Found {
            place: "plugin configuration".into(),
            root_id: String::new(),
            text: text.to_string(),
        }]);
    }
    let mut out = Walk::default();
    walk(&value, "", &mut out);
    if out.found.is_empty() {
        return Err("no hookgate filter (a wasm filter with root_id hookgate...)".into());
    }
    Ok(out.found)
}

/// A listener's upstream RBAC (the guard before connecting): its `rules`, as JSON.
struct Guard {
    listener: String,
    rules: serde_json::Value,
}

/// The source networks a listener's filter chain is chosen for (`source_prefix_ranges`).
struct Chain {
    listener: String,
    networks: Vec<(String, u64)>,
}

/// What a walk over an Envoy configuration finds.
#[derive(Default)]
struct Walk {
    found: Vec<Found>,
    guards: Vec<Guard>,
    chains: Vec<Chain>,
}

fn walk(value: &Value, listener: &str, out: &mut Walk) {
    let listener = match (value.get("name"), value.get("address")) {
        (Some(Value::String(name)), Some(_)) => name.as_str(),
        _ => listener,
    };
    let config = value.get("typed_config").and_then(|t| t.get("config"));
    let root_id = config
        .and_then(|c| c.get("root_id"))
        .and_then(Value::as_str)
        .filter(|r| r.starts_with("hookgate"));
    if let Some(root_id) = root_id {
        let filter = value.get("name").and_then(Value::as_str).unwrap_or("?");
        let plugin = config
            .and_then(|c| c.get("configuration"))
            .and_then(|c| c.get("value"));
        let text = match plugin {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => serde_json::to_string(other).unwrap_or_default(),
        };
        out.found.push(Found {
            place: format!("listener {listener}, filter {filter}"),
            root_id: root_id.to_string(),
            text,
        });
        return;
    }
    if value.get("name").and_then(Value::as_str) == Some(GUARD_FILTER) {
        let rules = value.get("typed_config").and_then(|t| t.get("rules"));
        out.guards.push(Guard {
            listener: listener.to_string(),
            rules: rules
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or_default(),
        });
        return;
    }
    let ranges = value
        .get("filter_chain_match")
        .and_then(|m| m.get("source_prefix_ranges"))
        .and_then(Value::as_sequence);
    if let Some(ranges) = ranges {
        let network = |r: &Value| {
            Some((
                r.get("address_prefix")?.as_str()?.to_string(),
                r.get("prefix_len")?.as_u64()?,
            ))
        };
        out.chains.push(Chain {
            listener: listener.to_string(),
            networks: ranges.iter().filter_map(network).collect(),
        });
    }
    match value {
        Value::Mapping(map) => map.values().for_each(|v| walk(v, listener, out)),
        Value::Sequence(seq) => seq.iter().for_each(|v| walk(v, listener, out)),
        _ => {}
    }
}

/// The engine's filter chain must be chosen for every network of the plugin's `callers`: one only
/// in `callers` is refused by the default chain. (A network only in the chain is refused by
/// hookgate, with the same envelope: narrowing `callers` alone is enough.)
fn check_chain(listener: &str, plugin: &str, chain: &Chain, problems: &mut Vec<String>) {
    let callers: Vec<String> = serde_json::from_str::<serde_json::Value>(plugin)
        .ok()
        .and_then(|json| json.get("callers").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_else(crate::caller::default_callers);
    let as_network = |cidr: &str| match cidr.split_once('/') {
        Some((address, len)) => (address.to_string(), len.parse().unwrap_or(0)),
        None => (cidr.to_string(), if cidr.contains(':') { 128 } else { 32 }),
    };
    let callers: Vec<(String, u64)> = callers.iter().map(|c| as_network(c)).collect();
    // A network of `callers` is covered by a chain range that holds its first address and is
    // no narrower.
    let covered = |(address, len): &(String, u64)| {
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            return false;
        };
        chain.networks.iter().any(|(range, range_len)| {
            range_len <= len
                && crate::cidr::parse_cidr(&format!("{range}/{range_len}"))
                    .is_some_and(|net| net.contains(ip))
        })
    };
    for (address, len) in callers.iter().filter(|c| !covered(c)) {
        problems.push(format!(
            "listener {listener}: callers has {address}/{len} but the listener's \
             filter_chain_match.source_prefix_ranges does not: its callers get the default chain"
        ));
    }
}

/// Envoy's guard before connecting is plumbing: exactly the rules hookgate feeds (the built-in
/// deny list and the two conditions reading hookgate's pseudo-headers). Policy edited there
/// (an exception as a `not_rule`, a range added or removed) would disagree with the plugin.
fn check_guard(listener: &str, guard: &Guard, problems: &mut Vec<String>) {
    if guard.rules != guard_rules() {
        problems.push(format!(
            "listener {listener}: the upstream RBAC ({GUARD_FILTER}) differs from hookgate's \
             guard: its rules are plumbing, copy them unchanged from a shipped envoy/*.yaml and \
             put exceptions and deny CIDRs in the plugin configuration (destination.allow, \
             destination.deny_cidrs)"
        ));
    }
}

/// Every problem of a configuration file: each plugin configuration is validated by the
/// filter's own parser, and every engine-facing filter needs its check after DNS with the same
/// plugin configuration in the same listener. One line per problem, naming place and key.
pub fn check(text: &str) -> Vec<String> {
    let found = match plugin_configs(text) {
        Ok(found) => found,
        Err(why) => return vec![why],
    };
    let mut seen = Walk::default();
    if let Ok(value) = serde_yaml::from_str::<Value>(text) {
        walk(&value, "", &mut seen);
    }
    let mut problems = Vec::new();
    for f in &found {
        // A support listener's filter (`"role": "support"`) is read as the filter reads it.
        let verdict = if is_support_config(f.text.as_bytes()) {
            SupportConfig::parse(f.text.as_bytes()).map(|_| ())
        } else {
            Settings::parse(f.text.as_bytes()).map(|_| ())
        };
        if let Err(why) = verdict {
            problems.push(format!("{}: {why}", f.place));
        }
    }
    let engines = found
        .iter()
        .filter(|f| f.root_id == "hookgate" && !is_support_config(f.text.as_bytes()));
    for engine in engines {
        let listener = engine.place.split(", ").next().unwrap_or_default();
        let after = found
            .iter()
            .find(|f| f.root_id == "hookgate-after-dns" && f.place.starts_with(listener));
        match after {
            None => problems.push(format!(
                "{listener}: no check after DNS (a wasm filter with root_id hookgate-after-dns in \
                 the router's upstream_http_filters)"
            )),
            Some(after) if after.text != engine.text => problems.push(format!(
                "{listener}: the check after DNS has another plugin configuration than hookgate \
                 (use the YAML alias of the same block)"
            )),
            Some(_) => {}
        }
        let name = listener.strip_prefix("listener ").unwrap_or(listener);
        if Settings::parse(engine.text.as_bytes()).is_err() {
            // Its errors are reported above; its exceptions cannot be compared.
            continue;
        }
        if let Some(chain) = seen.chains.iter().find(|c| c.listener == name) {
            check_chain(name, &engine.text, chain, &mut problems);
        }
        match seen.guards.iter().find(|g| g.listener == name) {
            Some(guard) => check_guard(name, guard, &mut problems),
            None => problems.push(format!(
                "{listener}: no upstream RBAC ({GUARD_FILTER}) to refuse blocked addresses \
                 before connecting"
            )),
        }
    }
    problems
}

/// The decision for a webhook URL before DNS, and for each given resolved address after DNS.
/// Ok(lines) when every decision could be made; the bool tells whether the webhook is sent.
pub fn explain(settings: &Settings, url: &str, resolved: &[String]) -> (bool, Vec<String>) {
    let describe = |failure: &Failure| {
        format!(
            "refused: {} {} ({}) {failure}",
            failure.http_status(),
            failure.code().number(),
            failure.code().message()
        )
    };
    let destination = match settings.destinations.check(url) {
        Ok(destination) => destination,
        Err(failure) => {
            let mut lines = vec![format!("before DNS: {}", describe(&failure))];
            if !resolved.is_empty() {
                lines.push("after DNS: not reached (refused before DNS)".into());
            }
            return (false, lines);
        }
    };
    let mut lines = vec![format!(
        "before DNS: allowed, sent to {} as {}",
        destination.authority, destination.url
    )];
    let port = destination
        .authority
        .rsplit_once(':')
        .map_or("", |(_, port)| port);
    let mut sent = true;
    for address in resolved {
        let socket = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        match settings
            .destinations
            .check_resolved(&destination.host, &socket)
        {
            Ok(()) => lines.push(format!("after DNS {socket}: allowed")),
            Err(failure) => {
                sent = false;
                lines.push(format!("after DNS {socket}: {}", describe(&failure)));
            }
        }
    }
    (sent, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = r#"
static_resources:
  listeners:
  - name: engine
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filter_chain_match:
        source_prefix_ranges:
        - {address_prefix: 127.0.0.0, prefix_len: 8}
        - {address_prefix: "::1", prefix_len: 128}
      filters:
      - name: hcm
        typed_config:
          http_filters:
          - name: hookgate
            typed_config:
              config:
                root_id: hookgate
                configuration: &policy
                  value: |
                    {"destination": {"allow": [{"cidr": "127.0.0.1/32", "port": 18080}]}}
          - name: router
            typed_config:
              upstream_http_filters:
              - name: envoy.filters.http.upstream_rbac
                typed_config:
                  rules: GUARD
              - name: hookgate-after-dns
                typed_config:
                  config:
                    root_id: hookgate-after-dns
                    configuration: *policy
"#;

    /// The fixture with the shipped guard's rules (JSON is YAML's flow style).
    fn envoy() -> String {
        ENVOY.replace("GUARD", &guard_rules().to_string())
    }

    #[test]
    fn finds_both_filters_with_their_places() {
        let found = plugin_configs(&envoy()).unwrap();
        let places: Vec<&str> = found.iter().map(|f| f.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "listener engine, filter hookgate",
                "listener engine, filter hookgate-after-dns"
            ]
        );
        assert_eq!(found[0].text, found[1].text);
        assert_eq!(check(&envoy()), Vec::<String>::new());
    }

    #[test]
    fn every_error_names_its_place_and_key() {
        let bad = envoy().replace("127.0.0.1/32", "127.0.0.1/33");
        assert_eq!(
            check(&bad),
            [
                "listener engine, filter hookgate: destination.allow[0].cidr: invalid CIDR \"127.0.0.1/33\"",
                "listener engine, filter hookgate-after-dns: destination.allow[0].cidr: invalid CIDR \"127.0.0.1/33\"",
            ]
        );
        let second = envoy().replace(
            r#"{"cidr": "127.0.0.1/32", "port": 18080}"#,
            r#"{"cidr": "127.0.0.1/32", "port": 18080}, {"cidr": "127.0.0.2"}"#,
        );
        let wider = envoy().replace(
            r#"{"destination""#,
            r#"{"callers": ["127.0.0.0/8", "::1/128", "10.20.0.0/16"], "destination""#,
        );
        assert_eq!(
            check(&wider),
            ["listener engine: callers has 10.20.0.0/16 but the listener's filter_chain_match.source_prefix_ranges does not: its callers get the default chain"]
        );
        let narrower = envoy().replace(
            r#"{"destination""#,
            r#"{"callers": ["127.0.0.2/32"], "destination""#,
        );
        assert_eq!(check(&narrower), Vec::<String>::new());
        // Policy written into Envoy's guard instead of the plugin: the guard is plumbing.
        let edited = envoy().replace(r#""prefix_len":8}"#, r#""prefix_len":9}"#);
        assert_eq!(
            check(&edited),
            ["listener engine: the upstream RBAC (envoy.filters.http.upstream_rbac) differs from hookgate's guard: its rules are plumbing, copy them unchanged from a shipped envoy/*.yaml and put exceptions and deny CIDRs in the plugin configuration (destination.allow, destination.deny_cidrs)"]
        );
        let without = envoy().replace("envoy.filters.http.upstream_rbac", "other");
        assert_eq!(
            check(&without),
            ["listener engine: no upstream RBAC (envoy.filters.http.upstream_rbac) to refuse blocked addresses before connecting"]
        );
        assert_eq!(check(&second), Vec::<String>::new());
        let ipv6 = envoy().replace(
            r#"{"cidr": "127.0.0.1/32", "port": 18080}"#,
            r#"{"cidr": "fd00::1"}"#,
        );
        assert_eq!(
            check(&ipv6),
            [
                "listener engine, filter hookgate: destination.allow[0].cidr: IPv6 exceptions are not supported: Envoy's guard before connecting matches IPv4 exceptions only",
                "listener engine, filter hookgate-after-dns: destination.allow[0].cidr: IPv6 exceptions are not supported: Envoy's guard before connecting matches IPv4 exceptions only",
            ]
        );
        let typo = check(r#"{"destination": {"alow": []}}"#);
        assert_eq!(typo.len(), 1);
        assert!(
            typo[0].starts_with("plugin configuration: destination.alow: unknown field"),
            "{typo:?}"
        );
        let port = check(r#"{"destination": {"allow": [{"cidr": "127.0.0.1/32", "port": "x"}]}}"#);
        assert!(
            port[0].contains("destination.allow[0].port: invalid type"),
            "{port:?}"
        );
        let missing = envoy().replace("configuration: *policy", "configuration: {value: '{}'}");
        assert_eq!(
            check(&missing),
            ["listener engine: the check after DNS has another plugin configuration than hookgate (use the YAML alias of the same block)"]
        );
        let cut = &ENVOY[..ENVOY.find("          - name: router").unwrap()];
        assert!(check(cut)[0].starts_with("listener engine: no check after DNS"));
        assert!(check("static_resources: {}")[0].starts_with("no hookgate filter"));
        let support = format!(
            "{}  - name: support\n    address: {{}}\n    filter_chains:\n    - filters:\n      - name: hookgate-support\n        typed_config:\n          config:\n            root_id: hookgate\n            configuration: {{value: '{{\"role\": \"support\", \"surprise\": 1}}'}}\n",
            envoy()
        );
        let problems = check(&support);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("listener support, filter hookgate-support: "),
            "{problems:?}"
        );
    }

    #[test]
    fn explains_before_and_after_dns() {
        let settings = Settings::parse(
            br#"{"destination": {"allow": [{"cidr": "127.0.0.1/32", "port": 18080}]}}"#,
        )
        .unwrap();
        let (sent, lines) = explain(
            &settings,
            "http://receiver.test:18080/hook",
            &["127.0.0.1".into(), "10.1.2.3".into()],
        );
        assert!(!sent);
        assert_eq!(
            lines,
            [
                "before DNS: allowed, sent to receiver.test:18080 as http://receiver.test:18080/hook",
                "after DNS 127.0.0.1:18080: allowed",
                "after DNS 10.1.2.3:18080: refused: 403 11110114 (Incorrect url ip) destination blocked: \"receiver.test\" resolved: 10.1.2.3 is in 10.0.0.0/8 (private)"
            ]
        );
        let (sent, lines) = explain(&settings, "http://169.254.169.254/", &["1.1.1.1".into()]);
        assert!(!sent);
        assert_eq!(lines[0], "before DNS: refused: 403 11110114 (Incorrect url ip) destination blocked: 169.254.169.254 is in 169.254.0.0/16 (link-local)");
        assert_eq!(lines[1], "after DNS: not reached (refused before DNS)");
        let (sent, _) = explain(&settings, "https://example.com/", &["93.184.216.34".into()]);
        assert!(sent);
    }
}
