//! Every way a webhook can end other than success, mapped in one place to its envelope code,
//! HTTP status, `x-hookgate-delivered` value and log line.

use std::fmt;

/// The documented envelope codes (`sendpulse-send-webhook.txt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success = 1,
    RequestFailed = 11110111,
    InvalidResponseFormat = 11110112,
    CodeVerification = 11110113,
    IncorrectUrlIp = 11110114,
    QueryError = 21111011,
}

impl Code {
    /// The document's message for the code (success carries the receiver's body instead).
    pub fn message(self) -> &'static str {
        match self {
            Code::Success => "",
            Code::RequestFailed => "The request failed",
            Code::InvalidResponseFormat => "Invalid response format. Expects json!",
            Code::CodeVerification => "The request did not pass code verification",
            Code::IncorrectUrlIp => "Incorrect url ip",
            Code::QueryError => "Error during query execution",
        }
    }

    pub fn number(self) -> u32 {
        self as u32
    }
}

/// Whether the webhook reached the receiver, told to the engine in `x-hookgate-delivered` so
/// that no retry policy can send it twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    Yes,
    No,
    Unknown,
}

impl Delivered {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivered::Yes => "yes",
            Delivered::No => "no",
            Delivered::Unknown => "unknown",
        }
    }
}

/// Every failure hookgate reports. The `String` fields are human-readable details that go to
/// `x-hookgate-detail` and the log, never into the envelope (whose messages are fixed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The engine used a method other than POST.
    MethodNotAllowed(String),
    /// The engine's content-type is not JSON.
    UnsupportedMediaType(String),
    /// The engine's body is over `max_event_bytes`.
    EventTooLarge(usize),
    /// Envoy cut the engine's request by one of its timeouts before the event was whole (slow or
    /// stalled headers or body); the value is Envoy's `code_details` naming the timeout.
    EventTimeout(String),
    /// The event is not JSON, or has the wrong shape or types.
    InvalidEvent(String),
    /// The webhook name breaks the name rule.
    InvalidName(String),
    /// The webhook URL breaks the URL rules (scheme, userinfo, characters, parse).
    InvalidUrl(String),
    /// The caller is not allowed to use the gateway.
    CallerRefused(String),
    /// The destination is blocked or local (SSRF policy, in the filter or in Envoy's RBAC).
    BlockedDestination(String),
    /// The hourly limit refuses this send; the value is Retry-After in seconds.
    OverLimit(u64),
    /// The limit state could not be read or written (table full, contention, store down).
    LimitUnavailable(String),
    /// The webhook never left: its host's name gave no address to connect to (no such name,
    /// no IPv4 address, or DNS did not answer in time).
    DnsFailed(String),
    /// The webhook never left: connection refused, reset before sending, Envoy's own bounds.
    NeverSent(String),
    /// The webhook left but no answer came back: timeout, reset after sending, unclear.
    NoAnswer(String),
    /// The receiver answered with a non-2xx status.
    ReceiverStatus(u16),
    /// The receiver answered 2xx with a body that is not JSON (or empty, or over the cap).
    ReceiverNotJson(String),
    /// The receiver answered with a verification key that does not match.
    WrongKey,
    /// A failure of the filter itself (a host call refused).
    Internal(String),
}

impl Failure {
    pub fn code(&self) -> Code {
        match self {
            Failure::MethodNotAllowed(_)
            | Failure::UnsupportedMediaType(_)
            | Failure::EventTooLarge(_)
            | Failure::EventTimeout(_)
            | Failure::InvalidEvent(_)
            | Failure::InvalidName(_)
            | Failure::InvalidUrl(_)
            | Failure::CallerRefused(_)
            | Failure::LimitUnavailable(_)
            | Failure::Internal(_) => Code::QueryError,
            Failure::BlockedDestination(_) => Code::IncorrectUrlIp,
            Failure::OverLimit(_) | Failure::WrongKey => Code::CodeVerification,
            Failure::DnsFailed(_)
            | Failure::NeverSent(_)
            | Failure::NoAnswer(_)
            | Failure::ReceiverStatus(_) => Code::RequestFailed,
            Failure::ReceiverNotJson(_) => Code::InvalidResponseFormat,
        }
    }

    /// The HTTP status the engine gets.
    pub fn http_status(&self) -> u32 {
        match self {
            Failure::MethodNotAllowed(_) => 405,
            Failure::UnsupportedMediaType(_) => 415,
            Failure::EventTooLarge(_) => 413,
            Failure::EventTimeout(_) => 408,
            Failure::InvalidEvent(_) | Failure::InvalidName(_) | Failure::InvalidUrl(_) => 400,
            Failure::CallerRefused(_) | Failure::BlockedDestination(_) => 403,
            Failure::OverLimit(_) => 429,
            Failure::LimitUnavailable(_) => 503,
            Failure::DnsFailed(_) | Failure::NeverSent(_) => 502,
            Failure::NoAnswer(_) => 504,
            Failure::ReceiverStatus(_) | Failure::ReceiverNotJson(_) | Failure::WrongKey => 200,
            Failure::Internal(_) => 500,
        }
    }

    pub fn delivered(&self) -> Delivered {
        match self {
            Failure::ReceiverStatus(_) | Failure::ReceiverNotJson(_) | Failure::WrongKey => {
                Delivered::Yes
            }
            Failure::NoAnswer(_) => Delivered::Unknown,
            _ => Delivered::No,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::MethodNotAllowed(_) => "method_not_allowed",
            Failure::UnsupportedMediaType(_) => "unsupported_media_type",
            Failure::EventTooLarge(_) => "event_too_large",
            Failure::EventTimeout(_) => "event_timeout",
            Failure::InvalidEvent(_) => "invalid_event",
            Failure::InvalidName(_) => "invalid_name",
            Failure::InvalidUrl(_) => "invalid_url",
            Failure::CallerRefused(_) => "caller_refused",
            Failure::BlockedDestination(_) => "blocked_destination",
            Failure::OverLimit(_) => "over_limit",
            Failure::LimitUnavailable(_) => "limit_unavailable",
            Failure::DnsFailed(_) => "dns_failure",
            Failure::NeverSent(_) => "never_sent",
            Failure::NoAnswer(_) => "no_answer",
            Failure::ReceiverStatus(_) => "receiver_status",
            Failure::ReceiverNotJson(_) => "receiver_not_json",
            Failure::WrongKey => "wrong_key",
            Failure::Internal(_) => "internal",
        }
    }

    /// `Retry-After` seconds, for the refusals that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::OverLimit(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// The human-readable detail, for `x-hookgate-detail` and the log line.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::MethodNotAllowed(method) => write!(f, "method {method} not allowed, use POST"),
            Failure::UnsupportedMediaType(ct) => {
                write!(f, "content-type {ct:?} is not application/json")
            }
            Failure::EventTooLarge(limit) => write!(f, "event body over {limit} bytes"),
            // The same words as the local-reply mapper for the requests hookgate never saw.
            Failure::EventTimeout(timeout) => write!(f, "event not received in time: {timeout}"),
            Failure::InvalidEvent(why) => write!(f, "invalid event: {why}"),
            Failure::InvalidName(why) => write!(f, "invalid webhook name: {why}"),
            Failure::InvalidUrl(why) => write!(f, "invalid webhook url: {why}"),
            Failure::CallerRefused(why) => write!(f, "caller refused: {why}"),
            Failure::BlockedDestination(why) => write!(f, "destination blocked: {why}"),
            Failure::OverLimit(retry) => {
                write!(
                    f,
                    "hourly limit reached for this webhook, retry in {retry} s"
                )
            }
            Failure::LimitUnavailable(why) => write!(f, "limit state unavailable: {why}"),
            Failure::DnsFailed(why) => write!(f, "webhook not sent: DNS: {why}"),
            Failure::NeverSent(why) => write!(f, "webhook not sent: {why}"),
            Failure::NoAnswer(why) => write!(f, "no answer from receiver: {why}"),
            Failure::ReceiverStatus(status) => write!(f, "receiver answered HTTP {status}"),
            Failure::ReceiverNotJson(why) => write!(f, "receiver answer is not JSON: {why}"),
            Failure::WrongKey => write!(f, "receiver answered with a wrong verification key"),
            Failure::Internal(why) => write!(f, "internal failure: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_contract() {
        let cases = [
            (
                Failure::InvalidName("x".into()),
                400,
                21111011,
                Delivered::No,
            ),
            (Failure::EventTooLarge(1), 413, 21111011, Delivered::No),
            (
                Failure::EventTimeout("request_overall_timeout".into()),
                408,
                21111011,
                Delivered::No,
            ),
            (
                Failure::MethodNotAllowed("GET".into()),
                405,
                21111011,
                Delivered::No,
            ),
            (
                Failure::UnsupportedMediaType("text/plain".into()),
                415,
                21111011,
                Delivered::No,
            ),
            (
                Failure::BlockedDestination("x".into()),
                403,
                11110114,
                Delivered::No,
            ),
            (Failure::OverLimit(5), 429, 11110113, Delivered::No),
            (Failure::WrongKey, 200, 11110113, Delivered::Yes),
            (Failure::NeverSent("x".into()), 502, 11110111, Delivered::No),
            (Failure::DnsFailed("x".into()), 502, 11110111, Delivered::No),
            (
                Failure::NoAnswer("x".into()),
                504,
                11110111,
                Delivered::Unknown,
            ),
            (Failure::ReceiverStatus(500), 200, 11110111, Delivered::Yes),
            (
                Failure::ReceiverNotJson("x".into()),
                200,
                11110112,
                Delivered::Yes,
            ),
            (Failure::Internal("x".into()), 500, 21111011, Delivered::No),
        ];
        for (failure, status, code, delivered) in cases {
            assert_eq!(failure.http_status(), status, "{failure:?}");
            assert_eq!(failure.code().number(), code, "{failure:?}");
            assert_eq!(failure.delivered(), delivered, "{failure:?}");
        }
    }

    #[test]
    fn messages_are_the_documents() {
        assert_eq!(Code::QueryError.message(), "Error during query execution");
        assert_eq!(Code::RequestFailed.message(), "The request failed");
        assert_eq!(
            Code::InvalidResponseFormat.message(),
            "Invalid response format. Expects json!"
        );
        assert_eq!(
            Code::CodeVerification.message(),
            "The request did not pass code verification"
        );
        assert_eq!(Code::IncorrectUrlIp.message(), "Incorrect url ip");
    }
}
