//! The benchmark floor: what any proxy-wasm filter implementing hookgate's contract must at least
//! do. It buffers the request body, rewrites `:authority` and `:path` and sets the route marker,
//! puts the same request bytes back, then buffers the response body and puts the same bytes back.
//! No parsing, no policy, no logging. Plugin configuration: `<authority> <path>` (plain text).
//!
//! With `<authority> <path> contract`, the contract floor (`contract.rs`): the same bytes through,
//! with exactly the host calls hookgate's delivery of a verified webhook makes.

mod contract;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root { target: Rc::new(Target::default()), contract: false }));
}}

/// The receiver, and the decision record the contract floor writes.
#[derive(Default)]
struct Target {
    authority: String,
    path: String,
    record: String,
}

impl Target {
    fn new(authority: &str, path: &str) -> Self {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        Target {
            authority: authority.to_string(),
            path: path.to_string(),
            // hookgate's record of the bench's delivery, with a name of the same length.
            record: format!("webhook=FloorHook host={host} outcome=delivered code=1"),
        }
    }
}

struct Root {
    target: Rc<Target>,
    /// Set by the `contract` configuration: every stream is a contract floor's.
    contract: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authority), Some(path), variant @ (None | Some("contract")), None) => {
                self.target = Rc::new(Target::new(authority, path));
                self.contract = variant.is_some();
                true
            }
            _ => false,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let target = self.target.clone();
        if self.contract {
            return Some(Box::new(contract::ContractFloor::new(target)));
        }
        Some(Box::new(Floor { target }))
    }
}

/// Headers go on with their body: the filter holds them until the whole body is here.
fn until_end(end_of_stream: bool) -> Action {
    if end_of_stream {
        Action::Continue
    } else {
        Action::Pause
    }
}

/// The whole body once it is here (`read` it then); None before, while the filter holds it.
fn whole_body(end_of_stream: bool, read: impl FnOnce() -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    end_of_stream.then(|| read().unwrap_or_default())
}

struct Floor {
    target: Rc<Target>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        until_end(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(body) = whole_body(end_of_stream, || self.get_http_request_body(0, body_size))
        else {
            return Action::Pause;
        };
        self.set_http_request_header(":authority", Some(&self.target.authority));
        self.set_http_request_header(":path", Some(&self.target.path));
        self.set_http_request_header("x-hookgate-route", Some("http"));
        self.set_http_request_body(0, body_size, &body);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        until_end(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(body) = whole_body(end_of_stream, || self.get_http_response_body(0, body_size))
        else {
            return Action::Pause;
        };
        self.set_http_response_body(0, body_size, &body);
        Action::Continue
    }
}
