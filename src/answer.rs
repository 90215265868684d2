//! Judging what came back from the receiver, or what Envoy answered in its place.

use crate::error::Failure;

/// The receiver's own answer (`code_details` = `via_upstream`): its body as text when the
/// contract calls it a success, else the failure. `truncated` means the body went over
/// `max_response_bytes` and was dropped.
pub fn judge_receiver(status: u16, body: &[u8], truncated: Option<usize>) -> Result<&str, Failure> {
    if !(200..300).contains(&status) {
        return Err(Failure::ReceiverStatus(status));
    }
    if let Some(limit) = truncated {
        return Err(Failure::ReceiverNotJson(format!(
            "answer over {limit} bytes"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Failure::ReceiverNotJson("answer is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(Failure::ReceiverNotJson("empty answer".into()));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
        Failure::ReceiverNotJson(format!("{:?} at column {}", e.classify(), e.column()))
    })?;
    Ok(text)
}

/// A reply Envoy made itself after hookgate let the webhook go (RBAC, the forward proxy, the
/// router), judged from its `response.code_details`. Anything not known to have stopped before
/// the request reached the receiver is `NoAnswer`: the slot stays used and the engine is told
/// `unknown`, so no retry can send the webhook twice. Envoy's RBAC refusal (the router's upstream
/// RBAC on the host picked, before any connection) is final: the destination is blocked.
pub fn judge_envoy_reply(status: u16, code_details: &str) -> Failure {
    // Sub-cluster mode: a sub-cluster's hosts are exactly the addresses its name resolved to (no
    // health checks), so no healthy host means the name resolved to nothing (NXDOMAIN, a DNS
    // server that refused or failed, or only addresses of the family not looked up); a warming
    // timeout means DNS did not answer in time (measured: an unknown name gives
    // `no_healthy_upstream`, tests/core.rs).
    const DNS: &[(&str, &str)] = &[
        (
            "no_healthy_upstream",
            "the name resolved to no IPv4 address",
        ),
        ("dns_resolution_failure", "the name did not resolve"),
        ("sub_cluster_warming_timeout", "no answer from DNS in time"),
    ];
    const NEVER_SENT: &[&str] = &[
        "connection_failure",
        "delayed_connect_error",
        // The TCP connection never completed: nothing was written to the receiver.
        "connection_timeout",
        "sub_cluster_overflow",
        "dns_cache_overflow",
        "dynamic_forward_proxy_pending_request_overflow",
        "overflow",
        "cluster_not_found",
        "route_not_found",
        "direct_response",
        "maintenance_mode",
        "no_route",
    ];
    if code_details.starts_with("rbac_access_denied") {
        return Failure::BlockedDestination(
            "the resolved address is refused by Envoy's destination policy".into(),
        );
    }
    if let Some((_, why)) = DNS.iter().find(|(marker, _)| code_details.contains(marker)) {
        return Failure::DnsFailed(format!("{why} (Envoy answered {status}: {code_details})"));
    }
    if NEVER_SENT
        .iter()
        .any(|marker| code_details.contains(marker))
    {
        return Failure::NeverSent(format!("Envoy answered {status}: {code_details}"));
    }
    Failure::NoAnswer(format!("Envoy answered {status}: {code_details}"))
}

/// Envoy's `code_details` for the timeouts that cut the engine's own request:
/// `request_headers_timeout`, `request_timeout` and `stream_idle_timeout` of the listener.
const ENGINE_TIMEOUTS: &[&str] = &[
    "request_header_timeout",
    "request_overall_timeout",
    "stream_idle_timeout",
];

/// A reply Envoy made before hookgate let the webhook go (nothing was sent), judged from its
/// `response.code_details`. `event_read`: the whole event was read and the request waits on
/// hookgate (for etcd's decision), so a timeout then is the limit state's, not the engine's.
pub fn judge_envoy_reply_before_sending(
    code_details: &str,
    event_read: bool,
    max_event_bytes: usize,
) -> Failure {
    if code_details.starts_with("rbac_access_denied") {
        return Failure::CallerRefused("source refused by Envoy's RBAC".into());
    }
    if code_details.contains("request_payload_too_large") {
        return Failure::EventTooLarge(max_event_bytes);
    }
    if ENGINE_TIMEOUTS.contains(&code_details) {
        return if event_read {
            Failure::LimitUnavailable(format!("no decision before Envoy's {code_details}"))
        } else {
            Failure::EventTimeout(code_details.into())
        };
    }
    Failure::Internal(format!(
        "Envoy answered before the event was read: {code_details}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Delivered;

    #[test]
    fn two_hundreds_with_json_succeed_with_the_body_as_received() {
        assert_eq!(judge_receiver(200, b" {\"a\":1} ", None), Ok(" {\"a\":1} "));
        assert_eq!(judge_receiver(204, b"[]", None), Ok("[]"));
        assert_eq!(judge_receiver(299, b"\"text\"", None), Ok("\"text\""));
    }

    #[test]
    fn non_json_bodies_are_invalid_format() {
        for body in [&b""[..], b"  ", b"ok", b"{\"a\":", b"\xff\xfe", b"{} {}"] {
            assert_eq!(
                judge_receiver(200, body, None).map_err(|f| f.code().number()),
                Err(11110112),
                "{body:?}"
            );
        }
        assert_eq!(
            judge_receiver(200, b"{}", Some(10)).map_err(|f| f.code().number()),
            Err(11110112)
        );
    }

    #[test]
    fn non_two_hundreds_failed_whatever_the_body() {
        for status in [100, 199, 300, 302, 404, 500, 503] {
            assert_eq!(
                judge_receiver(status, b"{}", None),
                Err(Failure::ReceiverStatus(status))
            );
        }
    }

    #[test]
    fn envoy_replies_are_told_apart() {
        let refused = "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}";
        assert_eq!(judge_envoy_reply(503, refused).http_status(), 502);
        assert_eq!(
            judge_envoy_reply(503, "dns_resolution_failure{x}").http_status(),
            502
        );
        let timeout = judge_envoy_reply(
            503,
            "upstream_reset_before_response_started{connection_timeout}",
        );
        assert_eq!(
            (timeout.http_status(), timeout.delivered()),
            (502, Delivered::No)
        );
        assert_eq!(
            judge_envoy_reply(504, "upstream_response_timeout").http_status(),
            504
        );
        assert_eq!(
            judge_envoy_reply(
                503,
                "upstream_reset_before_response_started{connection_termination}"
            )
            .http_status(),
            504
        );
        assert_eq!(
            judge_envoy_reply(403, "rbac_access_denied_matched_policy[blocked]")
                .code()
                .number(),
            11110114
        );
        assert_eq!(judge_envoy_reply(500, "").http_status(), 504);
    }

    #[test]
    fn dns_failures_say_dns() {
        let failure = judge_envoy_reply(503, "no_healthy_upstream");
        assert_eq!(failure.reason(), "dns_failure");
        assert_eq!(
            failure.to_string(),
            "webhook not sent: DNS: the name resolved to no IPv4 address \
             (Envoy answered 503: no_healthy_upstream)"
        );
        let slow = judge_envoy_reply(503, "sub_cluster_warming_timeout");
        assert_eq!(
            slow.to_string(),
            "webhook not sent: DNS: no answer from DNS in time \
             (Envoy answered 503: sub_cluster_warming_timeout)"
        );
        assert_eq!(
            judge_envoy_reply(503, "sub_cluster_overflow").reason(),
            "never_sent"
        );
    }

    #[test]
    fn sub_cluster_dns_failures_were_never_sent() {
        for details in [
            "no_healthy_upstream",
            "sub_cluster_warming_timeout",
            "sub_cluster_overflow",
            "dns_resolution_failure{cares_norecords:Domain_name_not_found}",
        ] {
            let failure = judge_envoy_reply(503, details);
            assert_eq!(failure.http_status(), 502, "{details}");
            assert_eq!(failure.code().number(), 11110111, "{details}");
            assert_eq!(failure.delivered(), Delivered::No, "{details}");
        }
    }

    #[test]
    fn upstream_rbac_refusal_is_a_blocked_destination() {
        let failure = judge_envoy_reply(403, "rbac_access_denied_matched_policy[none]");
        assert_eq!(failure.http_status(), 403);
        assert_eq!(failure.code().number(), 11110114);
        assert_eq!(failure.delivered(), Delivered::No);
    }

    /// A slow or stalled engine is told 408 / 21111011 / nothing sent, with the timeout named;
    /// never an internal failure.
    #[test]
    fn engine_timeouts_are_408_never_internal() {
        for details in ENGINE_TIMEOUTS {
            let failure = judge_envoy_reply_before_sending(details, false, 10);
            assert_eq!(failure, Failure::EventTimeout((*details).into()));
            assert_eq!(
                (failure.http_status(), failure.code().number()),
                (408, 21111011)
            );
            assert_eq!(failure.delivered(), Delivered::No);
            assert_eq!(
                failure.to_string(),
                format!("event not received in time: {details}")
            );
        }
        let waiting = judge_envoy_reply_before_sending("request_overall_timeout", true, 10);
        assert_eq!(waiting.reason(), "limit_unavailable");
    }

    #[test]
    fn other_replies_before_sending() {
        let judge = |details| judge_envoy_reply_before_sending(details, false, 10);
        assert_eq!(
            judge("rbac_access_denied_matched_policy[refused-callers]").reason(),
            "caller_refused"
        );
        assert_eq!(
            judge("request_payload_too_large"),
            Failure::EventTooLarge(10)
        );
        assert_eq!(judge("something_else").reason(), "internal");
    }

    /// Found by fuzzing (fuzz target `receiver_answer`, RELIABILITY.md): an answer that is a
    /// number beyond f64 (`23.44e441`) is valid JSON (RFC 8259 sets no range): a success, its
    /// body passed on as received, not "Invalid response format".
    #[test]
    fn numbers_beyond_f64_are_json() {
        assert_eq!(
            judge_receiver(258, b"23.44e441\n\n\n", None),
            Ok("23.44e441\n\n\n")
        );
        assert_eq!(
            judge_receiver(200, br#"{"n":-1e400}"#, None),
            Ok(r#"{"n":-1e400}"#)
        );
    }
}
