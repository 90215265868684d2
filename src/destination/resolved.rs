//! The check after DNS: the address the connection goes to, judged by the same policy.
//!
//! The forward proxy resolves a webhook's host and picks one address; hookgate, running a second
//! time as an upstream filter of the forward-proxy route, reads that address (Envoy's
//! `upstream.address`, `ip:port`) and judges it here exactly as an IP literal in the URL would be
//! judged: refused by a deny range unless an exception names the address (and its port). A name
//! that resolves to loopback, a rebinding answer, or the blocked half of a mixed answer is
//! refused this way, before a byte of the webhook is sent. Envoy's own refusal of such an
//! address (its upstream RBAC, before connecting) is named here too
//! ([`DestinationPolicy::resolved_refusal`]).

use super::{quote, DestinationPolicy};
use crate::error::Failure;
use std::net::SocketAddr;

/// The `response.code_details` of the upstream check's refusal, and the response header that
/// carries its detail to the engine-facing filter (which rewrites every header of the answer).
pub const REFUSED_AFTER_DNS: &str = "hookgate_refused_after_dns";
/// (Not `x-hookgate-detail`: Envoy's local-reply mappers overwrite that one.)
pub const REFUSAL_DETAIL_HEADER: &str = "x-hookgate-refusal";

/// The root id that selects the check after DNS (hookgate's upstream filter) in the plugin's
/// `config` (envoy/*.yaml); `hookgate check` finds it by this id too.
pub const AFTER_DNS_ROOT_ID: &str = "hookgate-after-dns";

/// The matcher that wraps the check after DNS where IPv6 is looked up (an
/// `ExtensionWithMatcher`'s `xds_matcher`, docs/security.md; plumbing, compared by `hookgate
/// check`): it skips the filter when the picked host's address is IPv4,
/// `upstream.address >= "0" && upstream.address < ":"` (Envoy writes an IPv4 address
/// `a.b.c.d:port`, the only form that starts with a digit).
/// For IPv4 the guard before connecting already enforces the whole plugin policy (the built-in
/// list, the configured deny_cidrs, the exceptions); what it cannot express is IPv6 (configured
/// IPv6 deny_cidrs, ISATAP interface ids), so the check after DNS runs for every other address,
/// and when the condition fails to evaluate (no match: the filter runs).
pub fn after_dns_matcher() -> serde_json::Value {
    use serde_json::json;
    let address = json!({"select_expr": {"operand": {"ident_expr": {"name": "upstream"}}, "field": "address"}});
    let compare = |function: &str, bound: &str| json!({"call_expr": {"function": function, "args": [address, {"const_expr": {"string_value": bound}}]}});
    let ipv4 = json!({"call_expr": {"function": "_&&_", "args": [compare("_>=_", "0"), compare("_<_", ":")]}});
    json!({"matcher_list": {"matchers": [{
        "predicate": {"single_predicate": {
            "input": {
                "name": "envoy.matching.inputs.cel_data_input",
                "typed_config": {"@type": "type.googleapis.com/xds.type.matcher.v3.HttpAttributesCelMatchInput"}
            },
            "custom_match": {
                "name": "envoy.matching.matchers.cel_matcher",
                "typed_config": {
                    "@type": "type.googleapis.com/xds.type.matcher.v3.CelMatcher",
                    "expr_match": {"cel_expr_parsed": {"expr": ipv4}}
                }
            }
        }},
        "on_match": {"action": {
            "name": "skip",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}
        }}
    }]}})
}

/// The engine-facing filter's reading of a reply Envoy made: the upstream check's refusal, with
/// its detail, or None for any other reply.
pub fn refused_after_dns(
    code_details: &str,
    detail: impl FnOnce() -> Option<String>,
) -> Option<Failure> {
    (code_details == REFUSED_AFTER_DNS).then(|| {
        Failure::BlockedDestination(
            detail().unwrap_or_else(|| "the resolved address is refused".to_string()),
        )
    })
}

impl DestinationPolicy {
    /// Judges the address the forward proxy picked for `host`, as Envoy writes it (`ip:port`,
    /// `[v6]:port`). An address that cannot be read is refused: what cannot be judged is not sent.
    pub fn check_resolved(&self, host: &str, address: &str) -> Result<(), Failure> {
        let Ok(socket) = address.parse::<SocketAddr>() else {
            return Err(Failure::BlockedDestination(format!(
                "{} resolved to {}, which is not an address hookgate can judge",
                quote(host),
                quote(address)
            )));
        };
        self.judge_literal(socket.ip(), socket.port())
            .map_err(|why| match why {
                Failure::BlockedDestination(detail) => {
                    Failure::BlockedDestination(format!("{} resolved: {detail}", quote(host)))
                }
                other => other,
            })
    }

    /// The failure for an address Envoy's upstream RBAC refused after resolving a name, given the
    /// address as Envoy reports it (`ip:port`, IPv6 in brackets): names the most specific listed
    /// range holding it, as a CIDR-only enforcer sees the list (embedding ranges whole). None
    /// when the text is no address or no range holds it.
    pub fn resolved_refusal(&self, upstream_address: &str) -> Option<Failure> {
        let ip = upstream_address.parse::<SocketAddr>().ok()?.ip();
        let range = self.deny_match(ip, |_| true)?;
        Some(Failure::BlockedDestination(format!(
            "resolved address {ip} is in {} ({}), refused by Envoy's destination policy",
            range.text, range.reason
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AllowRule, DestinationConfig};
    use super::*;

    fn policy(json: &str) -> DestinationPolicy {
        let config: DestinationConfig = serde_json::from_str(json).unwrap();
        DestinationPolicy::new(&config).unwrap()
    }

    fn refused(policy: &DestinationPolicy, host: &str, address: &str) -> String {
        match policy.check_resolved(host, address) {
            Err(Failure::BlockedDestination(detail)) => detail,
            other => panic!("{address}: {other:?}"),
        }
    }

    #[test]
    fn a_blocked_address_is_refused_with_its_range() {
        let p = policy("{}");
        assert_eq!(
            refused(&p, "receiver.test", "127.0.0.1:8080"),
            "\"receiver.test\" resolved: 127.0.0.1 is in 127.0.0.0/8 (loopback)"
        );
        assert!(refused(&p, "a.test", "10.1.2.3:443").contains("10.0.0.0/8 (private)"));
        assert!(refused(&p, "a.test", "[::1]:80").contains("::1/128 (loopback)"));
        assert!(refused(&p, "a.test", "[::ffff:169.254.169.254]:80").contains("link-local"));
    }

    #[test]
    fn a_public_address_is_allowed() {
        let p = policy("{}");
        assert_eq!(p.check_resolved("example.com", "93.184.216.34:443"), Ok(()));
        assert_eq!(
            p.check_resolved("example.com", "[2606:2800::1]:443"),
            Ok(())
        );
    }

    #[test]
    fn exceptions_and_configured_ranges_are_the_plugins() {
        let p = policy(
            r#"{"allow":[{"cidr":"127.0.0.2/32","port":18090}],"deny_cidrs":["93.184.216.0/24"]}"#,
        );
        assert_eq!(p.check_resolved("second.test", "127.0.0.2:18090"), Ok(()));
        let port = refused(&p, "second.test", "127.0.0.2:18091");
        assert!(port.contains("covers port 18090 only, not 18091"), "{port}");
        let configured = refused(&p, "example.com", "93.184.216.34:443");
        assert!(configured.contains("configured deny_cidrs"), "{configured}");
        let whole = policy(r#"{"allow":[{"cidr":"127.0.0.0/8"}]}"#);
        assert_eq!(whole.check_resolved("x", "127.9.9.9:1"), Ok(()));
        assert_eq!(
            AllowRule {
                cidr: "127.0.0.2/32".into(),
                port: Some(18090)
            },
            serde_json::from_str(r#"{"cidr":"127.0.0.2/32","port":18090}"#).unwrap()
        );
    }

    #[test]
    fn the_refusal_is_read_back_from_its_code_details() {
        let detail = || Some("\"a\" resolved: 127.0.0.1 is in 127.0.0.0/8 (loopback)".into());
        assert_eq!(
            refused_after_dns(REFUSED_AFTER_DNS, detail),
            Some(Failure::BlockedDestination(
                "\"a\" resolved: 127.0.0.1 is in 127.0.0.0/8 (loopback)".into()
            ))
        );
        assert_eq!(refused_after_dns("via_upstream", detail), None);
        assert_eq!(
            refused_after_dns(REFUSED_AFTER_DNS, || None).map(|f| f.code().number()),
            Some(11110114)
        );
    }

    #[test]
    fn an_unreadable_address_is_refused() {
        let p = policy("{}");
        for address in ["", "127.0.0.1", "name:80", "127.0.0.1:99999", "[::1]"] {
            let detail = refused(&p, "h", address);
            assert!(detail.contains("not an address"), "{detail}");
        }
    }
}
