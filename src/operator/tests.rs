use super::*;

mod lookup;

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
AFTER_DNS"#;

/// The check after DNS in hookgate's matcher, as docs/security.md shows it.
const WRAPPED: &str = r#"              - name: hookgate-after-dns-unless-ipv4
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher
                  xds_matcher: MATCHER
                  extension_config:
                    name: hookgate-after-dns
                    typed_config:
                      config:
                        root_id: hookgate-after-dns
                        configuration: *policy
"#;

/// The check after DNS alone, as written before the matcher.
const UNWRAPPED: &str = r#"              - name: hookgate-after-dns
                typed_config:
                  config:
                    root_id: hookgate-after-dns
                    configuration: *policy
"#;

/// The fixture with the shipped guard's rules and matcher (JSON is YAML's flow style).
fn envoy() -> String {
    ENVOY
        .replace("GUARD", &guard_rules().to_string())
        .replace("AFTER_DNS", WRAPPED)
        .replace("MATCHER", &after_dns_matcher().to_string())
}

#[test]
fn the_check_after_dns_is_skipped_by_hookgates_matcher_alone() {
    assert_eq!((check(&envoy()), warnings(&envoy())), (vec![], vec![]));
    // Unwrapped, as written before the matcher: it runs on every try; allowed, with a warning.
    let unwrapped = envoy().replace(
        &WRAPPED.replace("MATCHER", &after_dns_matcher().to_string()),
        UNWRAPPED,
    );
    assert_eq!(plugin_configs(&unwrapped).unwrap().len(), 2);
    assert_eq!(check(&unwrapped), Vec::<String>::new());
    assert_eq!(
        warnings(&unwrapped),
        ["listener engine: the check after DNS runs on every try, IPv4 addresses included, which the guard before connecting already judges: wrap it as docs/security.md shows (\"Looking up IPv6\": its matcher skips it for IPv4 addresses), to spare a wasm call per delivery"]
    );
    // A route's own matcher would replace it.
    let per_route = envoy().replace(
        "          - name: router\n",
        "          - name: router\n            typed_per_filter_config: {hookgate-after-dns-unless-ipv4: {}}\n",
    );
    assert_eq!(
        check(&per_route),
        ["listener engine: a route's typed_per_filter_config names hookgate-after-dns-unless-ipv4, the matcher around the check after DNS: its matcher is plumbing, remove that entry"]
    );
    // Any other matcher could skip it where it alone judges (here: every address).
    let wider = envoy().replace(r#"{"string_value":":"}"#, r#"{"string_value":"~"}"#);
    assert_ne!(wider, envoy());
    assert_eq!(
        check(&wider),
        ["listener engine: the matcher around the check after DNS differs from hookgate's: it is plumbing (it skips the check for IPv4 addresses alone, which the guard judges), copy it unchanged from docs/security.md (\"Looking up IPv6\")"]
    );
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
        ["listener engine: callers has 10.20.0.0/16 but the listener's filter_chain_match.source_prefix_ranges does not, and the default chain does not run hookgate with the same plugin configuration: its callers are refused"]
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
        r#"{"cidr": "fd00::/64"}"#,
    );
    assert_eq!(
        check(&ipv6),
        [
            "listener engine, filter hookgate: destination.allow[0].cidr: an IPv6 exception must be one address (/128): Envoy's guard before connecting matches IPv6 addresses by their exact text",
            "listener engine, filter hookgate-after-dns: destination.allow[0].cidr: an IPv6 exception must be one address (/128): Envoy's guard before connecting matches IPv6 addresses by their exact text",
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
    let chains = with_default_chain(&envoy());
    let found = plugin_configs(&chains).unwrap();
    assert_eq!(
        found[2].place,
        "listener engine, default chain, filter hookgate"
    );
    assert_eq!((check(&chains), warnings(&chains)), (vec![], vec![]));
    let wider = chains.replace(
        r#"{"destination""#,
        r#"{"callers": ["127.0.0.0/8", "10.20.0.0/16"], "destination""#,
    );
    assert_eq!(check(&wider), Vec::<String>::new());
    assert_eq!(
        warnings(&wider),
        ["listener engine: callers has 10.20.0.0/16, which the engine chain's filter_chain_match.source_prefix_ranges does not cover: its callers are served by the default chain, under its tighter bounds (add the range to the engine chain for its bounds)"]
    );
    // One finding per listener, however many chains read the bad block.
    let bad = chains.replace("127.0.0.1/32", "127.0.0.1/33");
    assert_eq!(
        check(&bad),
        check(&envoy().replace("127.0.0.1/32", "127.0.0.1/33"))
    );
    // A default chain with a policy of its own contradicts the engine chain's.
    let other = chains.replace(
        "        typed_config: *hcm\n",
        "        typed_config:\n          http_filters:\n          - name: hookgate\n            typed_config: {config: {root_id: hookgate, configuration: {value: '{\"callers\": [\"0.0.0.0/0\"]}'}}}\n",
    );
    assert_eq!(
        check(&other),
        [
            "listener engine, default chain: no check after DNS (a wasm filter with root_id hookgate-after-dns in the router's upstream_http_filters)",
            "listener engine, default chain: hookgate has another plugin configuration than in listener engine: every chain of a listener judges callers and destinations by one policy (use the YAML alias of the same block)",
            "listener engine, default chain: no upstream RBAC (envoy.filters.http.upstream_rbac) to refuse blocked addresses before connecting",
        ]
    );
}
