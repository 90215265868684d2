//! The engine's request: checked, parsed, and rewritten into the webhook.

use super::{Delivery, Host};
use crate::clock::{Clock, OnceClock};
use crate::config::Settings;
use crate::error::Failure;
use crate::event;
use crate::headers;
use crate::limit::slot::Step;
use crate::limit::WebhookId;
use crate::report::SentRequest;
use crate::signing;
use std::borrow::Cow;

const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

impl Delivery {
    /// Checks what the request headers can tell; Ok when a body must follow.
    pub(super) fn check_request_headers(
        &mut self,
        host: &dyn Host,
        end_of_stream: bool,
    ) -> Result<(), Failure> {
        let settings = self.settings()?;
        let encoded = host
            .request_headers()
            .map_err(|e| Failure::Internal(format!("request header read failed ({})", e.0)))?;
        let pairs = crate::abi::map_pairs(&encoded);
        // Every header in one host call; a name read here is the first value Envoy holds for
        // it, as proxy_get_header_map_value would return (Envoy's names are lower-case). Values
        // as text, lossy for bytes that are not UTF-8; only the few read here are copied.
        let header = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| String::from_utf8_lossy(v))
        };
        let source = host.source_address().ok().flatten().unwrap_or_default();
        settings.callers.check(&String::from_utf8_lossy(&source))?;
        crate::caller::check(settings.config.caller_token.as_ref(), |name| {
            header(name).map(Cow::into_owned)
        })?;
        self.test = header(headers::TEST).is_some_and(|v| v.eq_ignore_ascii_case("true"));
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
        self.idempotency_key = signing::idempotency_key(&pairs)?;
        if end_of_stream {
            return Err(Failure::InvalidEvent("empty body".into()));
        }
        Ok(())
    }

    /// The whole event is here: parse it, apply every policy, rewrite the request.
    /// Ok(true): the request stays paused until etcd has decided (`on_etcd_reply`).
    pub(super) fn forward(&mut self, host: &dyn Host, body_size: usize) -> Result<bool, Failure> {
        let settings = self.settings()?;
        let body = host
            .request_body(body_size)
            .map_err(|e| Failure::Internal(format!("request body read failed ({})", e.0)))?;
        let clock = OnceClock::new(host.clock());
        let event::Event { webhook, payload } =
            event::parse(&body, &clock, settings.config.max_name_length)?;
        // Kept for the answer and the record, and borrowed from there (not copied).
        let webhook = &*self.webhook.insert(webhook);
        let destination = settings
            .recent_destinations
            .check(&settings.destinations, &webhook.url)?;
        self.destination = Some(destination.clone());
        // Seven fixed headers, three for signing, the route marker and x-forwarded-proto, the
        // guard's patterns and the static headers: one allocation.
        let mut headers: Vec<(&str, &str)> =
            Vec::with_capacity(12 + destination.guard.len() + settings.config.static_headers.len());
        let mut length = itoa::Buffer::new();
        let length = length.format(payload.len());
        let scheme = if destination.https { "https" } else { "http" };
        headers.extend([
            (":method", "POST"),
            (":scheme", scheme),
            (":authority", destination.authority.as_str()),
            (":path", destination.path_and_query.as_str()),
            ("content-type", "application/json"),
            ("content-length", length),
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
            host,
            &settings,
            self.idempotency_key.as_deref(),
            &webhook.name,
            &clock,
            &payload,
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
                body: payload.clone(),
            });
        }
        let id = WebhookId {
            name: &webhook.name,
            url: &destination.url,
            normalised: true,
        };
        let etcd = settings.etcd.as_ref();
        let step = self
            .slot
            .take(&settings.limiter, etcd, host.store(), &clock, &id)?;
        // Envoy matches no route without x-forwarded-proto; the route removes it (and the
        // marker) before the request leaves.
        headers.extend([
            (headers::ROUTE_MARKER, scheme),
            ("x-forwarded-proto", scheme),
        ]);
        // What of the plugin's destination policy Envoy's guard before connecting needs for
        // this webhook (pseudo-headers: never written to the receiver).
        headers.extend(
            destination
                .guard
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        let rewritten = host
            .set_request_headers(&headers)
            .and_then(|()| host.set_request_body(body_size, &payload));
        if let Err(e) = rewritten {
            // Nothing was asked of etcd yet; a send the local table counted is given back.
            self.slot.abandon();
            self.give_back(host);
            return Err(Failure::Internal(format!(
                "request rewrite failed ({})",
                e.0
            )));
        }
        // Rewritten while paused (Envoy refuses a header set after the headers went on); with
        // etcd the request now waits, paused, for the decision.
        if let Step::Call(call) = step {
            self.dispatch(host, call)?;
            return Ok(true);
        }
        self.let_go(host);
        Ok(false)
    }
}

/// The signing headers of one delivery.
struct Signed {
    id: String,
    timestamp: String,
    signature: String,
}

/// Signs a delivery when a secret applies to its webhook name; None: it goes unsigned.
fn sign(
    host: &dyn Host,
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
        None => host.new_webhook_id(),
    };
    let now = clock.now();
    let signature = signing::signature(secrets, &id, now, payload);
    Ok(Some(Signed {
        id,
        timestamp: now.to_string(),
        signature,
    }))
}
