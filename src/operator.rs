//! The operators' checker (`hookgate check`, `hookgate explain`, src/bin/hookgate.rs): finds
//! hookgate's plugin configurations in an Envoy configuration and judges them and webhook URLs
//! with the filter's own code ([`Settings::parse`], [`crate::destination::DestinationPolicy`]).

use crate::config::Settings;
use crate::error::Failure;
use crate::support::{is_support_config, SupportConfig};
use serde_yaml::Value;

mod callers;

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
    walk(&value, &At::default(), &mut out);
    if out.found.is_empty() {
        return Err("no hookgate filter (a wasm filter with root_id hookgate...)".into());
    }
    Ok(out.found)
}

/// An exception as Envoy's upstream RBAC writes it: address, prefix length, inclusive port range.
type Exception = (String, u64, Option<(u64, u64)>);

/// The exceptions (`not_rule`s after the deny list) of one filter chain's upstream RBAC.
struct Guard {
    chain: String,
    exceptions: Vec<Exception>,
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

/// Where the walk is: the listener, and whether in its `default_filter_chain`.
#[derive(Clone, Default)]
struct At {
    listener: String,
    default_chain: bool,
}

impl At {
    /// `listener hookgate` or `listener hookgate, default chain`: the start of every place.
    fn chain(&self) -> String {
        if self.default_chain {
            format!("listener {}, default chain", self.listener)
        } else {
            format!("listener {}", self.listener)
        }
    }
}

fn walk(value: &Value, at: &At, out: &mut Walk) {
    let mut at = at.clone();
    if let (Some(Value::String(name)), Some(_)) = (value.get("name"), value.get("address")) {
        at = At {
            listener: name.clone(),
            default_chain: false,
        };
    }
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
            place: format!("{}, filter {filter}", at.chain()),
            root_id: root_id.to_string(),
            text,
        });
        return;
    }
    if let Some(policy) = value.get("blocked-destinations") {
        out.guards.push(Guard {
            chain: at.chain(),
            exceptions: rbac_exceptions(policy),
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
            listener: at.listener.clone(),
            networks: ranges.iter().filter_map(network).collect(),
        });
    }
    match value {
        Value::Mapping(map) => {
            for (key, v) in map {
                let inner = At {
                    default_chain: at.default_chain || key.as_str() == Some("default_filter_chain"),
                    ..at.clone()
                };
                walk(v, &inner, out);
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| walk(v, &at, out)),
        _ => {}
    }
}

/// `permissions[0].and_rules.rules[1..]`: one `not_rule` matcher per exception.
fn rbac_exceptions(policy: &Value) -> Vec<Exception> {
    let rules = policy
        .get("permissions")
        .and_then(|p| p.get(0))
        .and_then(|p| p.get("and_rules"))
        .and_then(|p| p.get("rules"))
        .and_then(Value::as_sequence);
    let matcher = |rule: &Value| {
        let config = rule.get("not_rule")?.get("matcher")?.get("typed_config")?;
        let ip = config.get("upstream_ip")?;
        let ports = config.get("upstream_port_range").map(|r| {
            let bound = |key| r.get(key).and_then(Value::as_u64).unwrap_or(0);
            (bound("start"), bound("end"))
        });
        Some((
            ip.get("address_prefix")?.as_str()?.to_string(),
            ip.get("prefix_len")?.as_u64()?,
            ports,
        ))
    };
    rules
        .map(|rules| rules.iter().skip(1).filter_map(matcher).collect())
        .unwrap_or_default()
}

/// The plugin's `destination.allow` as Envoy's RBAC would write it (a bare address is /32 or
/// /128; a port is the range port..=port).
fn plugin_exceptions(text: &str) -> Vec<Exception> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(allow) = json
        .get("destination")
        .and_then(|d| d.get("allow"))
        .and_then(|a| a.as_array())
    else {
        return Vec::new();
    };
    allow
        .iter()
        .filter_map(|rule| {
            let cidr = rule.get("cidr")?.as_str()?;
            let (address, len) = match cidr.split_once('/') {
                Some((address, len)) => (address, len.parse().ok()?),
                None => (cidr, if cidr.contains(':') { 128 } else { 32 }),
            };
            let port = rule.get("port").and_then(|p| p.as_u64()).map(|p| (p, p));
            Some((address.to_string(), len, port))
        })
        .collect()
}

fn describe_exception((address, len, ports): &Exception) -> String {
    match ports {
        Some((start, end)) if start == end => format!("{address}/{len} port {start}"),
        Some((start, end)) => format!("{address}/{len} ports {start}..={end}"),
        None => format!("{address}/{len} (every port)"),
    }
}

/// Envoy's guard before connecting must carve out exactly the plugin's exceptions.
fn check_guard(listener: &str, plugin: &[Exception], guard: &Guard, problems: &mut Vec<String>) {
    for missing in plugin.iter().filter(|e| !guard.exceptions.contains(e)) {
        problems.push(format!(
            "listener {listener}: destination.allow has {} but the upstream RBAC \
             (blocked-destinations) has no not_rule for it: names resolving there are refused \
             before connecting",
            describe_exception(missing)
        ));
    }
    for extra in guard.exceptions.iter().filter(|e| !plugin.contains(e)) {
        problems.push(format!(
            "listener {listener}: the upstream RBAC excepts {}, which destination.allow does not",
            describe_exception(extra)
        ));
    }
}

/// Every problem of a configuration file: each plugin configuration is validated by the
/// filter's own parser, and every engine-facing filter needs its check after DNS with the same
/// plugin configuration in the same filter chain, as every chain of the listener does. One line
/// per problem, naming place and key.
pub fn check(text: &str) -> Vec<String> {
    review(text).0
}

/// What is allowed but worth knowing: a caller network served under the default chain's bounds.
pub fn warnings(text: &str) -> Vec<String> {
    review(text).1
}

/// `listener hookgate` of a place (`listener hookgate, default chain, filter hookgate`).
fn listener_of(place: &str) -> &str {
    place.split(", ").next().unwrap_or_default()
}

/// The filter chain of a place: `listener hookgate` or `listener hookgate, default chain`.
fn chain_of(place: &str) -> &str {
    place
        .rsplit_once(", filter ")
        .map_or(place, |(chain, _)| chain)
}

/// (problems, warnings), each line once: chains that read one block through a YAML alias share
/// their findings.
fn review(text: &str) -> (Vec<String>, Vec<String>) {
    let found = match plugin_configs(text) {
        Ok(found) => found,
        Err(why) => return (vec![why], Vec::new()),
    };
    let mut seen = Walk::default();
    if let Ok(value) = serde_yaml::from_str::<Value>(text) {
        walk(&value, &At::default(), &mut seen);
    }
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let mut judged = Vec::new();
    for f in &found {
        let key = (listener_of(&f.place), f.root_id.as_str(), f.text.as_str());
        if judged.contains(&key) {
            continue;
        }
        judged.push(key);
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
    let engines: Vec<&Found> = found
        .iter()
        .filter(|f| f.root_id == "hookgate" && !is_support_config(f.text.as_bytes()))
        .collect();
    for engine in &engines {
        let (listener, chain) = (listener_of(&engine.place), chain_of(&engine.place));
        let after = found
            .iter()
            .find(|f| f.root_id == "hookgate-after-dns" && chain_of(&f.place) == chain);
        match after {
            None => problems.push(format!(
                "{chain}: no check after DNS (a wasm filter with root_id hookgate-after-dns in \
                 the router's upstream_http_filters)"
            )),
            Some(after) if after.text != engine.text => problems.push(format!(
                "{chain}: the check after DNS has another plugin configuration than hookgate \
                 (use the YAML alias of the same block)"
            )),
            Some(_) => {}
        }
        let first = engines.iter().find(|e| listener_of(&e.place) == listener);
        if let Some(first) = first.filter(|first| first.text != engine.text) {
            problems.push(format!(
                "{chain}: hookgate has another plugin configuration than in {}: every chain of a \
                 listener judges callers and destinations by one policy (use the YAML alias of \
                 the same block)",
                chain_of(&first.place)
            ));
        }
        let name = listener.strip_prefix("listener ").unwrap_or(listener);
        if Settings::parse(engine.text.as_bytes()).is_err() {
            // Its errors are reported above; its exceptions cannot be compared.
            continue;
        }
        if let Some(ranges) = seen.chains.iter().find(|c| c.listener == name) {
            let default_chain = format!("{listener}, default chain");
            let default_serves = engines
                .iter()
                .any(|e| chain_of(&e.place) == default_chain && e.text == engine.text);
            let (errors, notes) = callers::check(name, &engine.text, ranges, default_serves);
            problems.extend(errors);
            warnings.extend(notes);
        }
        match seen.guards.iter().find(|g| g.chain == chain) {
            Some(guard) => {
                check_guard(name, &plugin_exceptions(&engine.text), guard, &mut problems)
            }
            None => problems.push(format!(
                "{chain}: no upstream RBAC (blocked-destinations) to refuse blocked addresses \
                 before connecting"
            )),
        }
    }
    (unique(problems), unique(warnings))
}

/// The lines in their order, each once.
fn unique(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
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
              - name: guard
                typed_config:
                  rules:
                    policies:
                      blocked-destinations:
                        permissions:
                        - and_rules:
                            rules:
                            - or_rules: {rules: [deny list]}
                            - not_rule: {matcher: {typed_config: {upstream_ip: {address_prefix: 127.0.0.1, prefix_len: 32}, upstream_port_range: {start: 18080, end: 18080}}}}
              - name: hookgate-after-dns
                typed_config:
                  config:
                    root_id: hookgate-after-dns
                    configuration: *policy
"#;

    #[test]
    fn finds_both_filters_with_their_places() {
        let found = plugin_configs(ENVOY).unwrap();
        let places: Vec<&str> = found.iter().map(|f| f.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "listener engine, filter hookgate",
                "listener engine, filter hookgate-after-dns"
            ]
        );
        assert_eq!(found[0].text, found[1].text);
        assert_eq!(check(ENVOY), Vec::<String>::new());
    }

    #[test]
    fn every_error_names_its_place_and_key() {
        let bad = ENVOY.replace("127.0.0.1/32", "127.0.0.1/33");
        assert_eq!(
            check(&bad),
            [
                "listener engine, filter hookgate: destination.allow[0].cidr: invalid CIDR \"127.0.0.1/33\"",
                "listener engine, filter hookgate-after-dns: destination.allow[0].cidr: invalid CIDR \"127.0.0.1/33\"",
            ]
        );
        let second = ENVOY.replace(
            r#"{"cidr": "127.0.0.1/32", "port": 18080}"#,
            r#"{"cidr": "127.0.0.1/32", "port": 18080}, {"cidr": "127.0.0.2"}"#,
        );
        let wider = ENVOY.replace(
            r#"{"destination""#,
            r#"{"callers": ["127.0.0.0/8", "::1/128", "10.20.0.0/16"], "destination""#,
        );
        assert_eq!(
            check(&wider),
            ["listener engine: callers has 10.20.0.0/16 but the listener's filter_chain_match.source_prefix_ranges does not, and the default chain does not run hookgate with the same plugin configuration: its callers are refused"]
        );
        let narrower = ENVOY.replace(
            r#"{"destination""#,
            r#"{"callers": ["127.0.0.2/32"], "destination""#,
        );
        assert_eq!(check(&narrower), Vec::<String>::new());
        let other_port = ENVOY.replace("start: 18080, end: 18080", "start: 18081, end: 18081");
        assert_eq!(
            check(&other_port),
            [
                "listener engine: destination.allow has 127.0.0.1/32 port 18080 but the upstream RBAC (blocked-destinations) has no not_rule for it: names resolving there are refused before connecting",
                "listener engine: the upstream RBAC excepts 127.0.0.1/32 port 18081, which destination.allow does not",
            ]
        );
        assert_eq!(
            check(&second),
            ["listener engine: destination.allow has 127.0.0.2/32 (every port) but the upstream RBAC (blocked-destinations) has no not_rule for it: names resolving there are refused before connecting"]
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
        let missing = ENVOY.replace("configuration: *policy", "configuration: {value: '{}'}");
        assert_eq!(
            check(&missing),
            ["listener engine: the check after DNS has another plugin configuration than hookgate (use the YAML alias of the same block)"]
        );
        let cut = &ENVOY[..ENVOY.find("          - name: router").unwrap()];
        assert!(check(cut)[0].starts_with("listener engine: no check after DNS"));
        assert!(check("static_resources: {}")[0].starts_with("no hookgate filter"));
        let support = format!(
            "{ENVOY}  - name: support\n    address: {{}}\n    filter_chains:\n    - filters:\n      - name: hookgate-support\n        typed_config:\n          config:\n            root_id: hookgate\n            configuration: {{value: '{{\"role\": \"support\", \"surprise\": 1}}'}}\n"
        );
        let problems = check(&support);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("listener support, filter hookgate-support: "),
            "{problems:?}"
        );
    }

    /// `ENVOY` with a default chain that runs the engine chain's filters (YAML aliases).
    fn with_default_chain(envoy: &str) -> String {
        let envoy = envoy
            .replace(
                "      - name: hcm\n",
                "      - name: hcm\n        typed_config: &hcm\n",
            )
            .replacen(
                "        typed_config:\n          http_filters:",
                "          http_filters:",
                1,
            );
        format!("{envoy}    default_filter_chain:\n      filters:\n      - name: hcm\n        typed_config: *hcm\n")
    }

    #[test]
    fn a_caller_network_outside_the_engine_chain_is_served_by_the_default_chain() {
        let envoy = with_default_chain(ENVOY);
        let found = plugin_configs(&envoy).unwrap();
        assert_eq!(
            found[2].place,
            "listener engine, default chain, filter hookgate"
        );
        assert_eq!((check(&envoy), warnings(&envoy)), (vec![], vec![]));
        let wider = envoy.replace(
            r#"{"destination""#,
            r#"{"callers": ["127.0.0.0/8", "10.20.0.0/16"], "destination""#,
        );
        assert_eq!(check(&wider), Vec::<String>::new());
        assert_eq!(
            warnings(&wider),
            ["listener engine: callers has 10.20.0.0/16, which the engine chain's filter_chain_match.source_prefix_ranges does not cover: its callers are served by the default chain, under its tighter bounds (add the range to the engine chain for its bounds)"]
        );
        // One finding per listener, however many chains read the bad block.
        let bad = envoy.replace("127.0.0.1/32", "127.0.0.1/33");
        assert_eq!(
            check(&bad),
            check(&ENVOY.replace("127.0.0.1/32", "127.0.0.1/33"))
        );
        // A default chain with a policy of its own contradicts the engine chain's.
        let other = envoy.replace(
            "        typed_config: *hcm\n",
            "        typed_config:\n          http_filters:\n          - name: hookgate\n            typed_config: {config: {root_id: hookgate, configuration: {value: '{\"callers\": [\"0.0.0.0/0\"]}'}}}\n",
        );
        assert_eq!(
            check(&other),
            [
                "listener engine, default chain: no check after DNS (a wasm filter with root_id hookgate-after-dns in the router's upstream_http_filters)",
                "listener engine, default chain: hookgate has another plugin configuration than in listener engine: every chain of a listener judges callers and destinations by one policy (use the YAML alias of the same block)",
                "listener engine, default chain: no upstream RBAC (blocked-destinations) to refuse blocked addresses before connecting",
            ]
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
