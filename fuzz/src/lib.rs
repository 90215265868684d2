//! Helpers shared by the fuzz targets: an in-memory `SharedStore` with the host's semantics, a
//! fixed clock, and the invariant checks more than one target asserts.

use hookgate::clock::Clock;
use hookgate::destination::{Destination, DestinationPolicy};
use hookgate::error::Failure;
use hookgate::limit::SharedStore;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Shared data as Envoy keeps it (same rules as the store in src/limit/tests/mod.rs): one CAS
/// counter for all keys, starting at 1 and never 0; a CAS that differs from an existing key's
/// fails; on a missing key any CAS succeeds; CAS 0 means "no CAS"; an empty value reads as
/// `(None, Some(cas))`, as the SDK returns it.
#[derive(Default)]
pub struct MemStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    last_cas: RefCell<u32>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(match self.map.borrow().get(key) {
            None => (None, None),
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        let mut map = self.map.borrow_mut();
        if let (Some(wanted), Some((_, current))) = (cas, map.get(key)) {
            if wanted != 0 && wanted != *current {
                return Ok(false);
            }
        }
        let mut last = self.last_cas.borrow_mut();
        *last = last.wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), *last));
        Ok(true)
    }
}

impl MemStore {
    /// The value as stored, bypassing the SDK's empty-value rule.
    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.map.borrow().get(key).map(|(v, _)| v.clone())
    }

    /// Overwrites a key whatever its CAS (what another writer, or a corrupted host, could do).
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let stored = self.set(key, value, None);
        assert_eq!(stored, Ok(true));
    }
}

pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0
    }
}

/// 2023-11-14 22:13:20 UTC, the time reference of the limit tests.
pub const T: u64 = 1_700_000_000;

/// Parses JSON for an oracle: `Err` when the text is not JSON; `Ok(None)` when it is JSON that
/// the oracle cannot read as a `Value`: nesting deeper than serde_json's recursion limit (128),
/// or a number beyond f64 (`1e400` is valid JSON, RFC 8259 sets no range, and hookgate passes
/// values through as written).
pub fn json(bytes: &[u8]) -> Result<Option<serde_json::Value>, serde_json::Error> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        if e.to_string().contains("recursion limit exceeded") {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(serde_json::from_slice::<serde_json::Value>(bytes).ok())
}

/// The detail of a URL failure: the module promises it is ASCII only.
pub fn assert_url_failure(raw: &str, failure: &Failure) {
    match failure {
        Failure::InvalidUrl(detail) | Failure::BlockedDestination(detail) => {
            assert!(detail.is_ascii(), "{raw:?}: non-ASCII detail {detail:?}");
        }
        other => panic!("{raw:?}: a URL check failed with {other:?}"),
    }
    assert!(matches!(failure.http_status(), 400 | 403));
}

/// Everything a passed destination must satisfy, whatever the policy.
pub fn assert_destination(policy: &DestinationPolicy, raw: &str, d: &Destination) {
    // The authority always names its port, explicitly and not 0, after the host.
    let (host, port) = d
        .authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{raw:?}: authority {:?} has no port", d.authority));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("{raw:?}: authority {:?} has a bad port", d.authority));
    assert_ne!(port, 0, "{raw:?}");
    assert_eq!(host, d.host, "{raw:?}");
    assert!(!d.host.is_empty(), "{raw:?}");
    assert!(d.path_and_query.starts_with('/'), "{raw:?}: {d:?}");
    let scheme = if d.https { "https://" } else { "http://" };
    assert!(d.url.starts_with(scheme), "{raw:?}: {d:?}");
    assert!(
        !d.url.contains('#'),
        "{raw:?}: fragment kept in {:?}",
        d.url
    );
    assert!(
        !d.url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\'),
        "{raw:?}: {d:?}"
    );
    // The url crate reads the sent URL as the same host and port.
    let parsed = url::Url::parse(&d.url).unwrap_or_else(|e| panic!("{raw:?}: {d:?}: {e}"));
    assert_eq!(parsed.host_str(), Some(d.host.as_str()), "{raw:?}");
    assert_eq!(parsed.port_or_known_default(), Some(port), "{raw:?}");
    // The normalised URL re-checks to the same destination: checker and sender agree.
    match policy.check(&d.url) {
        Ok(again) => assert_eq!(&again, d, "{raw:?}: re-check of {:?} differs", d.url),
        Err(e) => panic!(
            "{raw:?}: passed as {:?}, which is then refused: {e:?}",
            d.url
        ),
    }
}

/// An independent oracle (std's address classes, not the module's tables): an address the
/// default policy must never let through.
pub fn forbidden_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    a.is_unspecified()
        || b0 == 0
        || a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || b0 >= 240
        || (b0 == 100 && (64..128).contains(&b1))
        || (b0 == 192 && b1 == 0 && b2 == 0)
        || (b0 == 192 && b1 == 88 && b2 == 99)
        || (b0 == 198 && (b1 == 18 || b1 == 19))
}

pub fn forbidden_v6(a: Ipv6Addr) -> bool {
    let bits = u128::from(a);
    let seg = a.segments();
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let high96 = bits >> 32;
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00
        || (seg[0] & 0xffc0) == 0xfe80
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || (seg[0] == 0x3fff && seg[1] < 0x1000)
        || (seg[0] == 0x0100 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0)
        || seg[0] == 0x5f00
        || (seg[0] == 0x2001 && seg[1] == 0)
        || (seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2] == 0x0001)
        || ((high96 == 0xffff || high96 == 0 || high96 == 0x0064_ff9b_0000_0000_0000_0000)
            && forbidden_v4(low32))
        || (seg[0] == 0x2002 && forbidden_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32)))
}

/// The IP address a normalised host means, if it is a literal (IPv6 in brackets).
pub fn host_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// What the default deny lists refuse by name.
pub fn forbidden_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "ip6-localhost"
        || host == "ip6-loopback"
        || host == "metadata.google.internal"
}
