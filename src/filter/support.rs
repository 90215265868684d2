//! The support listener's requests (`crate::support`): the bytes in and out, and the limit
//! backend of the engine filter that serves the configured namespace.

use super::{gateway_settings, host, HostClock, HostStore};
use crate::config::Settings;
use crate::error::Failure;
use crate::limit::etcd::{Call, Next, Reply, Support};
use crate::limit::{Lifted, WebhookId};
use crate::support::{
    audit, render, Operation, SupportConfig, SupportError, Target, MAX_REQUEST_BYTES,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

/// The filter state property (`wasm.hookgate`) the access log prints.
const RECORD_PROPERTY: &str = "hookgate";

pub struct SupportExchange {
    config: Rc<SupportConfig>,
    /// The name of the token that authorised the request.
    who: Option<String>,
    /// What it asks, once the path was read.
    operation: Option<Operation>,
    target: Option<Target>,
    settings: Option<Rc<Settings>>,
    pending: Option<Support>,
}

impl SupportExchange {
    pub fn new(config: Rc<SupportConfig>) -> Self {
        SupportExchange {
            config,
            who: None,
            operation: None,
            target: None,
            settings: None,
            pending: None,
        }
    }

    fn check_headers(&mut self) -> Result<(), SupportError> {
        let header = |name: &str| {
            host::get_header_text(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
        };
        let who = self.config.authorize(header("authorization").as_deref())?;
        self.who = Some(who.to_string());
        let method = header(":method").unwrap_or_default();
        let operation = Operation::route(&method, &header(":path").unwrap_or_default())?;
        self.operation = Some(operation);
        Ok(())
    }

    /// The whole body is here: run the operation, or start it with etcd (Ok(true): paused
    /// until etcd answered).
    fn start(&mut self, body_size: usize) -> Result<bool, SupportError> {
        let body = host::get_buffer(BufferType::HttpRequestBody, 0, body_size).map_err(|e| {
            SupportError::BadRequest(format!("body not read (host status {})", e.0))
        })?;
        let target = Target::parse(&body)?;
        let operation = self.operation();
        let namespace = &self.config.namespace;
        let settings = gateway_settings(namespace).ok_or_else(|| {
            SupportError::Unavailable(format!(
                "no engine filter with limit.namespace {namespace:?} in this Envoy's vm_id"
            ))
        })?;
        let lift = match operation {
            Operation::Look => None,
            Operation::Lift(lift) => Some(lift),
        };
        let id = WebhookId {
            name: &target.name,
            url: &target.url,
            normalised: false,
        };
        let started = match &settings.etcd {
            Some(etcd) => {
                let (op, call) = Support::start(etcd, &settings.limiter, &id, lift);
                dispatch(&settings, &call)?;
                self.pending = Some(op);
                None
            }
            None => Some(settings.limiter.support(&HostStore, &HostClock, &id, lift)),
        };
        self.target = Some(target);
        self.settings = Some(settings);
        match started {
            None => Ok(true),
            Some(result) => {
                self.finish(result.map_err(|f| unavailable(f.to_string())));
                Ok(false)
            }
        }
    }

    fn operation(&self) -> Operation {
        self.operation.unwrap_or(Operation::Look)
    }

    /// The answer, and the audit line in Envoy's log and the access log.
    fn finish(&mut self, result: Result<Lifted, SupportError>) {
        let operation = self.operation();
        let who = self.who.as_deref().unwrap_or("-");
        let namespace = &self.config.namespace;
        if let Some(target) = &self.target {
            let line = audit(who, operation, namespace, target, result.as_ref());
            log::info!("hookgate: {line}");
            if let Err(e) = host::set_property(RECORD_PROPERTY, line.as_bytes()) {
                log::warn!("hookgate: support record not kept (host status {})", e.0);
            }
        }
        match result {
            Ok(lifted) => {
                let backend = if self.settings.as_ref().is_some_and(|s| s.etcd.is_some()) {
                    "etcd"
                } else {
                    "local"
                };
                let body = self
                    .target
                    .as_ref()
                    .map(|t| render(operation, namespace, backend, t, &lifted))
                    .unwrap_or_default();
                respond(200, &[("content-type", "application/json")], &body);
            }
            Err(error) => self.refuse(&error),
        }
    }

    fn refuse(&self, error: &SupportError) {
        let detail = error.detail();
        if self.target.is_none() {
            // Refused before the webhook was known (token, path, body): one record still.
            let who = self.who.as_deref().unwrap_or("-");
            let line = format!("support token={who} refused={detail:?}");
            log::info!("hookgate: {line}");
            let _ = host::set_property(RECORD_PROPERTY, line.as_bytes());
        }
        let detail: String = detail
            .chars()
            .filter(|c| (' '..='~').contains(c))
            .take(300)
            .collect();
        respond(
            error.status(),
            &[
                ("content-type", "application/json"),
                ("x-hookgate-detail", &detail),
            ],
            &error.body(),
        );
    }
}

fn unavailable(why: String) -> SupportError {
    SupportError::Unavailable(why)
}

/// One call to etcd through the engine filter's `state.cluster`.
fn dispatch(settings: &Settings, call: &Call) -> Result<(), SupportError> {
    super::dispatch_etcd(settings, call).map_err(unavailable)
}

fn respond(status: u32, headers: &[(&str, &str)], body: &[u8]) {
    if let Err(e) = host::send_local_response(status, headers, body) {
        log::error!("hookgate: support reply failed (host status {})", e.0);
    }
}

impl Context for SupportExchange {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(settings), Some(mut op)) = (self.settings.clone(), self.pending.take()) else {
            return;
        };
        let (status, body) = host::http_call_reply(num_headers, body_size);
        let reply = Reply {
            status,
            body: &body,
        };
        match op.on_reply(&settings.limiter, reply, &HostClock) {
            Next::Call(call) => match dispatch(&settings, &call) {
                Ok(()) => self.pending = Some(op),
                Err(error) => self.finish(Err(error)),
            },
            Next::Done(result) => {
                self.finish(result.map_err(|f: Failure| unavailable(f.to_string())))
            }
        }
    }
}

impl HttpContext for SupportExchange {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let checked = self.check_headers().and_then(|()| {
            if end_of_stream {
                Err(SupportError::BadRequest(
                    "no body: send {\"name\":..,\"url\":..}".into(),
                ))
            } else {
                Ok(())
            }
        });
        if let Err(error) = checked {
            self.refuse(&error);
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.operation.is_none() || self.target.is_some() {
            return Action::Pause;
        }
        if body_size > MAX_REQUEST_BYTES {
            self.refuse(&SupportError::BadRequest(format!(
                "body over {MAX_REQUEST_BYTES} bytes"
            )));
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Err(error) = self.start(body_size) {
            self.refuse(&error);
        }
        Action::Pause
    }
}
