//! Why an address is refused, as a detail names it.

use super::policy::DenyRange;
use super::ranges::{teredo_endpoints, Judged, ISATAP};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: the range it is in, or the IPv4 address it embeds and its range.
pub(super) enum Refusal<'a> {
    Address {
        ip: IpAddr,
        range: &'a DenyRange,
    },
    Embedding {
        ip: Ipv6Addr,
        outer: Outer<'a>,
        v4: Ipv4Addr,
        inner: &'a DenyRange,
    },
}

/// What carries an embedded IPv4 address: a range, or an ISATAP interface id.
pub(super) enum Outer<'a> {
    Range(&'a DenyRange),
    Isatap,
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Address { ip, range } => {
                write!(f, "{ip} is in {} ({})", range.text, range.reason)?;
                if let (IpAddr::V6(v6), Judged::Tunnel) = (ip, range.judged) {
                    let (server, client) = teredo_endpoints(*v6);
                    write!(f, " and tunnels to client {client} via server {server}")?;
                }
                Ok(())
            }
            Refusal::Embedding {
                ip,
                outer,
                v4,
                inner,
            } => {
                match outer {
                    Outer::Range(range) => {
                        write!(f, "{ip} is in {} ({})", range.text, range.reason)?
                    }
                    Outer::Isatap => write!(f, "{ip} has {ISATAP}")?,
                }
                write!(
                    f,
                    " and embeds {v4}, which is in {} ({})",
                    inner.text, inner.reason
                )
            }
        }
    }
}
