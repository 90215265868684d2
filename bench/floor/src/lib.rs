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
    proxy_wasm::set_root_context(|_| Box::new(Root { target: Rc::new((String::new(), String::new())), contract: None }));
}}

struct Root {
    target: Rc<(String, String)>,
    /// Set by the `contract` configuration: every stream is a contract floor's.
    contract: Option<Rc<contract::Target>>,
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
            (Some(authority), Some(path), None, None) => {
                self.target = Rc::new((authority.to_string(), path.to_string()));
                true
            }
            (Some(authority), Some(path), Some("contract"), None) => {
                self.contract = Some(Rc::new(contract::Target::new(authority, path)));
                true
            }
            _ => false,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if let Some(target) = &self.contract {
            return Some(Box::new(contract::ContractFloor::new(target.clone())));
        }
        Some(Box::new(Floor {
            target: self.target.clone(),
        }))
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

struct Floor {
    target: Rc<(String, String)>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        until_end(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.set_http_request_header(":authority", Some(&self.target.0));
        self.set_http_request_header(":path", Some(&self.target.1));
        self.set_http_request_header("x-hookgate-route", Some("http"));
        self.set_http_request_body(0, body_size, &body);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        until_end(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        self.set_http_response_body(0, body_size, &body);
        Action::Continue
    }
}
