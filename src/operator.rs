//! The operators' checker (`hookgate check`, `hookgate explain`, src/bin/hookgate.rs): finds
//! hookgate's plugin configurations in an Envoy configuration and judges them and webhook URLs
//! with the filter's own code ([`Settings::parse`], [`crate::destination::DestinationPolicy`]).

use crate::config::Settings;
use crate::destination::{after_dns_matcher, guard_rules, AFTER_DNS_ROOT_ID as AFTER_DNS};
use crate::support::{is_support_config, SupportConfig};
use serde_yaml::Value;

mod callers;
mod explain;
mod lookup;

pub use explain::explain;

/// The name of the router's upstream filter that guards before connecting.
const GUARD_FILTER: &str = "envoy.filters.http.upstream_rbac";
/// The type of the wrapper that skips the check after DNS where the guard suffices.
const WRAPPER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher";

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

/// One filter chain's upstream RBAC (the guard before connecting): its `rules`, as JSON.
struct Guard {
    chain: String,
    rules: serde_json::Value,
}

/// One filter chain's wrapper around the check after DNS: its `typed_config` but the wrapped
/// filter, as JSON.
struct Wrapper {
    chain: String,
    name: String,
    typed_config: serde_json::Value,
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
    wrappers: Vec<Wrapper>,
    /// The filter names routes give a configuration of their own (`typed_per_filter_config`).
    per_route: Vec<String>,
    chains: Vec<Chain>,
    /// The forward proxy's DNS lookups, and the clusters each chain's routes name.
    lookups: lookup::Lookups,
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
    record_wrapper(value, &at, out);
    out.lookups.record(value, &at.chain());
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
    if value.get("name").and_then(Value::as_str) == Some(GUARD_FILTER) {
        let rules = value.get("typed_config").and_then(|t| t.get("rules"));
        out.guards.push(Guard {
            chain: at.chain(),
            rules: rules
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or_default(),
        });
        return;
    }
    if let Some(Value::Mapping(per_route)) = value.get("typed_per_filter_config") {
        out.per_route.extend(
            per_route
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
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

/// A filter whose `typed_config` wraps the check after DNS (`extension_config`) is recorded; the
/// walk goes on inside it and finds the wrapped filter.
fn record_wrapper(value: &Value, at: &At, out: &mut Walk) {
    let Some(Value::Mapping(typed)) = value.get("typed_config") else {
        return;
    };
    let wrapped_root = typed
        .get("extension_config")
        .and_then(|e| e.get("typed_config"))
        .and_then(|t| t.get("config"))
        .and_then(|c| c.get("root_id"))
        .and_then(Value::as_str);
    if wrapped_root != Some(AFTER_DNS) {
        return;
    }
    let mut typed = typed.clone();
    typed.remove("extension_config");
    out.wrappers.push(Wrapper {
        chain: at.chain(),
        name: value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        typed_config: serde_json::to_value(&typed).unwrap_or_default(),
    });
}

/// The check after DNS is skipped by hookgate's matcher alone (for IPv4 addresses, which the
/// guard judges whole): another matcher could skip it where only it judges (IPv6). Without a
/// wrapper (configurations written before it) the check runs on every try: correct, and a
/// warning, as it costs a wasm call per delivery that the guard makes unnecessary.
fn check_wrapper(
    chain: &str,
    wrapper: Option<&Wrapper>,
    per_route: &[String],
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    // A route's own matcher (ExtensionWithMatcherPerRoute) would replace the documented one.
    if let Some(w) = wrapper.filter(|w| per_route.contains(&w.name)) {
        problems.push(format!(
            "{chain}: a route's typed_per_filter_config names {}, the matcher around the check \
             after DNS: its matcher is plumbing, remove that entry",
            w.name
        ));
    }
    let expected = serde_json::json!({"@type": WRAPPER_TYPE, "xds_matcher": after_dns_matcher()});
    match wrapper {
        None => warnings.push(format!(
            "{chain}: the check after DNS runs on every try, IPv4 addresses included, which the \
             guard before connecting already judges: wrap it as docs/security.md shows \
             (\"Looking up IPv6\": its matcher skips it for IPv4 addresses), to spare a wasm \
             call per delivery"
        )),
        Some(w) if w.typed_config != expected => problems.push(format!(
            "{chain}: the matcher around the check after DNS differs from hookgate's: it is \
             plumbing (it skips the check for IPv4 addresses alone, which the guard judges), \
             copy it unchanged from docs/security.md (\"Looking up IPv6\")"
        )),
        Some(_) => {}
    }
}

/// Envoy's guard before connecting is plumbing: exactly the rules hookgate feeds (the built-in
/// deny list and the two conditions reading hookgate's pseudo-headers). Policy edited there
/// (an exception as a `not_rule`, a range added or removed) would disagree with the plugin.
fn check_guard(chain: &str, guard: &Guard, problems: &mut Vec<String>) {
    if guard.rules != guard_rules() {
        problems.push(format!(
            "{chain}: the upstream RBAC ({GUARD_FILTER}) differs from hookgate's guard: its rules \
             are plumbing, copy them unchanged from a shipped envoy/*.yaml and put exceptions \
             and deny CIDRs in the plugin configuration (destination.allow, \
             destination.deny_cidrs)"
        ));
    }
}

/// Every problem of a configuration file: each plugin configuration is validated by the
/// filter's own parser; every engine-facing filter whose webhooks may go to IPv6 addresses (a
/// forward-proxy lookup of its routes other than `V4_ONLY`, or none found) needs its check after
/// DNS, and a check after DNS has the same plugin configuration in the same filter chain, as
/// every chain of the listener does. One line per problem, naming place and key.
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
            .find(|f| f.root_id == AFTER_DNS && chain_of(&f.place) == chain);
        match (after, seen.lookups.need(chain)) {
            (None, lookup::Need::Optional) => {}
            (None, lookup::Need::Unknown) => problems.push(format!(
                "{chain}: no check after DNS (a wasm filter with root_id {AFTER_DNS} in the \
                 router's upstream_http_filters)"
            )),
            (None, lookup::Need::Ipv6(lookups)) => problems.push(format!(
                "{chain}: {}: IPv6 addresses need the check after DNS, which is missing (Envoy's \
                 guard cannot judge them by the whole policy): add it in its matcher to the \
                 router's upstream_http_filters as docs/security.md shows (\"Looking up IPv6\"), \
                 or set dns_lookup_family: V4_ONLY",
                lookups.join("; ")
            )),
            (Some(after), _) if after.text != engine.text => problems.push(format!(
                "{chain}: the check after DNS has another plugin configuration than hookgate \
                 (use the YAML alias of the same block)"
            )),
            (Some(_), _) => {
                let wrapper = seen.wrappers.iter().find(|w| w.chain == chain);
                check_wrapper(
                    chain,
                    wrapper,
                    &seen.per_route,
                    &mut problems,
                    &mut warnings,
                );
            }
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
            Some(guard) => check_guard(chain, guard, &mut problems),
            None => problems.push(format!(
                "{chain}: no upstream RBAC ({GUARD_FILTER}) to refuse blocked addresses before \
                 connecting"
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

#[cfg(test)]
mod tests;
