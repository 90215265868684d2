//! Every header name hookgate sets or reads, in one place, and the rules for names a
//! configuration may use (static headers, the caller token's header).

/// The route in Envoy only accepts requests that carry this header, which hookgate sets after
/// removing every header the caller sent: nothing but a rewritten webhook reaches the forward
/// proxy.
pub const ROUTE_MARKER: &str = "x-hookgate-route";
/// `x-hookgate-test: true` asks for the test report instead of the envelope.
pub const TEST: &str = "x-hookgate-test";
/// Set on the engine's request when hookgate answers it itself (the first local reply mapper of
/// the shipped configurations matches it and ends the search). A pseudo-header, so that no caller
/// can send it: HTTP/1 has no syntax for it, HTTP/2 refuses pseudo-headers it does not define.
pub const REPLIED_MARKER: &str = ":hookgate-replied";
/// The engine's own idempotency key for an event, when it has one: a signed webhook carries it
/// as its `webhook-id`, so a resend of the same event keeps its id.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// To the engine: whether the webhook reached the receiver (`yes`, `no`, `unknown`).
pub const DELIVERED: &str = "x-hookgate-delivered";
/// To the engine: the failure's detail, printable ASCII.
pub const DETAIL: &str = "x-hookgate-detail";
/// To the engine: the receiver's own status, when it answered.
pub const UPSTREAM_STATUS: &str = "x-hookgate-upstream-status";
/// Names of hookgate's own headers to the engine and receiver start with this.
pub const OWN_PREFIX: &str = "x-hookgate-";

/// Headers hookgate or Envoy set or read, or that change how a request travels: neither a static
/// header nor the caller token's header may be one of them.
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
    "user-agent",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    ROUTE_MARKER,
    TEST,
];

/// A lower-case header name (the form configuration keys must use).
pub fn is_lowercase_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Set or read by hookgate or Envoy (see `RESERVED`), or one of Envoy's `x-envoy-*`.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with("x-envoy-")
}

/// A header value hookgate writes: printable ASCII only, at most 300 characters.
pub fn header_safe(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c))
        .take(300)
        .collect()
}
