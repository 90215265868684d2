//! One engine request: the event in, the webhook out, the envelope back.

use super::{host, HostClock, HostStore, Metrics, RequestClock};
use crate::answer::{judge_envoy_reply, judge_envoy_reply_before_sending, judge_receiver};
use crate::clock::Clock;
use crate::config::Settings;
use crate::destination::{
    refused_after_dns, Destination, REFUSAL_DETAIL_HEADER, REFUSED_AFTER_DNS,
};
use crate::envelope;
use crate::error::{Delivered, Failure};
use crate::event::{self, Webhook};
use crate::limit::etcd::{Acquire, Admitted, Call, Next, Reply, Update};
use crate::limit::{KeyVerdict, LimitState, Ticket, WebhookId};
use crate::report::{ReceivedResponse, Report, SentRequest};
use crate::signing;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The route in Envoy only accepts requests that carry this header, which hookgate sets after
/// removing every header the caller sent: nothing but a rewritten webhook reaches the forward proxy.
const ROUTE_MARKER: &str = "x-hookgate-route";
const TEST_HEADER: &str = "x-hookgate-test";
/// Set on the engine's request when hookgate answers it itself (the first local reply mapper of
/// the shipped configurations matches it and ends the search). A pseudo-header, so that no caller
/// can send it: HTTP/1 has no syntax for it, HTTP/2 refuses pseudo-headers it does not define.
const REPLIED_MARKER: &str = ":hookgate-replied";
/// The filter state property (`wasm.hookgate`) holding the decision record, for access logs.
const DECISION_PROPERTY: &str = "hookgate";
/// Envoy's `response.code_details` for an answer that came from the receiver.
const RECEIVER_ANSWERED: &str = "via_upstream";
/// The outcome of a request the engine reset before any answer (no envelope code: none was sent).
const ENGINE_RESET: &str = "engine_reset";
const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

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

pub struct Exchange {
    settings: Option<Rc<Settings>>,
    metrics: Rc<Metrics>,
    phase: Phase,
    test: bool,
    webhook: Option<Webhook>,
    destination: Option<Rc<Destination>>,
    ticket: Option<Ticket>,
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
    /// With the etcd backend: the call to etcd in flight, and what it is for.
    pending: Option<Pending>,
    /// With the etcd backend: what etcd let through for this delivery.
    admitted: Option<Admitted>,
    /// With the etcd backend: the limit state etcd's record gave (test report).
    etcd_state: Option<LimitState>,
    /// The engine's answer is written and waits for an etcd write (give-back, verification).
    holding_response: bool,
    /// The engine's `idempotency-key` header, if it sent one.
    idempotency_key: Option<String>,
    /// Set once hookgate has decided this request's answer (and counted it).
    decided: Cell<bool>,
}

/// A call to etcd in flight (one at a time per request).
enum Pending {
    /// The request is paused until etcd decided.
    Acquire(Acquire),
    /// A delivery that never arrived gives its send back.
    GiveBack(Update),
    /// The receiver's right key is recorded.
    Verify(Update),
}

impl Exchange {
    pub fn new(settings: Option<Rc<Settings>>, metrics: Rc<Metrics>) -> Self {
        Exchange {
            settings,
            metrics,
            phase: Phase::Receiving,
            test: false,
            webhook: None,
            destination: None,
            ticket: None,
            sent: None,
            upstream: None,
            received_headers: Vec::new(),
            receiver_status: None,
            truncated: false,
            answer_body: Vec::new(),
            request_body_size: 0,
            pending: None,
            admitted: None,
            etcd_state: None,
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

    /// Checks what the request headers can tell; Ok when a body must follow.
    fn check_request_headers(&mut self, end_of_stream: bool) -> Result<(), Failure> {
        let settings = self.settings()?;
        let encoded = host::get_headers_encoded(MapType::HttpRequestHeaders)
            .map_err(|e| Failure::Internal(format!("request header read failed ({})", e.0)))?;
        let headers = crate::abi::map_pairs(&encoded);
        // Every header in one host call; a name read here is the first value Envoy holds for
        // it, as proxy_get_header_map_value would return (Envoy's names are lower-case). Values
        // as text, lossy for bytes that are not UTF-8; only the few read here are copied.
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| String::from_utf8_lossy(v))
        };
        let source = host::get_property(&["source", "address"])
            .ok()
            .flatten()
            .unwrap_or_default();
        settings.callers.check(&String::from_utf8_lossy(&source))?;
        crate::caller::check(settings.config.caller_token.as_ref(), |name| {
            header(name).map(Cow::into_owned)
        })?;
        self.test = header(TEST_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let method = header(":method").unwrap_or_default();
        if method != "POST" {
            return Err(Failure::MethodNotAllowed(method.into_owned()));
        }
        let content_type = header("content-type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(Failure::UnsupportedMediaType(content_type.into_owned()));
        }
        let limit = settings.config.max_event_bytes;
        let declared = header("content-length");
        if declared
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64)
        {
            return Err(Failure::EventTooLarge(limit));
        }
        self.idempotency_key = signing::idempotency_key(&headers)?;
        if end_of_stream {
            return Err(Failure::InvalidEvent("empty body".into()));
        }
        Ok(())
    }

    /// The whole event is here: parse it, apply every policy, rewrite the request.
    /// Ok(true): the request stays paused until etcd has decided (`on_http_call_response`).
    fn forward(&mut self, body_size: usize) -> Result<bool, Failure> {
        let settings = self.settings()?;
        let body = host::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .map_err(|e| Failure::Internal(format!("request body read failed ({})", e.0)))?;
        let clock = RequestClock::default();
        let event = event::parse(&body, &clock, settings.config.max_name_length)?;
        self.webhook = Some(event.webhook.clone());
        let destination = settings
            .recent_destinations
            .check(&settings.destinations, &event.webhook.url)?;
        self.destination = Some(destination.clone());
        let mut headers: Vec<(&str, &str)> =
            Vec::with_capacity(8 + settings.config.static_headers.len());
        let length = event.payload.len().to_string();
        headers.extend([
            (":method", "POST"),
            (":scheme", if destination.https { "https" } else { "http" }),
            (":authority", destination.authority.as_str()),
            (":path", destination.path_and_query.as_str()),
            ("content-type", "application/json"),
            ("content-length", length.as_str()),
            ("user-agent", USER_AGENT),
        ]);
        headers.extend(
            settings
                .config
                .static_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // Standard Webhooks signing, over the exact payload bytes set below.
        let signed = sign(
            &settings,
            self.idempotency_key.as_deref(),
            &event.webhook.name,
            &clock,
            &event.payload,
        )?;
        if let Some(signed) = &signed {
            let [id, timestamp, signature] = signing::HEADERS;
            headers.extend([
                (id, signed.id.as_str()),
                (timestamp, signed.timestamp.as_str()),
                (signature, signed.signature.as_str()),
            ]);
        }
        if self.test {
            self.sent = Some(SentRequest {
                url: destination.url.clone(),
                headers: headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: event.payload.clone(),
            });
        }
        let id = WebhookId {
            name: &event.webhook.name,
            url: &destination.url,
            normalised: true,
        };
        let mut acquire = None;
        if let Some(etcd) = &settings.etcd {
            // A webhook this Envoy knows verified (verification never reverts) needs no call.
            match settings.limiter.cached_free_ticket(&HostStore, &clock, &id) {
                Some(ticket) => self.ticket = Some(ticket),
                None => acquire = Some(Acquire::start(etcd, &settings.limiter, &id)),
            }
        } else {
            let ticket = settings.limiter.acquire(&HostStore, &clock, &id)?;
            self.ticket = Some(ticket);
        }
        let scheme = if destination.https { "https" } else { "http" };
        // Envoy matches no route without x-forwarded-proto; the route removes it (and the
        // marker) before the request leaves.
        headers.extend([(ROUTE_MARKER, scheme), ("x-forwarded-proto", scheme)]);
        let rewritten = host::set_headers(MapType::HttpRequestHeaders, &headers).and_then(|()| {
            host::set_buffer(BufferType::HttpRequestBody, 0, body_size, &event.payload)
        });
        if let Err(e) = rewritten {
            self.give_back();
            return Err(Failure::Internal(format!(
                "request rewrite failed ({})",
                e.0
            )));
        }
        // Rewritten while paused (Envoy refuses a header set once headers went on); with
        // etcd the request now waits, paused, for the decision.
        if let Some((op, call)) = acquire {
            self.dispatch(call, Pending::Acquire(op))?;
            return Ok(true);
        }
        self.let_go();
        Ok(false)
    }

    fn let_go(&mut self) {
        self.phase = Phase::Sent;
        self.metrics.count_sent();
    }

    /// Sends one call to etcd through its Envoy cluster.
    fn dispatch(&mut self, call: Call, pending: Pending) -> Result<(), Failure> {
        let settings = self.settings()?;
        let timeout = std::time::Duration::from_millis(u64::from(settings.config.state.timeout_ms));
        host::dispatch_http_call(
            &settings.config.state.cluster,
            call.path,
            call.body.as_bytes(),
            timeout,
        )
        .map_err(|e| {
            Failure::LimitUnavailable(format!(
                "etcd: call through cluster {:?} failed (host status {})",
                settings.config.state.cluster, e.0
            ))
        })?;
        self.pending = Some(pending);
        Ok(())
    }

    /// An etcd answer (or its absence) for the call in flight.
    fn on_etcd_reply(&mut self, reply: Reply) {
        let (Some(settings), Some(pending)) = (self.settings.clone(), self.pending.take()) else {
            return;
        };
        let limiter = &settings.limiter;
        match pending {
            Pending::Acquire(mut op) => match op.on_reply(limiter, reply, &HostClock) {
                Next::Call(call) => {
                    if let Err(failure) = self.dispatch(call, Pending::Acquire(op)) {
                        self.refuse(failure);
                    }
                }
                Next::Done(decided) => {
                    if let Some(etcd) = &settings.etcd {
                        etcd.note_lease(decided.lease);
                    }
                    self.etcd_state = decided.state;
                    match decided.result {
                        Ok(admitted) => {
                            // Read verified from etcd, whoever verified it: cached here too.
                            if admitted.free_by_verification() {
                                cache_verified(limiter, &admitted);
                            }
                            self.admitted = Some(admitted);
                            self.let_go();
                            if let Err(e) = host::resume_http_request() {
                                log::error!("hookgate: could not resume the request ({})", e.0);
                            }
                        }
                        Err(failure) => {
                            self.refuse(failure);
                        }
                    }
                }
            },
            Pending::GiveBack(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.dispatch_update(call, Pending::GiveBack(op)),
                Next::Done(result) => {
                    if let Err(failure) = result {
                        log::warn!("hookgate: could not give back a limit slot: {failure}");
                    }
                    self.release_response();
                }
            },
            Pending::Verify(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.dispatch_update(call, Pending::Verify(op)),
                Next::Done(result) => {
                    match result {
                        Ok(()) => {
                            if let Some(admitted) = &self.admitted {
                                cache_verified(limiter, admitted);
                            }
                        }
                        Err(failure) => {
                            log::warn!("hookgate: could not record a verification: {failure}")
                        }
                    }
                    self.release_response();
                }
            },
        }
    }

    /// Dispatches a give-back or verification write; on failure the answer goes on without it.
    fn dispatch_update(&mut self, call: Call, pending: Pending) {
        if let Err(failure) = self.dispatch(call, pending) {
            log::warn!("hookgate: limit state not updated: {failure}");
            self.release_response();
        }
    }

    /// Lets the engine's answer go once the etcd write it waited for is done.
    fn release_response(&mut self) {
        if std::mem::take(&mut self.holding_response) {
            if let Err(e) = host::resume_http_response() {
                log::error!("hookgate: could not resume the answer ({})", e.0);
            }
        }
    }

    /// The engine's whole body is here: forward the webhook or refuse.
    fn end_of_body(&mut self, body_size: usize) -> Action {
        match self.forward(body_size) {
            Ok(false) => Action::Continue,
            Ok(true) => Action::Pause,
            Err(failure) => self.refuse(failure),
        }
    }

    fn give_back(&mut self) {
        if let (Some(settings), Some(admitted)) = (self.settings.clone(), &self.admitted) {
            if let Some(etcd) = &settings.etcd {
                if let Some((op, call)) = Update::give_back(etcd, &settings.limiter, admitted) {
                    self.dispatch_update(call, Pending::GiveBack(op));
                }
            }
            return;
        }
        if let (Some(settings), Some(ticket)) = (&self.settings, self.ticket.take()) {
            if let Err(failure) = settings.limiter.give_back(&HostStore, &ticket) {
                log::warn!("hookgate: could not give back a limit slot: {failure}");
            }
        }
    }

    /// Answers the engine locally (a refusal, or an answer that has no body to write into).
    fn reply(
        &mut self,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
    ) -> Action {
        let answer = self.build_answer(outcome, response);
        self.phase = Phase::Replied;
        // Envoy passes every local reply through the listener's local-reply mappers, whose CEL
        // filters cost about 7 µs a reply (BENCHMARKS.md); the marker matches the first one,
        // which leaves hookgate's own reply as it is and ends the search.
        if let Err(e) = host::set_header(MapType::HttpRequestHeaders, REPLIED_MARKER, "1") {
            log::debug!("hookgate: reply not marked (host status {})", e.0);
        }
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        if let Err(e) = host::send_local_response(answer.status, &headers, &answer.body) {
            log::error!("hookgate: local reply failed (host status {})", e.0);
        }
        Action::Pause
    }

    fn refuse(&mut self, failure: Failure) -> Action {
        self.reply(Err(&failure), None)
    }

    /// Writes the engine's answer over the upstream one, whose headers are still paused.
    fn rewrite_answer(
        &mut self,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
        body_size: usize,
    ) {
        let answer = self.build_answer(outcome, response);
        let status = answer.status.to_string();
        let length = answer.body.len().to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            (":status", status.as_str()),
            ("content-length", length.as_str()),
        ];
        headers.extend(answer.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let written = host::set_headers(MapType::HttpResponseHeaders, &headers).and_then(|()| {
            host::set_buffer(BufferType::HttpResponseBody, 0, body_size, &answer.body)
        });
        if let Err(e) = written {
            log::error!("hookgate: could not write the answer (host status {})", e.0);
        }
    }

    /// The engine's answer for an outcome, logged: status, headers and the envelope (or report).
    fn build_answer(
        &self,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
    ) -> EngineAnswer {
        self.log_decision(outcome.map(|_| ()));
        let mut headers = vec![("content-type", "application/json".to_string())];
        let status = match outcome {
            Ok(_) => {
                headers.push(("x-hookgate-delivered", Delivered::Yes.as_str().to_string()));
                200
            }
            Err(failure) => {
                headers.push((
                    "x-hookgate-delivered",
                    failure.delivered().as_str().to_string(),
                ));
                headers.push(("x-hookgate-detail", header_safe(&failure.to_string())));
                if let Some(seconds) = failure.retry_after() {
                    headers.push(("retry-after", seconds.to_string()));
                }
                failure.http_status()
            }
        };
        if let Some(receiver_status) = self.receiver_status {
            headers.push(("x-hookgate-upstream-status", receiver_status.to_string()));
        }
        EngineAnswer {
            status,
            headers,
            body: self.render(outcome, response),
        }
    }

    /// The envelope, or the test report around it.
    fn render(
        &self,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
    ) -> Vec<u8> {
        let envelope = match outcome {
            Ok(body) => envelope::success(body),
            Err(failure) => envelope::failure(failure),
        };
        if !self.test {
            return envelope;
        }
        let limit = self.limit_state();
        Report {
            webhook: self.webhook.as_ref(),
            request: self.sent.as_ref(),
            response,
            envelope: &envelope,
            limit: limit.as_ref(),
        }
        .render()
    }

    fn limit_state(&self) -> Option<LimitState> {
        if self.etcd_state.is_some() {
            return self.etcd_state.clone();
        }
        let settings = self.settings.as_ref()?;
        let (webhook, destination) = (self.webhook.as_ref()?, self.destination.as_ref()?);
        let id = WebhookId {
            name: &webhook.name,
            url: &destination.url,
            normalised: true,
        };
        settings.limiter.state(&HostStore, &HostClock, &id).ok()
    }

    /// The outcome counters and one decision record per decision; no personal data (email,
    /// phone, variables) in the record. The record goes to the stream's filter state, where
    /// Envoy's access log prints it (`%FILTER_STATE(wasm.hookgate:PLAIN)%`, envoy/envoy.yaml):
    /// the access log is buffered and written off the worker thread, where a line in Envoy's
    /// own log is a synchronous write per request (measured: about 10-20 µs of Envoy CPU per
    /// request, BENCHMARKS.md). The same line goes to Envoy's log at debug level.
    fn log_decision(&self, outcome: Result<(), &Failure>) {
        let (reason, code, rest) = match outcome {
            Ok(()) => ("delivered", 1, String::new()),
            Err(f) => (
                f.reason(),
                f.code().number(),
                format!(" status={} detail={:?}", f.http_status(), f.to_string()),
            ),
        };
        self.record(reason, Some(code), &rest);
    }

    /// Counts an outcome and keeps its decision record (`code` only for an answer).
    fn record(&self, reason: &'static str, code: Option<u32>, rest: &str) {
        self.decided.set(true);
        self.metrics.count_outcome(reason, code);
        let name = self.webhook.as_ref().map_or("-", |w| w.name.as_str());
        // The normalised host once checked; before that (a refused URL), the host as written.
        let host = match (&self.destination, &self.webhook) {
            (Some(d), _) => d.host.clone(),
            (None, Some(w)) => crate::destination::host_as_written(&w.url),
            (None, None) => "-".to_string(),
        };
        let code = code.map(|c| format!(" code={c}")).unwrap_or_default();
        let record = format!("webhook={name} host={host} outcome={reason}{code}{rest}");
        if let Err(e) = host::set_property(DECISION_PROPERTY, record.as_bytes()) {
            log::warn!("hookgate: decision record not kept (host status {})", e.0);
        }
        log::debug!("hookgate: {record}");
    }

    /// The response headers of a webhook that was sent: who answered, and how.
    fn read_upstream(&mut self) -> Upstream {
        let status = host::get_header_text(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        // Envoy's own replies (its router's failures, the upstream RBAC, the local reply
        // mappers) are all 4xx or 5xx: an answer below 400 is the receiver's, and the property
        // lookup (a host call) is only made when Envoy could have answered instead.
        let details = if (100..400).contains(&status) {
            Cow::Borrowed(RECEIVER_ANSWERED)
        } else {
            Cow::Owned(
                host::get_property(&["response", "code_details"])
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            )
        };
        if details == RECEIVER_ANSWERED {
            if self.test {
                self.received_headers =
                    host::get_headers(MapType::HttpResponseHeaders).unwrap_or_default();
            }
            self.receiver_status = Some(status);
            self.metrics.count_receiver_answer(status);
            return Upstream::Receiver { status };
        }
        // The check after DNS (hookgate's upstream filter) says why itself; for any other
        // reply, Envoy's RBAC refusal names the range of the address the router picked.
        let after_dns = refused_after_dns(&details, || {
            host::get_header_text(MapType::HttpResponseHeaders, REFUSAL_DETAIL_HEADER)
                .ok()
                .flatten()
        });
        let mut failure = after_dns.unwrap_or_else(|| judge_envoy_reply(status, &details));
        if let (Failure::BlockedDestination(_), Some(settings), false) =
            (&failure, &self.settings, details == REFUSED_AFTER_DNS)
        {
            // Envoy's RBAC refused the address a name resolved to: name its range if Envoy
            // tells which address the router picked.
            let picked = host::get_property(&["upstream", "address"]).ok().flatten();
            let named = picked.and_then(|a| {
                settings
                    .destinations
                    .resolved_refusal(&String::from_utf8_lossy(&a))
            });
            if let Some(named) = named {
                failure = named;
            }
        }
        if failure.delivered() == Delivered::No {
            self.give_back();
        }
        Upstream::Envoy(failure)
    }

    /// The final outcome once the whole answer is here.
    fn conclude(&mut self, body: &[u8]) -> (Result<String, Failure>, Option<ReceivedResponse>) {
        let Some(upstream) = self.upstream.take() else {
            return (
                Err(Failure::Internal("response without a request".into())),
                None,
            );
        };
        let status = match upstream {
            Upstream::Receiver { status } => status,
            Upstream::Envoy(failure) => return (Err(failure), None),
        };
        let limit = self
            .settings
            .as_ref()
            .map_or(0, |s| s.config.max_response_bytes);
        let response = self.test.then(|| ReceivedResponse {
            status,
            headers: std::mem::take(&mut self.received_headers),
            body: body.to_vec(),
        });
        let judged =
            judge_receiver(status, body, self.truncated.then_some(limit)).map(str::to_owned);
        let outcome = match judged {
            Ok(text) => self.verify_key(body).map(|()| text),
            Err(failure) => Err(failure),
        };
        (outcome, response)
    }

    /// A right key verifies the webhook; a wrong one is the document's 11110113.
    fn verify_key(&mut self, body: &[u8]) -> Result<(), Failure> {
        if let (Some(settings), Some(admitted)) = (self.settings.clone(), &self.admitted) {
            return match settings.limiter.judge_key(&admitted.ticket, body) {
                KeyVerdict::WrongKey => Err(Failure::WrongKey),
                KeyVerdict::NoKey => Ok(()),
                KeyVerdict::Verified => {
                    if let Some(state) = &mut self.etcd_state {
                        state.verified = true;
                        state.allowed_per_hour = settings.limiter.verified_per_hour();
                        if state.allowed_per_hour.is_none() {
                            state.sends_in_window = 0;
                            state.retry_after = None;
                        }
                    }
                    let etcd = settings.etcd.as_ref();
                    if let Some((op, call)) =
                        etcd.and_then(|etcd| Update::verify(etcd, &settings.limiter, admitted))
                    {
                        self.dispatch_update(call, Pending::Verify(op));
                    }
                    Ok(())
                }
            };
        }
        let (Some(settings), Some(ticket)) = (&self.settings, &self.ticket) else {
            return Ok(());
        };
        match settings.limiter.observe_answer(&HostStore, ticket, body)? {
            KeyVerdict::WrongKey => Err(Failure::WrongKey),
            KeyVerdict::Verified | KeyVerdict::NoKey => Ok(()),
        }
    }
}

/// With the etcd backend: records a verified webhook in this Envoy's shared data (the local table,
/// within `limit.max_tracked`), so that its later sends through this Envoy need no call to etcd.
fn cache_verified(limiter: &crate::limit::Limiter, admitted: &Admitted) {
    if let Err(failure) = limiter.record_verified(&HostStore, &admitted.ticket) {
        log::info!("hookgate: verification not cached: {failure}");
    }
}

/// What the engine gets back.
struct EngineAnswer {
    status: u32,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// The signing headers of one delivery.
struct Signed {
    id: String,
    timestamp: String,
    signature: String,
}

/// Signs a delivery when a secret applies to its webhook name; None: it goes unsigned.
fn sign(
    settings: &Settings,
    idempotency_key: Option<&str>,
    name: &str,
    clock: &dyn Clock,
    payload: &[u8],
) -> Result<Option<Signed>, Failure> {
    let secrets = settings.signer.secrets_for(name);
    if secrets.is_empty() {
        return Ok(None);
    }
    let id = match idempotency_key {
        Some(key) => key.to_owned(),
        None => next_id(),
    };
    let now = clock.now();
    let signature = signing::signature(secrets, &id, now, payload);
    Ok(Some(Signed {
        id,
        timestamp: now.to_string(),
        signature,
    }))
}

/// What makes this worker's generated webhook ids its own (see `next_id`).
struct IdSource {
    node: String,
    worker: u32,
    counter: u64,
}

thread_local! {
    static IDS: RefCell<Option<IdSource>> = const { RefCell::new(None) };
}

/// Shared data (one map per Envoy process and vm_id) where each worker's VM claims its number.
const WORKER_KEY: &str = "hookgate.signing.workers";

/// A webhook id unique across workers, Envoys and restarts with no random source:
/// `msg_<host ns>_<node id>_<worker>_<counter>`. The node id (Envoy's `node.id`, as
/// `signing::id_node` spells it) tells Envoys
/// apart, the worker number (claimed once per VM by a compare-and-swap increment in shared data)
/// tells this Envoy's workers apart, the counter tells this worker's ids apart, and the host's
/// nanosecond time moves on across restarts.
fn next_id() -> String {
    let now = host::now_unix_nanos().unwrap_or(0);
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let source = ids.get_or_insert_with(|| IdSource {
            // Envoy 1.40 serves the node under `xds` (measured: `["node", "id"]` is empty in
            // every callback, `["xds", "node", "id"]` is `--service-node` or the bootstrap's).
            node: signing::id_node(
                &host::get_property(&["xds", "node", "id"])
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            ),
            worker: claim_worker(),
            counter: 0,
        });
        let id = signing::make_id(now, &source.node, source.worker, source.counter);
        source.counter = source.counter.wrapping_add(1);
        id
    })
}

/// Creates the worker-number counter if it is missing, from `on_configure` (the main thread's
/// configure runs before any worker serves). CAS does not protect creating a key, so two workers
/// claiming from a missing counter could both get 1; with the key made first, every claim is a
/// real compare-and-swap. Creating with a CAS token that no existing key can hold never
/// overwrites a counter that is already there.
pub(super) fn prepare_worker_numbers() {
    if let Ok((None, _)) = host::get_shared_data(WORKER_KEY) {
        let _ = host::set_shared_data(WORKER_KEY, b"0", Some(u32::MAX));
    }
}

/// This VM's worker number: the shared counter's next value (bounded tries; 0 if none succeeds).
fn claim_worker() -> u32 {
    for _ in 0..64 {
        let Ok((value, cas)) = host::get_shared_data(WORKER_KEY) else {
            break;
        };
        let claimed = value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok())
            .unwrap_or(0)
            .wrapping_add(1);
        if let Ok(true) = host::set_shared_data(WORKER_KEY, claimed.to_string().as_bytes(), cas) {
            return claimed;
        }
    }
    log::warn!("hookgate: no worker number for webhook ids; using 0");
    0
}

/// Header values carry only printable ASCII, bounded.
pub(super) fn header_safe(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c))
        .take(300)
        .collect()
}

impl Context for Exchange {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (status, body) = host::http_call_reply(num_headers, body_size);
        self.on_etcd_reply(Reply {
            status,
            body: &body,
        });
    }
}

impl HttpContext for Exchange {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.check_request_headers(end_of_stream) {
            Ok(()) => Action::Pause,
            Err(failure) => self.refuse(failure),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.phase, Phase::Receiving) {
            return Action::Continue;
        }
        let limit = self
            .settings
            .as_ref()
            .map_or(0, |s| s.config.max_event_bytes);
        if body_size > limit {
            return self.refuse(Failure::EventTooLarge(limit));
        }
        if !end_of_stream {
            self.request_body_size = body_size;
            return Action::Pause;
        }
        self.end_of_body(body_size)
    }

    /// A body may end with trailers instead (HTTP/2 carries them to the filters): the event is
    /// complete here. Without this the trailers went on with the default Continue and the
    /// request with them, never checked nor rewritten (measured: tests/faults.rs). The engine's
    /// trailers never travel.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !matches!(self.phase, Phase::Receiving) {
            return Action::Continue;
        }
        if let Err(e) = host::set_headers(MapType::HttpRequestTrailers, &[]) {
            return self.refuse(Failure::Internal(format!(
                "request trailers could not be removed ({})",
                e.0
            )));
        }
        self.end_of_body(self.request_body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.phase {
            Phase::Replied => return Action::Continue,
            Phase::Receiving => {
                // Envoy answered before hookgate let anything go (a filter before it, or its
                // own limits): still an envelope.
                let details = host::get_property(&["response", "code_details"])
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let failure = judge_envoy_reply_before_sending(
                    &String::from_utf8_lossy(&details),
                    self.webhook.is_some(),
                    self.settings
                        .as_ref()
                        .map_or(0, |s| s.config.max_event_bytes),
                );
                self.upstream = Some(Upstream::Envoy(failure));
            }
            Phase::Sent => self.upstream = Some(self.read_upstream()),
        }
        if end_of_stream {
            // No body to write into: answer with a local reply instead.
            let (outcome, response) = self.conclude(&[]);
            return self.reply(outcome.as_deref(), response.as_ref());
        }
        Action::Pause
    }

    /// A request that ended with no answer at all, neither hookgate's nor Envoy's: the engine
    /// reset or closed it (mid-body, or while the webhook was out). Nothing to answer; counted
    /// (`hookgate_outcomes{outcome="engine_reset"}`) and recorded (the access log runs after this).
    fn on_log(&mut self) {
        if self.decided.get()
            || host::get_property(&["response", "code"]).is_ok_and(|c| c.is_some())
        {
            return;
        }
        let when = match self.phase {
            Phase::Sent => "after the webhook was sent: it may have arrived",
            _ => "before its event was complete: nothing was sent",
        };
        let detail = format!("the engine reset its request {when}");
        self.record(ENGINE_RESET, None, &format!(" detail={detail:?}"));
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if matches!(self.phase, Phase::Replied) {
            return Action::Continue;
        }
        // The answer is kept here, not in Envoy: every chunk is moved out of Envoy's buffer, so
        // Envoy's own limit is never reached however large the answer; past max_response_bytes
        // the rest is dropped and judged at the end.
        let limit = self
            .settings
            .as_ref()
            .map_or(0, |s| s.config.max_response_bytes);
        let chunk =
            host::get_buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
        if self.truncated || self.answer_body.len() + chunk.len() > limit {
            self.truncated = true;
            self.answer_body = Vec::new();
        } else {
            self.answer_body.extend_from_slice(&chunk);
        }
        if !end_of_stream {
            if let Err(e) = host::set_buffer(BufferType::HttpResponseBody, 0, body_size, &[]) {
                log::warn!(
                    "hookgate: could not move an answer chunk (host status {})",
                    e.0
                );
            }
            return Action::Pause;
        }
        let body = std::mem::take(&mut self.answer_body);
        let (outcome, response) = self.conclude(&body);
        self.rewrite_answer(outcome.as_deref(), response.as_ref(), body_size);
        if self.pending.is_some() {
            // The answer is written; it leaves once etcd has the give-back or verification.
            self.holding_response = true;
            return Action::Pause;
        }
        Action::Continue
    }
}
