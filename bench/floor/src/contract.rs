//! The contract floor: the floor's bytes through (the same request body to the receiver, the
//! receiver's body back), with exactly the host calls hookgate's delivery of a verified webhook
//! makes, in its order and of its shapes, and nothing else: no parsing, no policy. The request
//! header map and the caller's address are read and dropped; `:status` is read and echoed in the
//! answer's headers; the decision record is a fixed string of the length of hookgate's.
//!
//! Per delivery (hookgate's `src/delivery/host_calls.rs` pins its own): the request header map
//! read whole, `source.address` read, the body read, the request header map written whole (the
//! nine headers hookgate sends a plain-http receiver) and the body written, `:status` read, the
//! answer's body read, the decision record written (`set_property` `hookgate`, which the access
//! log prints as `%FILTER_STATE(wasm.hookgate:PLAIN)%`), the answer's header map written whole
//! (hookgate's five headers) and its body written (the receiver's bytes, not an envelope).

use super::{until_end, whole_body, Target};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::ptr::null_mut;
use std::rc::Rc;

// Raw calls where the SDK would add work or change the shape: its header-map read decodes every
// pair into Strings (hookgate reads the encoded map), and its property paths end in a NUL
// (hookgate's do not, and the record's name must be exactly `hookgate`).
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, data: *const u8, size: usize) -> u32;
}

/// Drops what a host call returned (allocated by the SDK's `proxy_on_memory_allocate`).
fn release(data: *mut u8, size: usize) {
    if !data.is_null() {
        // SAFETY: the host filled `size` bytes it allocated through the SDK and hands them over.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
}

fn read_request_headers() {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers valid for the call.
    unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size) };
    release(data, size);
}

fn read_source_address() {
    let path = "source\0address";
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: path live; out-pointers valid for the call.
    unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    release(data, size);
}

fn write_record(record: &str) {
    let name = "hookgate";
    // SAFETY: name and value live for the call.
    unsafe { proxy_set_property(name.as_ptr(), name.len(), record.as_ptr(), record.len()) };
}

pub(crate) struct ContractFloor {
    target: Rc<Target>,
    status: String,
}

impl ContractFloor {
    pub(crate) fn new(target: Rc<Target>) -> Self {
        ContractFloor {
            target,
            status: String::new(),
        }
    }
}

impl Context for ContractFloor {}

impl HttpContext for ContractFloor {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        read_request_headers();
        read_source_address();
        until_end(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(body) = whole_body(end_of_stream, || self.get_http_request_body(0, body_size))
        else {
            return Action::Pause;
        };
        let length = body.len().to_string();
        self.set_http_request_headers(vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", &self.target.authority),
            (":path", &self.target.path),
            ("content-type", "application/json"),
            ("content-length", &length),
            // as long as hookgate's `hookgate/<version>`
            ("user-agent", "hookgate-floor"),
            ("x-hookgate-route", "http"),
            ("x-forwarded-proto", "http"),
        ]);
        self.set_http_request_body(0, body_size, &body);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.status = self.get_http_response_header(":status").unwrap_or_default();
        until_end(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(body) = whole_body(end_of_stream, || self.get_http_response_body(0, body_size))
        else {
            return Action::Pause;
        };
        write_record(&self.target.record);
        let length = body.len().to_string();
        self.set_http_response_headers(vec![
            (":status", &self.status),
            ("content-length", &length),
            ("content-type", "application/json"),
            ("x-hookgate-delivered", "yes"),
            ("x-hookgate-upstream-status", &self.status),
        ]);
        self.set_http_response_body(0, body_size, &body);
        Action::Continue
    }
}
