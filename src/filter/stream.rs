//! One HTTP stream in Envoy: each callback goes to the core's [`Delivery`], whose host calls
//! are made here (through `host`, which never panics).

use super::{host, ids, HostClock, HostStore, Metrics};
use crate::clock::Clock;
use crate::config::Settings;
use crate::delivery::{Delivery, Flow, Host, HostResult};
use crate::limit::etcd::Reply;
use crate::limit::SharedStore;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

/// The filter state property (`wasm.hookgate`) holding the decision record, for access logs.
const DECISION_PROPERTY: &str = "hookgate";

pub struct Stream {
    delivery: Delivery,
    host: EnvoyHost,
}

impl Stream {
    pub fn new(settings: Option<Rc<Settings>>, metrics: Rc<Metrics>) -> Self {
        Stream {
            delivery: Delivery::new(settings),
            host: EnvoyHost { metrics },
        }
    }
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// The stream's host: Envoy, through the proxy-wasm ABI.
struct EnvoyHost {
    metrics: Rc<Metrics>,
}

impl Host for EnvoyHost {
    fn request_headers(&self) -> HostResult<Vec<u8>> {
        host::get_headers_encoded(MapType::HttpRequestHeaders)
    }

    fn source_address(&self) -> HostResult<Option<Vec<u8>>> {
        host::get_property(&["source", "address"])
    }

    fn request_body(&self, size: usize) -> HostResult<Vec<u8>> {
        host::get_buffer(BufferType::HttpRequestBody, 0, size)
    }

    fn set_request_headers(&self, headers: &[(&str, &str)]) -> HostResult<()> {
        host::set_headers(MapType::HttpRequestHeaders, headers)
    }

    fn set_request_body(&self, size: usize, body: &[u8]) -> HostResult<()> {
        host::set_buffer(BufferType::HttpRequestBody, 0, size, body)
    }

    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
        host::set_header(MapType::HttpRequestHeaders, name, value)
    }

    fn remove_request_trailers(&self) -> HostResult<()> {
        host::set_headers(MapType::HttpRequestTrailers, &[])
    }

    fn resume_request(&self) -> HostResult<()> {
        host::resume_http_request()
    }

    fn local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
        host::send_local_response(status, headers, body)
    }

    fn response_header(&self, name: &str) -> HostResult<Option<String>> {
        host::get_header_text(MapType::HttpResponseHeaders, name)
    }

    fn response_headers(&self) -> HostResult<Vec<(String, String)>> {
        host::get_headers(MapType::HttpResponseHeaders)
    }

    fn response_code(&self) -> HostResult<Option<Vec<u8>>> {
        host::get_property(&["response", "code"])
    }

    fn response_code_details(&self) -> HostResult<Option<Vec<u8>>> {
        host::get_property(&["response", "code_details"])
    }

    fn upstream_address(&self) -> HostResult<Option<Vec<u8>>> {
        host::get_property(&["upstream", "address"])
    }

    fn set_response_headers(&self, headers: &[(&str, &str)]) -> HostResult<()> {
        host::set_headers(MapType::HttpResponseHeaders, headers)
    }

    fn response_body(&self, size: usize) -> HostResult<Vec<u8>> {
        host::get_buffer(BufferType::HttpResponseBody, 0, size)
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> HostResult<()> {
        host::set_buffer(BufferType::HttpResponseBody, 0, size, body)
    }

    fn resume_response(&self) -> HostResult<()> {
        host::resume_http_response()
    }

    fn dispatch(
        &self,
        cluster: &str,
        path: &str,
        body: &[u8],
        timeout: std::time::Duration,
    ) -> HostResult<()> {
        host::dispatch_http_call(cluster, path, body, timeout).map(|_token| ())
    }

    fn set_decision(&self, record: &str) -> HostResult<()> {
        host::set_property(DECISION_PROPERTY, record.as_bytes())
    }

    fn new_webhook_id(&self) -> String {
        ids::next_id()
    }

    fn count_sent(&self) {
        self.metrics.count_sent();
    }

    fn count_outcome(&self, reason: &'static str, code: Option<u32>) {
        self.metrics.count_outcome(reason, code);
    }

    fn count_receiver_answer(&self, status: u16) {
        self.metrics.count_receiver_answer(status);
    }

    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }

    fn clock(&self) -> &dyn Clock {
        &HostClock
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (status, body) = host::http_call_reply(num_headers, body_size);
        let reply = Reply {
            status,
            body: &body,
        };
        self.delivery.on_etcd_reply(&self.host, reply);
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.delivery.on_request_headers(&self.host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.delivery
                .on_request_body(&self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.delivery.on_request_trailers(&self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.delivery.on_response_headers(&self.host, end_of_stream))
    }

    fn on_log(&mut self) {
        self.delivery.on_log(&self.host);
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.delivery
                .on_response_body(&self.host, body_size, end_of_stream),
        )
    }
}
