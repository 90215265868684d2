//! The check after DNS is required where the forward proxy can return IPv6 addresses, and
//! optional where every lookup of the engine's routes is `V4_ONLY`.

use super::*;

const ROUTES: &str = "          route_config:
            virtual_hosts:
            - routes:
              - route: {cluster: webhooks}
";

const CLUSTERS: &str = "  clusters:
  - name: webhooks
    FAMILY
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config: {sub_clusters_config: {}}
";

/// The fixture with its route to the forward-proxy cluster `webhooks`, whose `dns_lookup_family`
/// line is `family` (empty: not set), and `after_dns` in the router's upstream filters.
fn routed(after_dns: &str, family: &str) -> String {
    format!("{}{}", listener(after_dns), clusters(family))
}

/// The fixture's listener, its route to `webhooks` and `after_dns` in the router's upstream
/// filters.
fn listener(after_dns: &str) -> String {
    ENVOY
        .replace("GUARD", &guard_rules().to_string())
        .replace("AFTER_DNS", &format!("{after_dns}{ROUTES}"))
        .replace("MATCHER", &after_dns_matcher().to_string())
}

fn clusters(family: &str) -> String {
    CLUSTERS.replace("FAMILY", family)
}

fn wrapped() -> String {
    WRAPPED.replace("MATCHER", &after_dns_matcher().to_string())
}

fn missing(lookups: &str) -> String {
    format!("listener engine: {lookups}: IPv6 addresses need the check after DNS, which is missing (Envoy's guard cannot judge them by the whole policy): add it in its matcher to the router's upstream_http_filters as docs/security.md shows (\"Looking up IPv6\"), or set dns_lookup_family: V4_ONLY")
}

fn review(text: &str) -> (Vec<String>, Vec<String>) {
    (check(text), warnings(text))
}

#[test]
fn the_check_after_dns_is_optional_where_the_forward_proxy_looks_up_ipv4_only() {
    let none: (Vec<String>, Vec<String>) = (vec![], vec![]);
    for family in ["dns_lookup_family: V4_ONLY", "dns_lookup_family: 1"] {
        assert_eq!(review(&routed("", family)), none, "{family}");
        assert_eq!(review(&routed(&wrapped(), family)), none, "{family}");
        // Unwrapped it runs on every try: allowed, with the warning it always had.
        let unwrapped = review(&routed(UNWRAPPED, family));
        assert_eq!(unwrapped.0, Vec::<String>::new());
        assert_eq!(unwrapped.1.len(), 1);
        assert!(
            unwrapped.1[0].starts_with("listener engine: the check after DNS runs on every try")
        );
    }
    // Present, it is still checked: its plugin configuration is the engine filter's.
    let other = routed(&wrapped(), "dns_lookup_family: V4_ONLY")
        .replace("configuration: *policy", "configuration: {value: '{}'}");
    assert_eq!(
        check(&other),
        ["listener engine: the check after DNS has another plugin configuration than hookgate (use the YAML alias of the same block)"]
    );
}

#[test]
fn a_lookup_that_can_return_ipv6_needs_the_check_after_dns() {
    assert_eq!(
        check(&routed("", "dns_lookup_family: ALL")),
        [missing("cluster webhooks has dns_lookup_family: ALL")]
    );
    assert_eq!(
        check(&routed("", "")),
        [missing(
            "cluster webhooks sets no dns_lookup_family (Envoy then looks up IPv6 too)"
        )]
    );
    for family in ["ALL", "V4_PREFERRED", "AUTO", "V6_ONLY", "4"] {
        let line = format!("dns_lookup_family: {family}");
        assert_eq!(
            check(&routed("", &line)),
            [missing(&format!("cluster webhooks has {line}"))]
        );
        assert_eq!(review(&routed(&wrapped(), &line)), (vec![], vec![]));
        assert_eq!(check(&routed(UNWRAPPED, &line)), Vec::<String>::new());
    }
}

#[test]
fn a_dns_cache_is_judged_on_the_cluster_and_on_the_filter() {
    let cached = |cluster: &str, filter: &str| {
        routed("", "")
            .replace(
                "typed_config: {sub_clusters_config: {}}",
                &format!("typed_config: {{dns_cache_config: {{name: c{cluster}}}}}"),
            )
            .replace(
                "          - name: router\n",
                &format!("          - name: envoy.filters.http.dynamic_forward_proxy\n            typed_config: {{dns_cache_config: {{name: c{filter}}}}}\n          - name: router\n"),
            )
    };
    let v4 = ", dns_lookup_family: V4_ONLY";
    assert_eq!(review(&cached(v4, v4)), (vec![], vec![]));
    assert_eq!(
        check(&cached(v4, ", dns_lookup_family: ALL")),
        [missing(
            "the forward-proxy filter's dns_cache_config has dns_lookup_family: ALL"
        )]
    );
    assert_eq!(
        check(&cached("", v4)),
        [missing("cluster webhooks, dns_cache_config sets no dns_lookup_family (Envoy then looks up IPv6 too)")]
    );
}

/// Routes to no forward-proxy cluster hookgate can see (another cluster, or none) show nothing
/// about IPv6: the check after DNS stays required.
#[test]
fn without_a_forward_proxy_cluster_of_its_routes_the_check_after_dns_is_required() {
    let elsewhere = routed("", "dns_lookup_family: V4_ONLY")
        .replace("route: {cluster: webhooks}", "route: {cluster: other}");
    assert_eq!(
        check(&elsewhere),
        ["listener engine: no check after DNS (a wasm filter with root_id hookgate-after-dns in the router's upstream_http_filters)"]
    );
    // Every chain of the listener is judged by its own routes (here one block, by alias).
    let chains = with_default_chain(&listener("")) + &clusters("dns_lookup_family: V4_PREFERRED");
    let line = "cluster webhooks has dns_lookup_family: V4_PREFERRED";
    assert_eq!(
        check(&chains),
        [
            missing(line),
            missing(line).replace("listener engine:", "listener engine, default chain:")
        ]
    );
    let v4 = with_default_chain(&listener("")) + &clusters("dns_lookup_family: V4_ONLY");
    assert_eq!(review(&v4), (vec![], vec![]));
}
