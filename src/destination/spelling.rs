//! How a URL is written: the checks on the raw string before parsing, and the host spellings
//! (zone ids, Unicode digits) that the `url` crate leaves to the policy.

use super::quote;
use crate::error::Failure;
use std::net::{Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Decimal digits of scripts that IDNA keeps as they are: the code point of each script's zero
/// (the nine digits follow it). Unicode 14 `Nd` plus Kawi and Nag Mundari (15.0); a digit of a
/// script missing here is handled as a digit of unknown value.
const UNICODE_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// Checks on the raw string, before parsing; returns the raw authority (between `//` and the
/// first `/`, `?` or `#`).
pub(super) fn precheck(raw: &str) -> Result<&str, Failure> {
    if raw.is_empty() {
        return Err(Failure::InvalidUrl("empty URL".into()));
    }
    for c in raw.chars() {
        let what = if c == '\\' {
            "backslash"
        } else if c.is_whitespace() {
            "whitespace"
        } else if c.is_control() {
            "control character"
        } else if is_invisible(c) {
            "invisible formatting character"
        } else {
            continue;
        };
        return Err(Failure::InvalidUrl(format!(
            "{what} {} not allowed",
            c.escape_unicode()
        )));
    }
    let Some((scheme, rest)) = raw.split_once(':') else {
        return Err(Failure::InvalidUrl(
            "no scheme, use http:// or https://".into(),
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Failure::InvalidUrl(format!(
            "scheme {} not allowed, use http or https",
            quote(scheme)
        )));
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err(Failure::InvalidUrl(
            "expected // and a host after the scheme".into(),
        ));
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(Failure::InvalidUrl("userinfo (user@) not allowed".into()));
    }
    if authority.is_empty() {
        return Err(Failure::InvalidUrl("empty host".into()));
    }
    Ok(authority)
}

/// Zero-width and bidi formatting characters: invisible in logs, ignored or reordered by readers.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// An authority `[address%zone]` (zone raw or percent-encoded), with its address parsed.
pub(super) fn zoned_address(authority: &str) -> Option<(Ipv6Addr, &str)> {
    let inside = authority.strip_prefix('[')?;
    let (inside, _) = inside.split_once(']')?;
    let (address, zone) = inside.split_once('%')?;
    let zone = zone.strip_prefix("25").unwrap_or(zone);
    match Url::parse(&format!("http://[{address}]/")).ok()?.host()? {
        Host::Ipv6(a) => Some((a, zone)),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum DigitsVerdict {
    /// A name: not an address however its digits are read.
    Name,
    /// The IPv4 address the name would be with its digits read as ASCII.
    Address(Ipv4Addr),
    /// It would be an address, but some digits have no known value.
    Unsure,
}

/// Whether a host name (ASCII, as normalised by the url crate, trailing dots removed) would be
/// an IPv4 address once its non-ASCII digits are read as ASCII digits.
pub(super) fn digits_as_ipv4(host: &str) -> DigitsVerdict {
    // `domain_to_unicode` answers "" for what already is an address.
    if let Some(a) = ipv4_of(host) {
        return DigitsVerdict::Address(a);
    }
    unicode_digits_as_ipv4(&url::quirks::domain_to_unicode(host))
}

/// [`digits_as_ipv4`] on the Unicode form of the host.
pub(super) fn unicode_digits_as_ipv4(unicode: &str) -> DigitsVerdict {
    let mut mapped = String::with_capacity(unicode.len());
    let mut unknown = false;
    for c in unicode.chars() {
        if c.is_ascii() {
            mapped.push(c);
        } else if let Some(d) = unicode_digit(c) {
            mapped.push(d);
        } else if c.is_numeric() {
            unknown = true;
            mapped.push('1');
        } else {
            mapped.push(c);
        }
    }
    match ipv4_of(&mapped) {
        None => DigitsVerdict::Name,
        Some(_) if unknown => DigitsVerdict::Unsure,
        Some(a) => DigitsVerdict::Address(a),
    }
}

/// The ASCII digit a Unicode decimal digit of a known script stands for.
pub(super) fn unicode_digit(c: char) -> Option<char> {
    let cp = u32::from(c);
    UNICODE_ZEROS
        .iter()
        .find(|&&zero| (zero..zero.saturating_add(10)).contains(&cp))
        .and_then(|&zero| char::from_digit(cp.saturating_sub(zero), 10))
}

/// The IPv4 address a host means to the URL standard, if it is one.
pub(super) fn ipv4_of(host: &str) -> Option<Ipv4Addr> {
    if host.contains(['/', '?', '#', '@', ':', '[', ']', '\\', '%']) {
        return None;
    }
    match Url::parse(&format!("http://{host}/")).ok()?.host()? {
        Host::Ipv4(a) => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_digit_table() {
        for &zero in UNICODE_ZEROS {
            for i in 0..10 {
                let c = char::from_u32(zero + i).unwrap();
                assert!(c.is_numeric(), "U+{:04X}", zero + i);
                assert_eq!(
                    unicode_digit(c),
                    char::from_digit(i, 10),
                    "U+{:04X}",
                    zero + i
                );
            }
        }
        assert_eq!(unicode_digit('a'), None);
        assert_eq!(unicode_digit('\u{0665}'), Some('5'));
        assert_eq!(unicode_digit('\u{096F}'), Some('9'));
        // Digits of a script the table does not know: refused when the host would be an IPv4
        // address with them read as any digit, a name otherwise.
        let unknown = '\u{10D40}';
        assert_eq!(unicode_digit(unknown), None);
        assert!(unknown.is_numeric());
        assert_eq!(
            unicode_digits_as_ipv4(&format!("{unknown}.0.0.1")),
            DigitsVerdict::Unsure
        );
        assert_eq!(
            unicode_digits_as_ipv4(&format!("{unknown}{unknown}")),
            DigitsVerdict::Unsure
        );
        assert_eq!(
            unicode_digits_as_ipv4(&format!("{unknown}.example")),
            DigitsVerdict::Name
        );
        assert_eq!(
            unicode_digits_as_ipv4("१२७.०.०.१"),
            DigitsVerdict::Address(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(unicode_digits_as_ipv4("example.com"), DigitsVerdict::Name);
    }
}
