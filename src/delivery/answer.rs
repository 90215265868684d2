//! The engine's answer: who answered the webhook, the judgement, and the envelope (or test
//! report) written over the upstream answer or sent as a local reply.

use super::{Delivery, Flow, Host, Phase, Upstream};
use crate::answer::{judge_envoy_reply, judge_envoy_reply_before_sending, judge_receiver};
use crate::destination::{refused_after_dns, REFUSAL_DETAIL_HEADER, REFUSED_AFTER_DNS};
use crate::envelope;
use crate::error::{Delivered, Failure};
use crate::headers;
use crate::limit::{LimitState, WebhookId};
use crate::report::{ReceivedResponse, Report};
use std::borrow::Cow;

/// Envoy's `response.code_details` for an answer that came from the receiver.
const RECEIVER_ANSWERED: &str = "via_upstream";
/// The outcome of a request the engine reset before any answer (no envelope code: none was sent).
const ENGINE_RESET: &str = "engine_reset";

/// What the engine gets back.
struct EngineAnswer {
    status: u32,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: Vec<u8>,
}

impl Delivery {
    /// Envoy answered before hookgate let the webhook go: why, as a failure.
    pub(super) fn envoy_answered_first(&self, host: &dyn Host) -> Failure {
        let details = host
            .response_code_details()
            .ok()
            .flatten()
            .unwrap_or_default();
        judge_envoy_reply_before_sending(
            &String::from_utf8_lossy(&details),
            self.webhook.is_some(),
            self.settings
                .as_ref()
                .map_or(0, |s| s.config.max_event_bytes),
        )
    }

    /// The response headers of a webhook that was sent: who answered, and how.
    pub(super) fn read_upstream(&mut self, host: &dyn Host) -> Upstream {
        // A test request reports every answer header: one read of the map gives `:status` too.
        let status = if self.test {
            self.received_headers = host.response_headers().unwrap_or_default();
            let status = self.received_headers.iter().find(|(k, _)| k == ":status");
            status.map(|(_, v)| v.clone())
        } else {
            host.response_header(":status").ok().flatten()
        };
        let status = status.and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        // Envoy's own replies (its router's failures, the upstream RBAC, the local reply
        // mappers) are all 4xx or 5xx: an answer below 400 is the receiver's, and the property
        // lookup (a host call) is only made when Envoy could have answered instead.
        let details = if (100..400).contains(&status) {
            Cow::Borrowed(RECEIVER_ANSWERED)
        } else {
            Cow::Owned(
                host.response_code_details()
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            )
        };
        if details == RECEIVER_ANSWERED {
            self.receiver_status = Some(status);
            host.count_receiver_answer(status);
            return Upstream::Receiver { status };
        }
        // The check after DNS (hookgate's upstream filter) says why itself; for any other
        // reply, Envoy's RBAC refusal names the range of the address the router picked.
        let after_dns = refused_after_dns(&details, || {
            host.response_header(REFUSAL_DETAIL_HEADER).ok().flatten()
        });
        let mut failure = after_dns.unwrap_or_else(|| judge_envoy_reply(status, &details));
        if let (Failure::BlockedDestination(_), Some(settings), false) =
            (&failure, &self.settings, details == REFUSED_AFTER_DNS)
        {
            // Envoy's RBAC refused the address a name resolved to: name its range if Envoy
            // tells which address the router picked.
            let picked = host.upstream_address().ok().flatten();
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
            self.give_back(host);
        }
        Upstream::Envoy(failure)
    }

    /// The final outcome once the whole answer is here.
    pub(super) fn conclude<'b>(
        &mut self,
        host: &dyn Host,
        body: &'b [u8],
    ) -> (Result<&'b str, Failure>, Option<ReceivedResponse>) {
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
        let judged = judge_receiver(status, body, self.truncated.then_some(limit));
        let outcome = match judged {
            Ok(text) => self.verify_key(host, body).map(|()| text),
            Err(failure) => Err(failure),
        };
        (outcome, response)
    }

    /// Answers the engine locally (a refusal, or an answer that has no body to write into).
    pub(super) fn reply(
        &mut self,
        host: &dyn Host,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
    ) -> Flow {
        let answer = self.build_answer(host, outcome, response);
        self.phase = Phase::Replied;
        // Envoy passes every local reply through the listener's local-reply mappers, whose CEL
        // filters cost about 7 µs a reply (BENCHMARKS.md); the marker matches the first one,
        // which leaves hookgate's own reply as it is and ends the search.
        if let Err(e) = host.set_request_header(headers::REPLIED_MARKER, "1") {
            log::debug!("hookgate: reply not marked (host status {})", e.0);
        }
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_ref()))
            .collect();
        if let Err(e) = host.local_reply(answer.status, &headers, &answer.body) {
            log::error!("hookgate: local reply failed (host status {})", e.0);
        }
        Flow::Pause
    }

    pub(super) fn refuse(&mut self, host: &dyn Host, failure: Failure) -> Flow {
        self.reply(host, Err(&failure), None)
    }

    /// Writes the engine's answer over the upstream one, whose headers are still paused.
    pub(super) fn rewrite_answer(
        &mut self,
        host: &dyn Host,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
        body_size: usize,
    ) {
        let answer = self.build_answer(host, outcome, response);
        let (mut status, mut length) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2 + answer.headers.len());
        headers.extend([
            (":status", status.format(answer.status)),
            ("content-length", length.format(answer.body.len())),
        ]);
        headers.extend(answer.headers.iter().map(|(k, v)| (*k, v.as_ref())));
        let written = host
            .set_response_headers(&headers)
            .and_then(|()| host.set_response_body(body_size, &answer.body));
        if let Err(e) = written {
            log::error!("hookgate: could not write the answer (host status {})", e.0);
        }
    }

    /// The engine's answer for an outcome, logged: status, headers and the envelope (or report).
    fn build_answer(
        &self,
        host: &dyn Host,
        outcome: Result<&str, &Failure>,
        response: Option<&ReceivedResponse>,
    ) -> EngineAnswer {
        self.log_decision(host, outcome.map(|_| ()));
        let mut headers = Vec::with_capacity(5);
        headers.push(("content-type", Cow::Borrowed("application/json")));
        let status = match outcome {
            Ok(_) => {
                headers.push((headers::DELIVERED, Cow::Borrowed(Delivered::Yes.as_str())));
                200
            }
            Err(failure) => {
                headers.push((
                    headers::DELIVERED,
                    Cow::Borrowed(failure.delivered().as_str()),
                ));
                let detail = headers::header_safe(&failure.to_string());
                headers.push((headers::DETAIL, Cow::Owned(detail)));
                if let Some(seconds) = failure.retry_after() {
                    headers.push(("retry-after", Cow::Owned(seconds.to_string())));
                }
                failure.http_status()
            }
        };
        if let Some(receiver_status) = self.receiver_status {
            headers.push((
                headers::UPSTREAM_STATUS,
                Cow::Owned(receiver_status.to_string()),
            ));
        }
        EngineAnswer {
            status,
            headers,
            body: self.render(host, outcome, response),
        }
    }

    /// The envelope, or the test report around it.
    fn render(
        &self,
        host: &dyn Host,
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
        let limit = self.limit_state(host);
        Report {
            webhook: self.webhook.as_ref(),
            request: self.sent.as_ref(),
            response,
            envelope: &envelope,
            limit: limit.as_ref(),
        }
        .render()
    }

    fn limit_state(&self, host: &dyn Host) -> Option<LimitState> {
        if let Some(state) = self.slot.etcd_state() {
            return Some(state.clone());
        }
        let settings = self.settings.as_ref()?;
        let (webhook, destination) = (self.webhook.as_ref()?, self.destination.as_ref()?);
        let id = WebhookId {
            name: &webhook.name,
            url: &destination.url,
            normalised: true,
        };
        settings.limiter.state(host.store(), host.clock(), &id).ok()
    }

    /// The outcome counters and one decision record per decision; no personal data (email,
    /// phone, variables) in the record. The record goes to the stream's filter state, where
    /// Envoy's access log prints it (`%FILTER_STATE(wasm.hookgate:PLAIN)%`, envoy/envoy.yaml):
    /// the access log is buffered and written off the worker thread, where a line in Envoy's
    /// own log is a synchronous write per request (measured: about 10-20 µs of Envoy CPU per
    /// request, BENCHMARKS.md). The same line goes to Envoy's log at debug level.
    fn log_decision(&self, host: &dyn Host, outcome: Result<(), &Failure>) {
        let (reason, code, rest) = match outcome {
            Ok(()) => ("delivered", 1, Cow::Borrowed("")),
            Err(f) => (
                f.reason(),
                f.code().number(),
                Cow::Owned(format!(
                    " status={} detail={:?}",
                    f.http_status(),
                    f.to_string()
                )),
            ),
        };
        self.record(host, reason, Some(code), &rest);
    }

    /// Counts an outcome and keeps its decision record (`code` only for an answer).
    fn record(&self, host: &dyn Host, reason: &'static str, code: Option<u32>, rest: &str) {
        self.decided.set(true);
        host.count_outcome(reason, code);
        let name = self.webhook.as_ref().map_or("-", |w| w.name.as_str());
        // The normalised host once checked; before that (a refused URL), the host as written.
        let host_name = match (&self.destination, &self.webhook) {
            (Some(d), _) => Cow::Borrowed(d.host.as_str()),
            (None, Some(w)) => Cow::Owned(crate::destination::host_as_written(&w.url)),
            (None, None) => Cow::Borrowed("-"),
        };
        // One string written in place (a record per request: no intermediate strings).
        let mut record = String::with_capacity(64 + name.len() + host_name.len() + rest.len());
        for part in ["webhook=", name, " host=", &host_name, " outcome=", reason] {
            record.push_str(part);
        }
        if let Some(code) = code {
            record.push_str(" code=");
            record.push_str(itoa::Buffer::new().format(code));
        }
        record.push_str(rest);
        if let Err(e) = host.set_decision(&record) {
            log::warn!("hookgate: decision record not kept (host status {})", e.0);
        }
        log::debug!("hookgate: {record}");
    }
}

impl Delivery {
    /// A request that ended with no answer at all, neither hookgate's nor Envoy's: the engine
    /// reset or closed it (mid-body, or while the webhook was out). Nothing to answer; counted
    /// (`hookgate_outcomes{outcome="engine_reset"}`) and recorded (the access log runs after this).
    pub fn on_log(&mut self, host: &dyn Host) {
        if self.decided.get() || host.response_code().is_ok_and(|c| c.is_some()) {
            return;
        }
        let when = match self.phase {
            Phase::Sent => "after the webhook was sent: it may have arrived",
            _ => "before its event was complete: nothing was sent",
        };
        let detail = format!("the engine reset its request {when}");
        self.record(host, ENGINE_RESET, None, &format!(" detail={detail:?}"));
    }
}
