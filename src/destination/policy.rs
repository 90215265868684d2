//! The destination policy as configured, in its parsed, ready-to-check form: the built-in and
//! configured refused ranges and names, the exceptions, and what Envoy's guard is handed.

use super::guard::Guard;
use super::quote;
use super::ranges::{Judged, DEFAULT_HOSTS, DEFAULT_RANGES};
use super::spelling::{ipv4_of, is_invisible};
use crate::cidr::{parse_cidr, Net};
use url::{Host, Url};

#[derive(serde::Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    /// Extra CIDRs to refuse, on top of the default list, e.g. "203.0.113.7/32", "fd12::/16".
    /// A bare address means that one address.
    pub deny_cidrs: Vec<String>,
    /// Extra host names to refuse; "*.corp.example" refuses every subdomain (and the name itself).
    pub deny_hosts: Vec<String>,
    /// Exceptions for internal receivers and test rigs: {"cidr": "127.0.0.1/32", "port": 18080};
    /// port optional. See the module documentation for what an exception does not lift.
    pub allow: Vec<AllowRule>,
}

#[derive(serde::Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub cidr: String,
    #[serde(default)]
    pub port: Option<u16>,
}

pub(super) const CONFIGURED_CIDR_REASON: &str = "configured deny_cidrs";
pub(super) const CONFIGURED_HOST_REASON: &str = "configured deny_hosts";

/// A refused range.
#[derive(Clone, Debug)]
pub(super) struct DenyRange {
    pub(super) net: Net,
    pub(super) text: String,
    pub(super) reason: &'static str,
    pub(super) judged: Judged,
}

/// A host-name pattern: the name itself, and every subdomain when `subdomains`.
#[derive(Clone, Debug)]
pub(super) struct HostPattern {
    pub(super) name: String,
    pub(super) subdomains: bool,
    pub(super) text: String,
    pub(super) reason: &'static str,
}

impl HostPattern {
    pub(super) fn matches(&self, host: &str) -> bool {
        if host == self.name {
            return true;
        }
        self.subdomains
            && host
                .strip_suffix(self.name.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }
}

/// An exception.
#[derive(Clone, Debug)]
pub(super) struct Allow {
    pub(super) net: Net,
    pub(super) port: Option<u16>,
    pub(super) text: String,
}

/// The destination rules in their parsed, ready-to-check form.
#[derive(Clone, Debug)]
pub struct DestinationPolicy {
    pub(super) deny: Vec<DenyRange>,
    pub(super) hosts: Vec<HostPattern>,
    pub(super) allow: Vec<Allow>,
    pub(super) guard: Guard,
}

impl DestinationPolicy {
    /// Err names the key: e.g. `destination.deny_cidrs[2]: invalid CIDR "10.0.0.0/33"`.
    pub fn new(config: &DestinationConfig) -> Result<Self, String> {
        let mut deny = Vec::with_capacity(DEFAULT_RANGES.len() + config.deny_cidrs.len());
        for range in DEFAULT_RANGES {
            let text = range.cidr;
            let net = parse_cidr(text)
                .ok_or_else(|| format!("destination: built-in CIDR {text:?} does not parse"))?;
            deny.push(DenyRange {
                net,
                text: text.to_string(),
                reason: range.reason,
                judged: range.judged,
            });
        }
        for (i, text) in config.deny_cidrs.iter().enumerate() {
            let net = parse_cidr(text).ok_or_else(|| {
                format!("destination.deny_cidrs[{i}]: invalid CIDR {}", quote(text))
            })?;
            deny.push(DenyRange {
                net,
                text: text.clone(),
                reason: CONFIGURED_CIDR_REASON,
                judged: Judged::Whole,
            });
        }

        let mut hosts = Vec::with_capacity(DEFAULT_HOSTS.len() + config.deny_hosts.len());
        for &(text, reason) in DEFAULT_HOSTS {
            let (name, subdomains) = parse_host_pattern(text)
                .map_err(|why| format!("destination: built-in host {text:?}: {why}"))?;
            hosts.push(HostPattern {
                name,
                subdomains,
                text: text.to_string(),
                reason,
            });
        }
        for (i, text) in config.deny_hosts.iter().enumerate() {
            let (name, subdomains) = parse_host_pattern(text).map_err(|why| {
                format!(
                    "destination.deny_hosts[{i}]: invalid host name {}: {why}",
                    quote(text)
                )
            })?;
            hosts.push(HostPattern {
                name,
                subdomains,
                text: text.clone(),
                reason: CONFIGURED_HOST_REASON,
            });
        }

        let mut allow = Vec::with_capacity(config.allow.len());
        for (i, rule) in config.allow.iter().enumerate() {
            let net = parse_cidr(&rule.cidr).ok_or_else(|| {
                format!(
                    "destination.allow[{i}].cidr: invalid CIDR {}",
                    quote(&rule.cidr)
                )
            })?;
            if rule.port == Some(0) {
                return Err(format!(
                    "destination.allow[{i}].port: must be 1..=65535, got 0"
                ));
            }
            allow.push(Allow {
                net,
                port: rule.port,
                text: rule.cidr.clone(),
            });
        }
        let configured: Vec<Net> = deny
            .iter()
            .filter(|r| r.reason == CONFIGURED_CIDR_REASON)
            .map(|r| r.net)
            .collect();
        let exceptions: Vec<(Net, Option<u16>)> = allow.iter().map(|a| (a.net, a.port)).collect();
        let guard = Guard::new(&exceptions, &configured)?;
        Ok(DestinationPolicy {
            deny,
            hosts,
            allow,
            guard,
        })
    }
}

/// A deny_hosts entry: `name` or `*.name`, normalised like a URL host; not an IP address.
pub(super) fn parse_host_pattern(text: &str) -> Result<(String, bool), &'static str> {
    let (rest, subdomains) = match text.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    if rest.is_empty() {
        return Err("empty");
    }
    if rest.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || is_invisible(c)
            || matches!(
                c,
                '/' | '?' | '#' | '@' | ':' | '[' | ']' | '\\' | '%' | '*'
            )
    }) {
        return Err("only a name, or *. and a name");
    }
    let url = Url::parse(&format!("http://{rest}/")).map_err(|_| "not a valid host name")?;
    let name = match url.host() {
        Some(Host::Domain(d)) => d.trim_end_matches('.').to_string(),
        Some(_) => return Err("an IP address, put it in deny_cidrs"),
        None => return Err("not a valid host name"),
    };
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err("empty label");
    }
    if ipv4_of(&name).is_some() {
        return Err("an IP address, put it in deny_cidrs");
    }
    Ok((name, subdomains))
}
