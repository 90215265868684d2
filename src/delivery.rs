//! One engine request, host-free: the event in, the webhook out, the envelope back.
//!
//! [`Delivery`] is the request's state machine. The proxy-wasm layer hands it each callback
//! (request headers, body chunks, trailers, response headers and body chunks, etcd replies,
//! which include their timeouts) together with a [`Host`]; the delivery reads what it needs
//! through the host and answers with its effects: headers and bodies set, a local reply, a call
//! to etcd, a stream resumed, counters and the decision record. Each callback returns the
//! [`Flow`] the host should take. Unit tests drive it with a recording host (`tests/`).

mod answer;
#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod host_calls;
mod limit;
mod request;
#[cfg(test)]
mod tests;

use crate::clock::Clock;
use crate::config::Settings;
use crate::destination::Destination;
use crate::error::Failure;
use crate::event::Webhook;
use crate::limit::etcd::Reply;
use crate::limit::slot::Slot;
use crate::limit::SharedStore;
use crate::report::SentRequest;
use std::cell::Cell;
use std::rc::Rc;

/// A host status other than Ok (see the proxy-wasm ABI: 1 NotFound, 2 BadArgument, 8
/// CasMismatch...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u32);

pub type HostResult<T> = Result<T, HostError>;

/// What a delivery asks of its host. Every call returns its status instead of failing hard:
/// a failure becomes an envelope or a log line, never a crash.
pub trait Host {
    /// The engine's request headers in the proxy-wasm map encoding (`abi::map_pairs` reads it).
    fn request_headers(&self) -> HostResult<Vec<u8>>;
    /// The address the engine's connection comes from (`source.address`, `ip:port`).
    fn source_address(&self) -> HostResult<Option<Vec<u8>>>;
    /// The engine's body buffered so far (`size` bytes).
    fn request_body(&self, size: usize) -> HostResult<Vec<u8>>;
    /// Replaces every request header (pseudo-headers included).
    fn set_request_headers(&self, headers: &[(&str, &str)]) -> HostResult<()>;
    /// Replaces the `size` bytes of buffered request body.
    fn set_request_body(&self, size: usize, body: &[u8]) -> HostResult<()>;
    /// Sets one request header.
    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()>;
    /// Drops the engine's request trailers.
    fn remove_request_trailers(&self) -> HostResult<()>;
    /// Lets a paused request go on.
    fn resume_request(&self) -> HostResult<()>;
    /// Answers the engine itself.
    fn local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()>;
    /// One response header as text.
    fn response_header(&self, name: &str) -> HostResult<Option<String>>;
    /// Every response header as text.
    fn response_headers(&self) -> HostResult<Vec<(String, String)>>;
    /// The status of the answer the engine got (`response.code`), if there was one.
    fn response_code(&self) -> HostResult<Option<Vec<u8>>>;
    /// Envoy's `response.code_details` for this stream.
    fn response_code_details(&self) -> HostResult<Option<Vec<u8>>>;
    /// The address of the host the router picked (`upstream.address`), once it has.
    fn upstream_address(&self) -> HostResult<Option<Vec<u8>>>;
    /// Replaces every response header.
    fn set_response_headers(&self, headers: &[(&str, &str)]) -> HostResult<()>;
    /// The `size` bytes of response body the host holds now.
    fn response_body(&self, size: usize) -> HostResult<Vec<u8>>;
    /// Replaces the `size` bytes of response body the host holds.
    fn set_response_body(&self, size: usize, body: &[u8]) -> HostResult<()>;
    /// Lets a paused response go on.
    fn resume_response(&self) -> HostResult<()>;
    /// `POST path` with a JSON body to an Envoy cluster; the reply comes to
    /// [`Delivery::on_etcd_reply`].
    fn dispatch(
        &self,
        cluster: &str,
        path: &str,
        body: &[u8],
        timeout: std::time::Duration,
    ) -> HostResult<()>;
    /// Keeps the decision record where the access log reads it.
    fn set_decision(&self, record: &str) -> HostResult<()>;
    /// A `webhook-id` no other delivery of any Envoy gets.
    fn new_webhook_id(&self) -> String;
    /// `hookgate.sent`.
    fn count_sent(&self);
    /// The outcome counter (with the envelope code for an answer).
    fn count_outcome(&self, reason: &'static str, code: Option<u32>);
    /// The receiver's answers by status class.
    fn count_receiver_answer(&self, status: u16);
    /// The limit table's store (shared by every worker).
    fn store(&self) -> &dyn SharedStore;
    /// The host's clock.
    fn clock(&self) -> &dyn Clock;
}

/// What the host does with the stream after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

enum Phase {
    /// Reading the engine's request.
    Receiving,
    /// hookgate answered itself; its reply passes back through untouched.
    Replied,
    /// The webhook went towards the receiver.
    Sent,
}

/// What the response headers told: the receiver answered, or Envoy answered in its place.
enum Upstream {
    Receiver { status: u16 },
    Envoy(Failure),
}

pub struct Delivery {
    settings: Option<Rc<Settings>>,
    phase: Phase,
    test: bool,
    webhook: Option<Webhook>,
    destination: Option<Rc<Destination>>,
    /// This delivery's slot in the hourly limit, and the etcd call in flight for it.
    slot: Slot,
    sent: Option<SentRequest>,
    upstream: Option<Upstream>,
    received_headers: Vec<(String, String)>,
    receiver_status: Option<u16>,
    /// Set when the receiver's answer went over `max_response_bytes` and was dropped.
    truncated: bool,
    /// The receiver's answer so far (at most max_response_bytes).
    answer_body: Vec<u8>,
    /// The engine's body buffered so far, for a body that ends with trailers.
    request_body_size: usize,
    /// The engine's answer is written and waits for an etcd write (give-back, verification).
    holding_response: bool,
    /// The engine's `idempotency-key` header, if it sent one.
    idempotency_key: Option<String>,
    /// Set once hookgate has decided this request's answer (and counted it).
    decided: Cell<bool>,
}

impl Delivery {
    /// A delivery under these settings; without any (an invalid configuration), every request
    /// is answered with 500.
    pub fn new(settings: Option<Rc<Settings>>) -> Self {
        Delivery {
            settings,
            phase: Phase::Receiving,
            test: false,
            webhook: None,
            destination: None,
            slot: Slot::default(),
            sent: None,
            upstream: None,
            received_headers: Vec::new(),
            receiver_status: None,
            truncated: false,
            answer_body: Vec::new(),
            request_body_size: 0,
            holding_response: false,
            idempotency_key: None,
            decided: Cell::new(false),
        }
    }

    fn settings(&self) -> Result<Rc<Settings>, Failure> {
        self.settings
            .clone()
            .ok_or_else(|| Failure::Internal("no valid configuration".into()))
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
        match self.check_request_headers(host, end_of_stream) {
            Ok(()) => Flow::Pause,
            Err(failure) => self.refuse(host, failure),
        }
    }

    pub fn on_request_body(&mut self, host: &dyn Host, body_size: usize, end: bool) -> Flow {
        if !matches!(self.phase, Phase::Receiving) {
            return Flow::Continue;
        }
        let limit = self
            .settings
            .as_ref()
            .map_or(0, |s| s.config.max_event_bytes);
        if body_size > limit {
            return self.refuse(host, Failure::EventTooLarge(limit));
        }
        if !end {
            self.request_body_size = body_size;
            return Flow::Pause;
        }
        self.end_of_body(host, body_size)
    }

    /// A body may end with trailers instead (HTTP/2 carries them to the filters): the event is
    /// complete here. Without this the trailers went on with the default Continue and the
    /// request with them, never checked nor rewritten (measured: tests/faults/events.rs). The engine's
    /// trailers never travel.
    pub fn on_request_trailers(&mut self, host: &dyn Host) -> Flow {
        if !matches!(self.phase, Phase::Receiving) {
            return Flow::Continue;
        }
        if let Err(e) = host.remove_request_trailers() {
            let detail = format!("request trailers could not be removed ({})", e.0);
            return self.refuse(host, Failure::Internal(detail));
        }
        self.end_of_body(host, self.request_body_size)
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
        match self.phase {
            Phase::Replied => return Flow::Continue,
            Phase::Receiving => {
                // Envoy answered before hookgate let anything go (a filter before it, or its
                // own limits): still an envelope.
                let failure = self.envoy_answered_first(host);
                self.upstream = Some(Upstream::Envoy(failure));
            }
            Phase::Sent => self.upstream = Some(self.read_upstream(host)),
        }
        if end_of_stream {
            // No body to write into: answer with a local reply instead.
            let (outcome, response) = self.conclude(host, &[]);
            return self.reply(host, outcome.as_ref().copied(), response.as_ref());
        }
        Flow::Pause
    }

    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize, end: bool) -> Flow {
        if matches!(self.phase, Phase::Replied) {
            return Flow::Continue;
        }
        // The answer is kept here, not in Envoy: every chunk is moved out of Envoy's buffer, so
        // Envoy's own limit is never reached however large the answer; past max_response_bytes
        // the rest is dropped and judged at the end.
        let limit = self
            .settings
            .as_ref()
            .map_or(0, |s| s.config.max_response_bytes);
        let chunk = host.response_body(body_size).unwrap_or_default();
        if self.truncated || self.answer_body.len() + chunk.len() > limit {
            self.truncated = true;
            self.answer_body = Vec::new();
        } else if self.answer_body.is_empty() {
            // The common answer comes in one chunk: kept as the host handed it, not copied.
            self.answer_body = chunk;
        } else {
            self.answer_body.extend_from_slice(&chunk);
        }
        if !end {
            if let Err(e) = host.set_response_body(body_size, &[]) {
                log::warn!(
                    "hookgate: could not move an answer chunk (host status {})",
                    e.0
                );
            }
            return Flow::Pause;
        }
        let body = std::mem::take(&mut self.answer_body);
        let (outcome, response) = self.conclude(host, &body);
        self.rewrite_answer(
            host,
            outcome.as_ref().copied(),
            response.as_ref(),
            body_size,
        );
        if self.slot.in_flight() {
            // The answer is written; it leaves once etcd has the give-back or verification.
            self.holding_response = true;
            return Flow::Pause;
        }
        Flow::Continue
    }

    /// The engine's whole body is here: forward the webhook or refuse.
    fn end_of_body(&mut self, host: &dyn Host, body_size: usize) -> Flow {
        match self.forward(host, body_size) {
            Ok(false) => Flow::Continue,
            Ok(true) => Flow::Pause,
            Err(failure) => self.refuse(host, failure),
        }
    }

    fn let_go(&mut self, host: &dyn Host) {
        self.phase = Phase::Sent;
        host.count_sent();
    }

    /// An etcd answer (or its absence: `status` None) for the call in flight.
    pub fn on_etcd_reply(&mut self, host: &dyn Host, reply: Reply) {
        self.on_limit_reply(host, reply);
    }
}
