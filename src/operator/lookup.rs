//! Whether hookgate's webhooks can be sent to an IPv6 address: the DNS lookup family of the
//! forward proxy their routes use. For an IPv4 address Envoy's guard before connecting applies
//! the whole plugin policy; an IPv6 one also needs the check after DNS (configured IPv6
//! `deny_cidrs`, ISATAP interface ids), so that check is required wherever a lookup can return
//! IPv6, and optional where every lookup is `V4_ONLY`.

use serde_yaml::Value;

/// The forward proxy's cluster type and its `@type`s (cluster, HTTP filter).
const DFP_CLUSTER: &str = "envoy.clusters.dynamic_forward_proxy";
const DFP_CLUSTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig";
const DFP_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig";

/// One DNS lookup of the forward proxy: a cluster's (its sub-clusters' `dns_lookup_family`, or
/// its `dns_cache_config`'s) or a chain's forward-proxy filter's DNS cache.
pub(super) struct Lookup {
    /// The cluster's name, or None for a filter's DNS cache.
    cluster: Option<String>,
    /// The filter chain of a filter's DNS cache.
    chain: Option<String>,
    /// Where the family is read, e.g. `cluster webhooks` or `cluster webhooks, dns_cache_config`
    /// (a filter's: in its chain).
    place: String,
    /// The `dns_lookup_family` as written (None: not set).
    family: Option<Value>,
}

impl Lookup {
    /// Only `V4_ONLY` (1) returns IPv4 addresses alone. Not set, Envoy 1.40 looks IPv6 up too
    /// (measured, sub-clusters and DNS cache alike: an AAAA-only name was connected to).
    fn ipv4_only(&self) -> bool {
        match &self.family {
            Some(Value::String(family)) => family == "V4_ONLY",
            Some(number) => number.as_u64() == Some(1),
            None => false,
        }
    }

    fn described(&self) -> String {
        match &self.family {
            Some(Value::String(family)) => {
                format!("{} has dns_lookup_family: {family}", self.place)
            }
            Some(other) => format!(
                "{} has dns_lookup_family: {}",
                self.place,
                serde_json::to_string(other).unwrap_or_default()
            ),
            None => format!(
                "{} sets no dns_lookup_family (Envoy then looks up IPv6 too)",
                self.place
            ),
        }
    }
}

/// Whether a filter chain's webhooks need the check after DNS.
#[derive(Debug, PartialEq)]
pub(super) enum Need {
    /// Every forward-proxy lookup of its routes is `V4_ONLY`: the guard judges every address.
    Optional,
    /// These lookups can return IPv6 addresses (each described, with its place).
    Ipv6(Vec<String>),
    /// No forward-proxy cluster of its routes was found (routes from RDS, say): nothing shows
    /// that IPv6 is never looked up.
    Unknown,
}

/// What the walk records for lookups: the forward proxy's clusters and filters, and which
/// clusters each filter chain's routes name.
#[derive(Default)]
pub(super) struct Lookups {
    lookups: Vec<Lookup>,
    /// (filter chain, cluster) for every route of a chain.
    routes: Vec<(String, String)>,
}

impl Lookups {
    /// Records what `value` (any node of the configuration, in filter chain `chain`) adds.
    pub(super) fn record(&mut self, value: &Value, chain: &str) {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        if let Some(cluster) = value.get("route").and_then(|r| text(r.get("cluster"))) {
            self.routes.push((chain.to_string(), cluster));
        }
        let typed = value.get("typed_config");
        let of_type = |t: &str| text(typed.and_then(|t| t.get("@type"))).as_deref() == Some(t);
        let cache =
            |config: Option<&Value>| config.and_then(|c| c.get("dns_cache_config")).cloned();
        let family = |config: &Value| config.get("dns_lookup_family").cloned();
        if of_type(DFP_FILTER_TYPE)
            || text(value.get("name")).as_deref()
                == Some("envoy.filters.http.dynamic_forward_proxy")
        {
            // A filter in sub-cluster mode looks nothing up itself: its cluster's sub-clusters do.
            if let Some(cache) = cache(typed) {
                self.lookups.push(Lookup {
                    cluster: None,
                    chain: Some(chain.to_string()),
                    place: "the forward-proxy filter's dns_cache_config".into(),
                    family: family(&cache),
                });
            }
        }
        let cluster_type = value.get("cluster_type");
        let dfp_config = cluster_type.and_then(|c| c.get("typed_config"));
        let is_dfp = text(cluster_type.and_then(|c| c.get("name"))).as_deref() == Some(DFP_CLUSTER)
            || text(dfp_config.and_then(|t| t.get("@type"))).as_deref() == Some(DFP_CLUSTER_TYPE);
        if let (true, Some(name)) = (is_dfp, text(value.get("name"))) {
            let (place, family) = match cache(dfp_config) {
                Some(cache) => (format!("cluster {name}, dns_cache_config"), family(&cache)),
                None => (format!("cluster {name}"), family(value)),
            };
            self.lookups.push(Lookup {
                cluster: Some(name),
                chain: None,
                place,
                family,
            });
        }
    }

    /// The lookups of a chain's webhooks: the forward-proxy clusters its routes name and its
    /// forward-proxy filter's DNS cache.
    fn of_chain<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Lookup> {
        self.lookups.iter().filter(move |l| {
            l.chain.as_deref() == Some(chain)
                || l.cluster.as_ref().is_some_and(|cluster| {
                    self.routes
                        .iter()
                        .any(|(c, named)| c == chain && named == cluster)
                })
        })
    }

    /// Whether a chain's webhooks need the check after DNS.
    pub(super) fn need(&self, chain: &str) -> Need {
        let lookups: Vec<&Lookup> = self.of_chain(chain).collect();
        let ipv6: Vec<String> = lookups
            .iter()
            .filter(|l| !l.ipv4_only())
            .map(|l| l.described())
            .collect();
        match (lookups.is_empty(), ipv6.is_empty()) {
            (true, _) => Need::Unknown,
            (false, true) => Need::Optional,
            (false, false) => Need::Ipv6(ipv6),
        }
    }
}
