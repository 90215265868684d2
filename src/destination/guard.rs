//! Envoy's guard before connecting, fed from the plugin policy.
//!
//! Envoy starts the connection to the host its load balancer picked before any wasm filter sees
//! that host, so the refusal before connecting is Envoy's upstream RBAC (envoy/*.yaml). Its
//! configuration is fixed plumbing: the built-in deny list, and conditions (CEL) that read the
//! picked address (`upstream.address`, `ip:port`) and request pseudo-headers hookgate sets here,
//! per webhook, in [`GUARD_SLOTS`] slots each:
//!
//! * [`GUARD_ALLOW_HEADERS`]: the exceptions that apply to this webhook (those for its port, or
//!   for every port), as RE2 patterns over `ip:port`; for an IP literal, the literal itself when
//!   an exception covers it. The guard lets through an address one of them matches.
//! * [`GUARD_DENY_HEADERS`]: the configured `deny_cidrs`, for webhooks to a name (a literal was
//!   judged by hookgate already). The guard refuses an address one of them matches.
//!
//! Without them (the default policy) the guard refuses the built-in list alone. A pattern that
//! Envoy cannot use (too large, malformed) makes its condition fail, and the guard then refuses:
//! the conditions are written so that every error means "not allowed". Envoy's CEL accepts a
//! pattern only up to 100 RE2 instructions, fixed in Envoy's code (no runtime key or API field
//! changes it), so the CIDRs are packed into several patterns, each within that budget
//! ([`PROGRAM_BUDGET`]); a policy that needs more than [`GUARD_SLOTS`] patterns is refused when the
//! configuration loads. IPv6 addresses are written by Envoy in a compressed form a CIDR pattern
//! cannot follow exactly, so an IPv6 exception must be one address (its exact text; wider ones
//! are refused), and configured IPv6 `deny_cidrs` are enforced by the check after DNS alone.
//! Pseudo-headers: no caller can send one, and Envoy's HTTP/1 codec never writes one to the
//! receiver.

use crate::cidr::Net;
use envoy_text::ipv6_text;
use std::net::{IpAddr, Ipv6Addr};

mod envoy_text;

/// How many patterns of each kind the shipped guard reads (its conditions name each slot).
pub const GUARD_SLOTS: usize = 8;
/// The exceptions that apply to a webhook (RE2 over Envoy's `ip:port`), one slot per pattern.
pub const GUARD_ALLOW_HEADERS: [&str; GUARD_SLOTS] = [
    ":hookgate-guard-allow-0",
    ":hookgate-guard-allow-1",
    ":hookgate-guard-allow-2",
    ":hookgate-guard-allow-3",
    ":hookgate-guard-allow-4",
    ":hookgate-guard-allow-5",
    ":hookgate-guard-allow-6",
    ":hookgate-guard-allow-7",
];
/// The configured deny CIDRs (RE2 over Envoy's `ip:port`), one slot per pattern.
pub const GUARD_DENY_HEADERS: [&str; GUARD_SLOTS] = [
    ":hookgate-guard-deny-0",
    ":hookgate-guard-deny-1",
    ":hookgate-guard-deny-2",
    ":hookgate-guard-deny-3",
    ":hookgate-guard-deny-4",
    ":hookgate-guard-deny-5",
    ":hookgate-guard-deny-6",
    ":hookgate-guard-deny-7",
];
/// The guard's policy for addresses outside the built-in list and the deny CIDRs; its name sorts
/// before [`EXCEPTED_POLICY`]'s, so that Envoy evaluates it first.
pub const PUBLIC_POLICY: &str = "1-public-destinations";
/// The guard's policy for addresses an exception names.
pub const EXCEPTED_POLICY: &str = "2-excepted-destinations";
/// Envoy's limit on a pattern in CEL (`regex_max_program_size`, in RE2 instructions; a constant
/// in Envoy's CEL evaluator).
const PROGRAM_BUDGET: usize = 100;
/// What anchors, the port and RE2's own instructions add to a pattern, counted generously.
const PATTERN_OVERHEAD: usize = 20;

/// One spelling of decimal numbers: a digit range per position.
type Digits = Vec<(u8, u8)>;

/// The decimal spellings (no leading zero) of every number in `lo..=hi`, as few as this simple
/// split gives: per digit count, a common prefix, then whole ranges.
fn number_spellings(lo: u8, hi: u8) -> Vec<Digits> {
    let mut out = Vec::new();
    for (min, max) in [(0_u16, 9_u16), (10, 99), (100, 255)] {
        let (a, b) = (u16::from(lo).max(min), u16::from(hi).min(max));
        if a <= b {
            same_length(&decimal(a), &decimal(b), &mut Vec::new(), &mut out);
        }
    }
    out
}

fn decimal(n: u16) -> Vec<u8> {
    n.to_string().bytes().map(|b| b - b'0').collect()
}

/// Spellings of every number from `a` to `b`, both of the same length, after `prefix`.
fn same_length(a: &[u8], b: &[u8], prefix: &mut Digits, out: &mut Vec<Digits>) {
    let (Some((&a0, a_rest)), Some((&b0, b_rest))) = (a.split_first(), b.split_first()) else {
        out.push(prefix.clone());
        return;
    };
    let mark = prefix.len();
    if a0 == b0 {
        prefix.push((a0, a0));
        same_length(a_rest, b_rest, prefix, out);
        prefix.truncate(mark);
        return;
    }
    let nines = vec![9; a_rest.len()];
    let zeros = vec![0; a_rest.len()];
    let low_whole = a_rest == zeros.as_slice();
    let high_whole = b_rest == nines.as_slice();
    if !low_whole {
        prefix.push((a0, a0));
        same_length(a_rest, &nines, prefix, out);
        prefix.truncate(mark);
    }
    let (mid_lo, mid_hi) = (
        if low_whole { a0 } else { a0 + 1 },
        if high_whole { b0 } else { b0 - 1 },
    );
    if mid_lo <= mid_hi {
        prefix.push((mid_lo, mid_hi));
        prefix.extend(std::iter::repeat_n((0, 9), a_rest.len()));
        out.push(prefix.clone());
        prefix.truncate(mark);
    }
    if !high_whole {
        prefix.push((b0, b0));
        same_length(&zeros, b_rest, prefix, out);
        prefix.truncate(mark);
    }
}

/// A pattern fragment and an upper bound of the RE2 instructions it compiles to (a literal
/// byte, a class: 1; `\d+`: 2; an alternation: 1 per alternative more).
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    text: String,
    cost: usize,
}

fn alternation(pieces: &[Piece]) -> Piece {
    let texts: Vec<&str> = pieces.iter().map(|p| p.text.as_str()).collect();
    Piece {
        text: match texts.as_slice() {
            [one] => (*one).to_string(),
            many => format!("(?:{})", many.join("|")),
        },
        cost: pieces.iter().map(|p| p.cost + 1).sum(),
    }
}

fn spelling_piece(digits: &Digits) -> Piece {
    let text = digits
        .iter()
        .map(|&(lo, hi)| match (lo, hi) {
            (lo, hi) if lo == hi => char::from(b'0' + lo).to_string(),
            (0, 9) => r"\d".to_string(),
            (lo, hi) => format!("[{lo}-{hi}]"),
        })
        .collect();
    Piece {
        text,
        cost: digits.len(),
    }
}

/// The addresses of an IPv4 network as Envoy writes them (dotted decimal, no leading zeros).
fn ipv4_piece(addr: u32, len: u32) -> Piece {
    let mut parts = Vec::with_capacity(4);
    for (i, octet) in addr.to_be_bytes().into_iter().enumerate() {
        let start = 8 * u32::try_from(i).unwrap_or(3);
        let part = if len >= start + 8 {
            Piece {
                text: octet.to_string(),
                cost: octet.to_string().len(),
            }
        } else if len <= start {
            Piece {
                text: r"\d+".into(),
                cost: 2,
            }
        } else {
            let host_bits = 8 - (len - start);
            let hi = octet | u8::try_from((1_u32 << host_bits) - 1).unwrap_or(u8::MAX);
            let spellings: Vec<Piece> = number_spellings(octet, hi)
                .iter()
                .map(spelling_piece)
                .collect();
            alternation(&spellings)
        };
        parts.push(part);
    }
    Piece {
        text: parts
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(r"\."),
        cost: parts.iter().map(|p| p.cost + 1).sum(),
    }
}

/// One IPv6 address as Envoy writes it, in brackets.
fn ipv6_piece(addr: Ipv6Addr) -> Piece {
    let text = ipv6_text(addr);
    Piece {
        cost: text.len() + 2,
        text: format!(r"\[{}\]", text.replace('.', r"\.")),
    }
}

/// The pattern fragment of one address.
fn address_piece(ip: IpAddr) -> Piece {
    match ip {
        IpAddr::V4(ip) => ipv4_piece(u32::from(ip), 32),
        IpAddr::V6(ip) => ipv6_piece(ip),
    }
}

fn fits(pieces: &[Piece]) -> bool {
    alternation(pieces).cost + PATTERN_OVERHEAD <= PROGRAM_BUDGET
}

/// The networks as alternations each within Envoy's budget once made a pattern, in order (each
/// takes networks while they fit); None when they need more than [`GUARD_SLOTS`] patterns.
fn grouped(pieces: &[Piece]) -> Option<Vec<String>> {
    let mut groups: Vec<Vec<Piece>> = Vec::new();
    for piece in pieces {
        match groups.last_mut() {
            Some(group) if fits(&[group.as_slice(), std::slice::from_ref(piece)].concat()) => {
                group.push(piece.clone());
            }
            _ if fits(std::slice::from_ref(piece)) => groups.push(vec![piece.clone()]),
            _ => return None,
        }
    }
    (groups.len() <= GUARD_SLOTS).then(|| groups.iter().map(|g| alternation(g).text).collect())
}

/// The whole pattern over `ip:port` for an alternation of [`grouped`]; `port` None: any port.
fn port_pattern(alternation: &str, port: Option<u16>) -> String {
    let port = port.map_or(r"\d+".to_string(), |p| p.to_string());
    format!("^{alternation}:{port}$")
}

/// The slots' pseudo-headers for these patterns.
fn slotted(
    names: &[&'static str; GUARD_SLOTS],
    patterns: &[String],
) -> Vec<(&'static str, String)> {
    names
        .iter()
        .copied()
        .zip(patterns.iter().cloned())
        .collect()
}

/// The guard's material, prepared when the configuration loads.
#[derive(Clone, Debug)]
pub(super) struct Guard {
    /// (network, port) of each exception, and its pattern fragment.
    allow: Vec<(Net, Option<u16>, Piece)>,
    /// For each exception's port (None: the exceptions for every port, which are also what
    /// applies to a port no exception names), the alternations of what applies there, packed
    /// once here rather than for every webhook.
    allow_by_port: Vec<(Option<u16>, Vec<String>)>,
    /// The configured IPv4 deny CIDRs as patterns, one per slot.
    deny: Vec<String>,
}

impl Guard {
    /// `allow`: each exception (network, port); `deny`: the configured deny CIDRs. Err names
    /// the key: an IPv6 exception, or more CIDRs than the guard's patterns can hold.
    pub(super) fn new(allow: &[(Net, Option<u16>)], deny: &[Net]) -> Result<Guard, String> {
        let mut rules = Vec::with_capacity(allow.len());
        for (i, &(net, port)) in allow.iter().enumerate() {
            let piece = match net {
                Net::V4 { addr, len } => ipv4_piece(addr, len),
                Net::V6 { addr, len: 128 } => ipv6_piece(Ipv6Addr::from(addr)),
                Net::V6 { .. } => {
                    return Err(format!(
                        "destination.allow[{i}].cidr: an IPv6 exception must be one address \
                         (/128): Envoy's guard before connecting matches IPv6 addresses by \
                         their exact text"
                    ))
                }
            };
            rules.push((net, port, piece));
        }
        let mut guard = Guard {
            allow: rules,
            allow_by_port: Vec::new(),
            deny: Vec::new(),
        };
        // Every set of exceptions a webhook can carry is the set of some exception's port.
        let mut allow_by_port = Vec::new();
        let ports = guard.allow.iter().map(|(_, port, _)| *port);
        for port in ports.chain(std::iter::once(None)) {
            if allow_by_port.iter().any(|(p, _)| *p == port) {
                continue;
            }
            let applying = guard.applying(port);
            let Some(groups) = grouped(&applying) else {
                let which = port.map_or("every port".to_string(), |p| format!("port {p}"));
                return Err(format!(
                    "destination.allow: too many exceptions apply to {which} for Envoy's guard \
                     before connecting ({} CIDRs; at most {GUARD_SLOTS} patterns of \
                     {PROGRAM_BUDGET} RE2 instructions, 2 to 8 CIDRs each): merge them into \
                     fewer, wider CIDRs, or spread them over ports",
                    applying.len()
                ));
            };
            allow_by_port.push((port, groups));
        }
        guard.allow_by_port = allow_by_port;
        let deny: Vec<Piece> = deny
            .iter()
            .filter_map(|net| match *net {
                Net::V4 { addr, len } => Some(ipv4_piece(addr, len)),
                Net::V6 { .. } => None,
            })
            .collect();
        let Some(deny) = grouped(&deny) else {
            return Err(format!(
                "destination.deny_cidrs: too many IPv4 CIDRs for Envoy's guard before connecting \
                 ({}; at most {GUARD_SLOTS} patterns of {PROGRAM_BUDGET} RE2 instructions, 2 to 8 \
                 CIDRs each): merge them into fewer, wider CIDRs",
                deny.len()
            ));
        };
        let deny = deny.iter().map(|a| port_pattern(a, None)).collect();
        Ok(Guard { deny, ..guard })
    }

    /// The pattern fragments of the exceptions for `port` (its own, and those for every port).
    fn applying(&self, port: Option<u16>) -> Vec<Piece> {
        self.allow
            .iter()
            .filter(|(_, p, _)| p.is_none() || *p == port)
            .map(|(_, _, piece)| piece.clone())
            .collect()
    }

    /// The pseudo-headers for a webhook to `port`, whose host is the IP literal `literal` or a
    /// name (None). Empty when nothing of the plugin's policy applies: the guard's built-in list
    /// alone then decides.
    pub(super) fn headers(
        &self,
        literal: Option<IpAddr>,
        port: u16,
    ) -> Vec<(&'static str, String)> {
        let allow: Vec<String> = match literal {
            Some(ip) => self
                .allow
                .iter()
                .filter(|(net, p, _)| (p.is_none() || *p == Some(port)) && net.contains(ip))
                .take(1)
                .map(|_| port_pattern(&address_piece(ip).text, Some(port)))
                .collect(),
            None => self
                .allow_by_port
                .iter()
                .find(|(p, _)| *p == Some(port))
                .or_else(|| self.allow_by_port.iter().find(|(p, _)| p.is_none()))
                .map(|(_, groups)| groups.iter().map(|a| port_pattern(a, Some(port))).collect())
                .unwrap_or_default(),
        };
        let mut out = slotted(&GUARD_ALLOW_HEADERS, &allow);
        if literal.is_none() {
            out.extend(slotted(&GUARD_DENY_HEADERS, &self.deny));
        }
        out
    }
}

/// The upstream RBAC's `rules`, as every shipped configuration writes them (plumbing no operator
/// edits; `hookgate check` compares): allowed when outside the built-in list and outside the
/// configured deny CIDRs, or when an exception names the address.
pub fn guard_rules() -> serde_json::Value {
    use serde_json::json;
    let deny_list: Vec<serde_json::Value> = super::DEFAULT_RANGES
        .iter()
        .filter_map(|r| r.cidr.split_once('/'))
        .map(|(address, len)| {
            json!({"matcher": {
                "name": "envoy.rbac.matchers.upstream_ip_port",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.rbac.matchers.upstream_ip_port.v3.UpstreamIpPortMatcher",
                    "upstream_ip": {"address_prefix": address, "prefix_len": len.parse::<u32>().unwrap_or(0)}
                }
            }})
        })
        .collect();
    // CEL, as Envoy takes it (a parsed expression): `"h" in request.headers`, and
    // `upstream.address.matches(request.headers["h"])`.
    let select = |operand: &str, field: &str| json!({"select_expr": {"operand": {"ident_expr": {"name": operand}}, "field": field}});
    let call = |function: &str, args: Vec<serde_json::Value>| json!({"call_expr": {"function": function, "args": args}});
    let present = |h: &str| {
        call(
            "@in",
            vec![
                json!({"const_expr": {"string_value": h}}),
                select("request", "headers"),
            ],
        )
    };
    let matches = |h: &str| {
        json!({"call_expr": {
            "target": select("upstream", "address"),
            "function": "matches",
            "args": [call("_[_]", vec![select("request", "headers"), json!({"const_expr": {"string_value": h}})])]
        }})
    };
    // Each slot: outside when absent, inside when present and matched. CEL's `||` is true when
    // either side is, even if the other failed; its `&&` false when either side is: so a failed
    // pattern never lets an address through.
    let unmatched = |h: &str| {
        call(
            "_||_",
            vec![call("!_", vec![present(h)]), call("!_", vec![matches(h)])],
        )
    };
    let matched = |h: &str| call("_&&_", vec![present(h), matches(h)]);
    // `c0 op (c1 op (... op c7))`, as the shipped YAML nests it.
    let chain = |function: &str, clauses: Vec<serde_json::Value>| {
        clauses
            .into_iter()
            .rev()
            .reduce(|rest, clause| call(function, vec![clause, rest]))
            .unwrap_or(serde_json::Value::Null)
    };
    // hookgate fills the slots from 0 (`slotted`), so slot 0 absent means every slot is: the
    // common case (no deny CIDRs, no exception) then reads one header per policy, not eight.
    let [deny_0, ..] = GUARD_DENY_HEADERS;
    let [allow_0, ..] = GUARD_ALLOW_HEADERS;
    let unmatched_all = chain(
        "_&&_",
        GUARD_DENY_HEADERS.iter().map(|h| unmatched(h)).collect(),
    );
    let matched_any = chain(
        "_||_",
        GUARD_ALLOW_HEADERS.iter().map(|h| matched(h)).collect(),
    );
    // Envoy's RBAC evaluates its policies in name order and stops at the first that matches:
    // the names put the common case (a public address) first.
    json!({
        "action": "ALLOW",
        "policies": {
            PUBLIC_POLICY: {
                "principals": [{"any": true}],
                "permissions": [{"not_rule": {"or_rules": {"rules": deny_list}}}],
                "condition": call("_||_", vec![call("!_", vec![present(deny_0)]), unmatched_all]),
            },
            EXCEPTED_POLICY: {
                "principals": [{"any": true}],
                "permissions": [{"any": true}],
                "condition": call("_&&_", vec![present(allow_0), matched_any]),
            }
        }
    })
}

#[cfg(test)]
mod tests;
