//! CIDRs as operators write them, parsed strictly: written by hand because `ipnet` accepts
//! spellings such as `010.0.0.0/8` that readers disagree on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Net {
    V4 { addr: u32, len: u32 },
    V6 { addr: u128, len: u32 },
}

impl Net {
    pub(crate) fn len(self) -> u32 {
        match self {
            Net::V4 { len, .. } | Net::V6 { len, .. } => len,
        }
    }

    pub(crate) fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Net::V4 { addr, len }, IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32_u32.saturating_sub(len))
                    .unwrap_or(0);
                u32::from(ip) & mask == addr
            }
            (Net::V6 { addr, len }, IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128_u32.saturating_sub(len))
                    .unwrap_or(0);
                u128::from(ip) & mask == addr
            }
            _ => false,
        }
    }
}

/// Parses `address/prefix` (or a bare address, meaning that one address) strictly: canonical
/// std address syntax, a decimal prefix without sign or leading zero, no host bits set.
pub(crate) fn parse_cidr(text: &str) -> Option<Net> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = if address.contains(':') {
        IpAddr::V6(address.parse::<Ipv6Addr>().ok()?)
    } else {
        IpAddr::V4(address.parse::<Ipv4Addr>().ok()?)
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => {
            let digits_ok = !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            if !digits_ok {
                return None;
            }
            let len: u32 = p.parse().ok()?;
            if len > max {
                return None;
            }
            len
        }
    };
    let net = match ip {
        IpAddr::V4(a) => Net::V4 {
            addr: u32::from(a),
            len,
        },
        IpAddr::V6(a) => Net::V6 {
            addr: u128::from(a),
            len,
        },
    };
    // Host bits set ("10.0.0.1/8") is refused: it usually means the author meant something else.
    if net.contains(ip) {
        Some(net)
    } else {
        None
    }
}
