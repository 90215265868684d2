//! Where a webhook may go: the filter's SSRF policy.
//!
//! A pure module: [`DestinationPolicy::check`] takes the webhook URL as the engine sent it, parses
//! it once with the `url` crate (the WHATWG parser), applies every rule, and returns the
//! normalised URL that was checked ([`Destination`]) so that checker and sender never read a URL
//! differently.
//!
//! What the filter judges:
//!
//! * the raw string: only `http`/`https`, written `scheme://authority`; no userinfo (not even an
//!   empty `@`), no backslash, whitespace, control or invisible formatting character anywhere, no
//!   empty host → [`Failure::InvalidUrl`] (HTTP 400);
//! * IP literals, in every spelling the URL standard turns into an address (decimal, octal, hex,
//!   short forms, Unicode digits IDNA maps, percent-encoding, trailing dots) are judged by the
//!   address they mean → [`Failure::BlockedDestination`] (HTTP 403, code 11110114);
//! * IPv6 addresses must be global unicast (`2000::/3`) outside the special-purpose ranges; IPv6
//!   forms that embed an IPv4 address (IPv4-mapped, -compatible and -translated, NAT64, 6to4,
//!   ISATAP interface ids) are judged by that address (see [`default_deny_list`] and
//!   `ranges.rs`);
//! * host names: the default names (`localhost`, cloud metadata names) and the configured
//!   `deny_hosts`.
//!
//! What it cannot judge: names that only become local through DNS (`127.0.0.1.nip.io`,
//! rebinding services, redirects). Those pass here and are refused on the resolved address by
//! Envoy's guard before connecting (the built-in list, and what `guard.rs` hands it of this
//! policy) and by the check after DNS (`resolved.rs`).
//!
//! Exceptions ([`AllowRule`]):
//!
//! * an exception lifts a CIDR refusal (default or configured) for the addresses it names, on the
//!   port it names if it names one, and nothing else: `127.0.0.1/32` does not allow `127.0.0.2`,
//!   and `{"cidr": "127.0.0.1/32", "port": 18080}` does not allow port 8080;
//! * exceptions apply to IP literals only: a name refused by name (`localhost`, a configured
//!   `deny_hosts` entry) stays refused, and so does a name that merely looks like an address
//!   (non-ASCII digits, several trailing dots), because what would be sent is a name;
//! * an exception matches the address in the family it is written in. An IPv4 exception is NOT
//!   extended to IPv6 forms embedding that address (`[::ffff:127.0.0.1]`, `[::127.0.0.1]`,
//!   `[64:ff9b::127.0.0.1]`, `[2002:7f00:1::]`): those stay refused, because Envoy's RBAC refuses
//!   the embedding ranges as a whole and cannot look inside;
//! * an IPv6 exception is one address: Envoy's guard before connecting takes exceptions as
//!   patterns over the text it writes (`guard.rs`), dotted decimal for IPv4, which a pattern
//!   follows for any CIDR, and IPv6's compressed form, which it follows for one address only.
//!
//! Decisions on edge cases:
//!
//! * Unicode digits that IDNA does not map to ASCII (Devanagari, Thai, ...): the host is mapped
//!   digit by digit to ASCII; if the result is an IPv4 address (in any WHATWG spelling) that
//!   address is judged (no exceptions apply, see above). Digits of a script this module does not
//!   know make the host refused whenever it would be an IPv4 address with those digits read as
//!   any digit ("when in doubt, refuse"). Arabic-Indic digits are already refused by IDNA (bidi
//!   rule) as an invalid URL.
//! * IPv6 zone ids (`[fe80::1%25eth0]`), which the `url` crate rejects: the address without the
//!   zone is judged; refused → 403, otherwise 400 (a zone id is never sendable).
//! * Host names with several trailing dots (`127.0.0.1..`, `localhost..`) are compared with every
//!   trailing dot removed; empty labels inside a name (`a..b`) are an invalid URL. Port 0 is an
//!   invalid URL. `http:host` and `http:///host` (which WHATWG repairs, but other readers see as
//!   an empty host) are invalid URLs.
//! * The failure details are ASCII only (anything else from the raw URL is escaped) and name the
//!   reason and the address or host meant, e.g. `127.0.0.1 is in 127.0.0.0/8 (loopback)`.

use crate::error::Failure;
use std::net::{IpAddr, Ipv4Addr};
use url::{Host, Url};

/// The default deny list: each CIDR (IPv4 and IPv6) with the reason a refusal names and the
/// document that defines the range. Envoy's RBAC in the shipped configs enforces the same CIDRs on
/// resolved addresses (a test compares them), refusing whole the ranges that this filter judges by
/// the IPv4 address they embed: a CIDR-only enforcer cannot look inside an address.
pub fn default_deny_list() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    DEFAULT_RANGES.iter().map(|r| (r.cidr, r.reason, r.source))
}

/// What will be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The normalised URL exactly as it will be sent (no fragment).
    pub url: String,
    pub https: bool,
    /// `host:port`, port always explicit (80/443 defaults); IPv6 in brackets.
    pub authority: String,
    /// At least "/".
    pub path_and_query: String,
    /// The host as normalised by the url crate (for logs); IPv6 in brackets.
    pub host: String,
    /// The request pseudo-headers for Envoy's guard before connecting (`guard.rs`): the
    /// exceptions and configured deny CIDRs that apply to this webhook; usually none.
    pub guard: Vec<(&'static str, String)>,
}

impl DestinationPolicy {
    /// Parse once with the url crate, apply every rule, return what will be sent.
    pub fn check(&self, raw_url: &str) -> Result<Destination, Failure> {
        let authority = precheck(raw_url)?;
        let mut url = match Url::parse(raw_url) {
            Ok(url) => url,
            Err(e) => return Err(self.unparsable(authority, e)),
        };
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(Failure::InvalidUrl(format!(
                    "scheme {} not allowed, use http or https",
                    quote(other)
                )))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Failure::InvalidUrl("userinfo (user@) not allowed".into()));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Failure::InvalidUrl("no port".into()))?;
        if port == 0 {
            return Err(Failure::InvalidUrl("port 0 not allowed".into()));
        }
        let literal = match url.host() {
            None => return Err(Failure::InvalidUrl("empty host".into())),
            Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(Host::Domain(name)) => {
                self.judge_name(name)?;
                None
            }
        };
        if let Some(ip) = literal {
            self.judge_literal(ip, port)?;
        }
        url.set_fragment(None);
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Failure::InvalidUrl("empty host".into()))?
            .to_string();
        let mut path_and_query = url.path().to_string();
        if !path_and_query.starts_with('/') {
            path_and_query.insert(0, '/');
        }
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(Destination {
            url: url.as_str().to_string(),
            https,
            authority: format!("{host}:{port}"),
            path_and_query,
            host,
            guard: self.guard.headers(literal, port),
        })
    }

    /// The failure for a URL the `url` crate refused: 403 for a zone id on a refused address,
    /// 400 otherwise.
    fn unparsable(&self, authority: &str, error: url::ParseError) -> Failure {
        if let Some((address, zone)) = zoned_address(authority) {
            if let Some(why) = self.refusal(IpAddr::V6(address)) {
                return Failure::BlockedDestination(format!("{why} (zone id {})", quote(zone)));
            }
            return Failure::InvalidUrl(format!(
                "IPv6 zone id {} not allowed (address {address})",
                quote(zone)
            ));
        }
        Failure::InvalidUrl(format!("does not parse: {error}"))
    }

    /// An IP literal: refused by a CIDR unless an exception names it (and its port).
    fn judge_literal(&self, ip: IpAddr, port: u16) -> Result<(), Failure> {
        let Some(why) = self.refusal(ip) else {
            return Ok(());
        };
        let mut port_note = None;
        for rule in self.allow.iter().filter(|r| r.net.contains(ip)) {
            match rule.port {
                None => return Ok(()),
                Some(p) if p == port => return Ok(()),
                Some(p) => port_note = Some((rule.text.as_str(), p)),
            }
        }
        Err(Failure::BlockedDestination(match port_note {
            Some((cidr, p)) => format!(
                "{why}; the exception for {} covers port {p} only, not {port}",
                quote(cidr)
            ),
            None => why.to_string(),
        }))
    }

    /// A host name: refused by name, or when it would be a refused IPv4 address once its
    /// trailing dots are removed and its non-ASCII digits read as digits. No exception applies.
    fn judge_name(&self, name: &str) -> Result<(), Failure> {
        let host = name.trim_end_matches('.');
        if host.is_empty() {
            return Err(Failure::InvalidUrl("empty host".into()));
        }
        if host.split('.').any(str::is_empty) {
            return Err(Failure::InvalidUrl(format!(
                "empty label in host {}",
                quote(name)
            )));
        }
        if let Some(pattern) = self.hosts.iter().find(|p| p.matches(host)) {
            return Err(Failure::BlockedDestination(format!(
                "host {} matches {} ({})",
                quote(host),
                quote(&pattern.text),
                pattern.reason
            )));
        }
        match digits_as_ipv4(host) {
            DigitsVerdict::Name => Ok(()),
            DigitsVerdict::Address(a) => match self.refusal(IpAddr::V4(a)) {
                Some(why) => Err(Failure::BlockedDestination(format!(
                    "host {} is written as an address: {why}",
                    quote(host)
                ))),
                None => Ok(()),
            },
            DigitsVerdict::Unsure => Err(Failure::BlockedDestination(format!(
                "host {} may be an IPv4 address written with digits of an unknown script",
                quote(host)
            ))),
        }
    }

    /// Why an address is refused by the CIDR rules (before exceptions), or None. Its text is
    /// only written when the refusal stands (an exception often lifts it).
    ///
    /// In order: a range refused whole (default or configured); an embedding range, which judges
    /// the address by the IPv4 inside it; IPv6 outside global unicast; an ISATAP interface id
    /// embedding a refused IPv4 address (under any prefix, so not a range).
    fn refusal(&self, ip: IpAddr) -> Option<Refusal<'_>> {
        if let Some(range) = self.deny_match(ip, |j| matches!(j, Judged::Whole | Judged::Tunnel)) {
            return Some(Refusal::Address { ip, range });
        }
        let IpAddr::V6(v6) = ip else {
            return None;
        };
        let embedding = self.deny_match(ip, |j| matches!(j, Judged::Embedding(_)));
        if let Some(range) = embedding {
            if let Judged::Embedding(embeds) = range.judged {
                let v4 = embeds.ipv4(v6);
                if let Some(inner) = self.v4_refusal(v4) {
                    return Some(Refusal::Embedding {
                        ip: v6,
                        outer: Outer::Range(range),
                        v4,
                        inner,
                    });
                }
            }
        } else if let Some(range) = self.deny_match(ip, |j| j == Judged::Outside) {
            return Some(Refusal::Address { ip, range });
        }
        let v4 = isatap_ipv4(v6)?;
        let inner = self.v4_refusal(v4)?;
        Some(Refusal::Embedding {
            ip: v6,
            outer: Outer::Isatap,
            v4,
            inner,
        })
    }

    /// The range that refuses an embedded IPv4 address.
    fn v4_refusal(&self, v4: Ipv4Addr) -> Option<&DenyRange> {
        self.deny_match(IpAddr::V4(v4), |j| j == Judged::Whole)
    }

    /// The most specific range of the given kinds that contains the address.
    fn deny_match(&self, ip: IpAddr, kind: impl Fn(Judged) -> bool) -> Option<&DenyRange> {
        self.deny
            .iter()
            .filter(|r| kind(r.judged) && r.net.contains(ip))
            .max_by_key(|r| r.net.len())
    }
}

/// The host of a URL as the engine wrote it, for the log line of a refusal (where no normalised
/// host exists): what stands between `://` (or the start) and the next `/`, `?` or `#`, without
/// userinfo, quoted ASCII-only and bounded like every detail.
pub fn host_as_written(raw_url: &str) -> String {
    let rest = raw_url.split_once("://").map_or(raw_url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    quote(host)
}

/// A value from the input, quoted for a detail: ASCII only, at most 100 characters.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i >= 100 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_default());
    }
    out.push('"');
    out
}

mod guard;
mod policy;
mod ranges;
mod recent;
mod refusal;
mod resolved;
mod spelling;
pub use guard::{
    guard_rules, EXCEPTED_POLICY, GUARD_ALLOW_HEADERS, GUARD_DENY_HEADERS, GUARD_SLOTS,
    PUBLIC_POLICY,
};
use policy::DenyRange;
pub use policy::{AllowRule, DestinationConfig, DestinationPolicy};
use ranges::{isatap_ipv4, Judged, DEFAULT_RANGES};
pub use recent::RecentChecks;
use refusal::{Outer, Refusal};
pub use resolved::{
    after_dns_matcher, refused_after_dns, AFTER_DNS_ROOT_ID, REFUSAL_DETAIL_HEADER,
    REFUSED_AFTER_DNS,
};
use spelling::{digits_as_ipv4, precheck, zoned_address, DigitsVerdict};

#[cfg(test)]
mod tests;
