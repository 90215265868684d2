//! The namespace's DNS server (scripts/test.sh points resolv.conf at 127.0.0.1): fixed A and AAAA
//! records in a fixed order, NXDOMAIN for anything else. Names with several addresses need it:
//! c-ares reads only the first hosts-file line of a name. One per test process (test binaries
//! run one after another, so port 53 is free for each).

use std::net::{IpAddr, UdpSocket};
use std::sync::OnceLock;

/// An address outside every built-in deny range, on the test namespace's loopback interface
/// (scripts/test.sh): a receiver there is reachable unless a policy refuses it.
pub const PUBLIC: [u8; 4] = [100, 0, 0, 7];

/// The zone, in answer order.
fn zone(name: &str) -> Option<Vec<IpAddr>> {
    let v4 = |list: &[[u8; 4]]| Some(list.iter().map(|&a| IpAddr::from(a)).collect());
    let one = |address: &str| Some(vec![address.parse().unwrap()]);
    match name {
        // The hosts file has it too, but c-ares looks a name with a trailing dot up in DNS only.
        "loopback.dns.test" | "receiver.test" => v4(&[[127, 0, 0, 1]]),
        // A public address that scripts/test.sh puts on the namespace's loopback interface.
        "public.dns.test" => v4(&[PUBLIC]),
        "second.dns.test" => v4(&[[127, 0, 0, 2]]),
        "v6loopback.dns.test" => one("::1"),
        // A public IPv6 address that scripts/test.sh puts on the namespace's loopback interface,
        // and an ISATAP interface id there embedding 127.0.0.1 (also on it).
        "v6public.dns.test" => one("2600::7"),
        "isatap.dns.test" => one("2600::5efe:7f00:1"),
        // An allowed address first, a blocked one after it: the logical-host trap.
        "mixed.dns.test" => v4(&[[127, 0, 0, 2], [127, 0, 0, 1]]),
        "mixedrev.dns.test" => v4(&[[127, 0, 0, 1], [127, 0, 0, 2]]),
        // A first address that refuses, a second that answers: the retry policy's case.
        "retry.dns.test" => v4(&[[127, 0, 0, 2], [127, 0, 0, 1]]),
        // Names of refused addresses outside loopback (the namespace has no route to them).
        "wireserver.dns.test" => one("168.63.129.16"),
        "sitelocal.dns.test" => one("fec0::1"),
        "orchid.dns.test" => one("2001:20::1"),
        "outside.dns.test" => one("4000::1"),
        "nat64.dns.test" => one("64:ff9b::7f00:1"),
        "siit.dns.test" => one("::ffff:0:7f00:1"),
        "teredo.dns.test" => one("2001:0:4136:e378:8000:63bf:80ff:fffe"),
        // `a-b-c-d.ip.dns.test`: the IPv4 address a.b.c.d.
        _ => name
            .strip_suffix(".ip.dns.test")
            .and_then(|ip| ip.replace('-', ".").parse().ok())
            .map(|ip| vec![ip]),
    }
}

/// Starts the server on 127.0.0.1:53 once for this process.
pub fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let socket = UdpSocket::bind("127.0.0.1:53")
            .expect("DNS server on 127.0.0.1:53 (run the tests with scripts/test.sh)");
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                if let Some(answer) = answer(&buffer[..n]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
    });
}

/// One answer to one query (RFC 1035, just enough for c-ares).
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let length = usize::from(*query.get(at)?);
        at += 1;
        if length == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + length)?).to_ascii_lowercase());
        at += length;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let records = zone(&labels.join("."));
    let addresses: Vec<Vec<u8>> = records
        .iter()
        .flatten()
        .filter_map(|address| match (address, qtype) {
            (IpAddr::V4(a), 1) => Some(a.octets().to_vec()),
            (IpAddr::V6(a), 28) => Some(a.octets().to_vec()),
            _ => None,
        })
        .collect();
    let mut out = query.get(..2)?.to_vec();
    let rcode = if records.is_some() { 0 } else { 3 };
    out.extend_from_slice(&[0x84 | (query.get(2)? & 1), 0x80 | rcode]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for address in addresses {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 30, 0, address.len() as u8]);
        out.extend_from_slice(&address);
    }
    Some(out)
}
