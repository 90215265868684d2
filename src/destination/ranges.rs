//! The default deny list: every range and host name hookgate refuses out of the box, why, and the
//! document that says what the range is. The one place the list is written in Rust; Envoy's
//! upstream RBAC enforces the same CIDRs (`envoy/*.yaml`, compared by a test).
//!
//! IPv4: the IANA IPv4 special-purpose registry's ranges that are not globally reachable (plus
//! multicast and 6to4's relay anycast), and the cloud platform endpoints that no range above
//! catches. IPv6: only global unicast `2000::/3` may be a destination; everything outside it is
//! refused, and inside it the IANA IPv6 special-purpose registry's ranges that are not globally
//! reachable, with `2001::/23` (IETF protocol assignments) refused whole like its IPv4 twin
//! `192.0.0.0/24`. Ranges that embed an IPv4 address are judged by that address.
//!
//! Cloud platform endpoints already caught by a range (checked against each cloud's
//! documentation): instance metadata at `169.254.169.254` (AWS, Azure, GCP, Oracle,
//! DigitalOcean, Hetzner, OpenStack, Huawei, Vultr, Linode), AWS's DNS, time sync and task
//! metadata at `169.254.169.253`, `169.254.169.123` and `169.254.170.2` and their IPv6 forms in
//! `fd00:ec2::/32`, GCP's IPv6 metadata server `fd20:ce::254`, Tencent's `169.254.0.23`, Oracle
//! Classic's `192.0.0.192`, Alibaba's `100.100.100.200`, Volcengine's `100.96.0.96` and UCloud's
//! `100.80.80.80` (shared address space), OpenStack's `fe80::a9fe:a9fe`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// How a default range is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Judged {
    /// Every address in the range is refused.
    Whole,
    /// Every address is refused, and the detail names the IPv4 endpoints the address tunnels to
    /// (Teredo).
    Tunnel,
    /// Judged by the IPv4 address embedded at this position: refused when that address is.
    /// Envoy's RBAC cannot look inside an address and refuses such a range whole.
    Embedding(Embeds),
    /// IPv6 outside global unicast: refused unless an embedding range judges the address.
    Outside,
}

/// Where an embedding range carries its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Embeds {
    /// The last 32 bits.
    Low32,
    /// Bits 16..48 (6to4).
    Bits16,
}

impl Embeds {
    pub(super) fn ipv4(self, ip: Ipv6Addr) -> Ipv4Addr {
        let bits = u128::from(ip);
        let shift = match self {
            Embeds::Low32 => 0,
            Embeds::Bits16 => 80,
        };
        Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32)
    }
}

/// A Teredo address's IPv4 endpoints (RFC 4380 section 4): the server in bits 32..64, the
/// client in the last 32 bits, inverted.
pub(super) fn teredo_endpoints(ip: Ipv6Addr) -> (Ipv4Addr, Ipv4Addr) {
    let bits = u128::from(ip);
    let server = Ipv4Addr::from(((bits >> 64) & 0xffff_ffff) as u32);
    let client = Ipv4Addr::from(!(bits & 0xffff_ffff) as u32);
    (server, client)
}

/// The IPv4 address in an ISATAP interface identifier (RFC 5214 section 6.1: `0000:5efe` or,
/// with the u/g bits set, `0100`/`0200`/`0300:5efe`, then the IPv4 address), under any prefix.
pub(super) fn isatap_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let marker = ((bits >> 32) & 0xffff_ffff) as u32;
    (marker & 0xfcff_ffff == 0x0000_5efe).then(|| Ipv4Addr::from((bits & 0xffff_ffff) as u32))
}

/// Where an ISATAP interface identifier sits, and why it is judged, for details.
pub(super) const ISATAP: &str = "an ISATAP interface id (::5efe:a.b.c.d in the last 64 bits)";

/// One default range.
#[derive(Clone, Copy, Debug)]
pub(super) struct DefaultRange {
    pub cidr: &'static str,
    pub reason: &'static str,
    pub judged: Judged,
    /// The document that defines the range.
    pub source: &'static str,
}

const fn range(
    cidr: &'static str,
    reason: &'static str,
    judged: Judged,
    source: &'static str,
) -> DefaultRange {
    DefaultRange {
        cidr,
        reason,
        judged,
        source,
    }
}

use Judged::{Embedding, Outside, Tunnel, Whole};

const IANA_V4: &str = "https://www.iana.org/assignments/iana-ipv4-special-registry/";
const IANA_V4_SPACE: &str = "https://www.iana.org/assignments/ipv4-address-space/";
const IANA_V6: &str = "https://www.iana.org/assignments/iana-ipv6-special-registry/";
const IANA_V6_SPACE: &str = "https://www.iana.org/assignments/ipv6-address-space/";

/// The default list. Order is the documentation's; the most specific range that matches names
/// the reason.
pub(super) const DEFAULT_RANGES: &[DefaultRange] = &[
    range("0.0.0.0/8", "this network", Whole, IANA_V4),
    range("10.0.0.0/8", "private", Whole, IANA_V4),
    range("100.64.0.0/10", "shared address space", Whole, IANA_V4),
    range("127.0.0.0/8", "loopback", Whole, IANA_V4),
    range("169.254.0.0/16", "link-local", Whole, IANA_V4),
    range("172.16.0.0/12", "private", Whole, IANA_V4),
    range("192.0.0.0/24", "IETF protocol assignments", Whole, IANA_V4),
    range("192.0.2.0/24", "documentation", Whole, IANA_V4),
    range("192.88.99.0/24", "6to4 relay anycast", Whole, IANA_V4),
    range("192.168.0.0/16", "private", Whole, IANA_V4),
    range("198.18.0.0/15", "benchmarking", Whole, IANA_V4),
    range("198.51.100.0/24", "documentation", Whole, IANA_V4),
    range("203.0.113.0/24", "documentation", Whole, IANA_V4),
    range("224.0.0.0/4", "multicast", Whole, IANA_V4_SPACE),
    range("240.0.0.0/4", "reserved", Whole, IANA_V4),
    range("255.255.255.255/32", "broadcast", Whole, IANA_V4),
    range(
        "168.63.129.16/32",
        "Azure platform endpoint (WireServer, DNS, DHCP, health probes)",
        Whole,
        "https://learn.microsoft.com/en-us/azure/virtual-network/what-is-ip-address-168-63-129-16",
    ),
    range("::/128", "unspecified", Whole, IANA_V6),
    range("::1/128", "loopback", Whole, IANA_V6),
    range(
        "::ffff:0:0/96",
        "IPv4-mapped",
        Embedding(Embeds::Low32),
        IANA_V6,
    ),
    range(
        "::ffff:0:0:0/96",
        "IPv4-translated (SIIT)",
        Embedding(Embeds::Low32),
        "https://www.rfc-editor.org/rfc/rfc2765#section-2.1",
    ),
    range(
        "::/96",
        "IPv4-compatible",
        Embedding(Embeds::Low32),
        "https://www.rfc-editor.org/rfc/rfc4291#section-2.5.5.1",
    ),
    range("64:ff9b::/96", "NAT64", Embedding(Embeds::Low32), IANA_V6),
    range(
        "64:ff9b:1::/48",
        "local-use NAT64, refused as a whole",
        Whole,
        IANA_V6,
    ),
    range("100::/64", "discard-only", Whole, IANA_V6),
    range("::/3", "outside global unicast", Outside, IANA_V6_SPACE),
    range("2001::/23", "IETF protocol assignments", Whole, IANA_V6),
    range("2001::/32", "Teredo", Tunnel, IANA_V6),
    range("2001:db8::/32", "documentation", Whole, IANA_V6),
    range("2002::/16", "6to4", Embedding(Embeds::Bits16), IANA_V6),
    range("3fff::/20", "documentation", Whole, IANA_V6),
    range("4000::/2", "outside global unicast", Outside, IANA_V6_SPACE),
    range("5f00::/16", "SRv6 SIDs", Whole, IANA_V6),
    range("8000::/1", "outside global unicast", Outside, IANA_V6_SPACE),
    range("fc00::/7", "unique local", Whole, IANA_V6),
    range("fe80::/10", "link-local", Whole, IANA_V6),
    range("fec0::/10", "site-local, deprecated", Whole, IANA_V6_SPACE),
    range("ff00::/8", "multicast", Whole, IANA_V6_SPACE),
];

/// Host names refused by name, and why (compared after the `url` crate's normalisation,
/// lower-case, trailing dots removed). `*.name` refuses every subdomain and the name itself.
pub(super) const DEFAULT_HOSTS: &[(&str, &str)] = &[
    ("localhost", LOCAL),
    ("*.localhost", LOCAL),
    ("ip6-localhost", LOCAL),
    ("ip6-loopback", LOCAL),
    // https://cloud.google.com/compute/docs/metadata/querying-metadata
    ("metadata.google.internal", METADATA),
    // https://www.tencentcloud.com/document/product/213/4934
    ("metadata.tencentyun.com", METADATA),
];

const LOCAL: &str = "local host name";
const METADATA: &str = "cloud metadata host name";

#[cfg(test)]
mod tests;
