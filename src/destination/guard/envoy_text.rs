//! An IPv6 address as Envoy writes it in `upstream.address`: glibc's `inet_ntop` (Envoy calls
//! it). Written by hand because it differs from Rust's `Display`: glibc writes IPv4-compatible
//! addresses (`::127.0.0.1`) in dotted form too. A spelling that differed from Envoy's could
//! only fail to match (a text names one address), so a mistake here refuses, never allows.

use std::net::Ipv6Addr;

pub(super) fn ipv6_text(addr: Ipv6Addr) -> String {
    let words = addr.segments();
    // The first longest run of zero words, if at least two long.
    let (mut best, mut run) = ((0, 0), None::<(usize, usize)>);
    for (i, &w) in words.iter().enumerate() {
        run = match (w, run) {
            (0, Some((start, len))) => Some((start, len + 1)),
            (0, None) => Some((i, 1)),
            _ => None,
        };
        if let Some((start, len)) = run {
            if len > best.1 {
                best = (start, len);
            }
        }
    }
    let (base, len) = if best.1 >= 2 { best } else { (usize::MAX, 0) };
    let mut out = String::new();
    for (i, &w) in words.iter().enumerate() {
        if (base..base + len).contains(&i) {
            if i == base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && base == 0 && (len == 6 || (len == 5 && words.get(5) == Some(&0xffff))) {
            let [.., a, b, c, d] = addr.octets();
            out.push_str(&format!("{a}.{b}.{c}.{d}"));
            return out;
        }
        out.push_str(&format!("{w:x}"));
    }
    if base + len == 8 {
        out.push(':');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected texts written by glibc's `inet_ntop` on this machine.
    #[test]
    fn writes_what_glibc_writes() {
        for (addr, text) in [
            ("::", "::"),
            ("::1", "::1"),
            ("::ffff:7f00:1", "::ffff:127.0.0.1"),
            ("::7f00:1", "::127.0.0.1"),
            ("::ffff:0:7f00:1", "::ffff:0:7f00:1"),
            ("1::", "1::"),
            ("1:0:0:2::3", "1:0:0:2::3"),
            ("1::2:0:0:3", "1::2:0:0:3"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1"),
            ("0:0:1::", "0:0:1::"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("::ffff:1:2", "::ffff:0.1.0.2"),
            ("64:ff9b::7f00:1", "64:ff9b::7f00:1"),
            ("::1:0:0:0", "::1:0:0:0"),
            ("::0.0.0.2", "::2"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
            ("FD00:0:0:0:0:0:0:ABCD", "fd00::abcd"),
        ] {
            assert_eq!(ipv6_text(addr.parse().unwrap()), text, "{addr}");
        }
    }

    /// Every text names its own address, and agrees with Rust's spelling where both follow
    /// RFC 5952 (all but the IPv4-compatible forms).
    #[test]
    fn every_text_names_its_address() {
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Zero some words, so that runs of zeros of every length and place occur.
            let mask: u128 = (0..8)
                .filter(|i| (x >> (i * 3)) & 1 == 1)
                .map(|i| 0xffff_u128 << (16 * i))
                .sum();
            let addr = Ipv6Addr::from(x & !mask);
            let text = ipv6_text(addr);
            assert_eq!(text.parse::<Ipv6Addr>().unwrap(), addr, "{text}");
            let compatible = addr.segments()[..6] == [0; 6] && addr.segments()[6] != 0;
            if !compatible {
                assert_eq!(text, addr.to_string(), "{addr:?}");
            }
        }
    }
}
