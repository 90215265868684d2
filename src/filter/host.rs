//! Host calls that never panic. The SDK's `hostcalls` panic on any status they do not expect
//! (and on a header that is not UTF-8), which would kill the VM; these wrappers return the status
//! instead, so every failure becomes an envelope.

use crate::abi::{deserialize_map, serialize_map};
use proxy_wasm::types::{BufferType, MapType};
use std::ptr::null_mut;

/// A host status other than Ok (see the proxy-wasm ABI: 1 NotFound, 2 BadArgument, 8 CasMismatch...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

pub type HostResult<T> = Result<T, HostError>;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

fn check(status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of memory the host allocated through the SDK's `proxy_on_memory_allocate`.
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host filled `size` bytes it allocated with the SDK allocator (a boxed slice of
    // exactly `size` bytes), and hands us ownership.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Calls a host function that returns bytes, mapping NotFound to None.
fn get_bytes(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> HostResult<Option<Vec<u8>>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live &str.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

pub fn now_unix_nanos() -> HostResult<u64> {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

pub fn get_buffer(buffer: BufferType, start: usize, max_size: usize) -> HostResult<Vec<u8>> {
    // SAFETY: out-pointers are valid for the call.
    get_bytes(|data, size| unsafe {
        proxy_get_buffer_bytes(buffer as u32, start, max_size, data, size)
    })
    .map(Option::unwrap_or_default)
}

pub fn set_buffer(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointer and length of a live slice.
    check(unsafe {
        proxy_set_buffer_bytes(buffer as u32, start, size, value.as_ptr(), value.len())
    })
}

pub fn get_header(map: MapType, name: &str) -> HostResult<Option<Vec<u8>>> {
    // SAFETY: key slice live; out-pointers valid.
    get_bytes(|data, size| unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), data, size)
    })
}

/// A header as text (lossy for bytes that are not UTF-8).
pub fn get_header_text(map: MapType, name: &str) -> HostResult<Option<String>> {
    Ok(get_header(map, name)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// All headers, names and values as text (lossy for bytes that are not UTF-8).
pub fn get_headers(map: MapType) -> HostResult<Vec<(String, String)>> {
    Ok(deserialize_map(&get_headers_encoded(map)?))
}

/// All headers in the ABI's map encoding (`abi::map_pairs` reads them without copying).
pub fn get_headers_encoded(map: MapType) -> HostResult<Vec<u8>> {
    // SAFETY: out-pointers valid.
    get_bytes(|data, size| unsafe { proxy_get_header_map_pairs(map as u32, data, size) })
        .map(Option::unwrap_or_default)
}

/// Sets one header (replacing any value it had).
pub fn set_header(map: MapType, name: &str, value: &str) -> HostResult<()> {
    // SAFETY: name and value slices live.
    check(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Replaces the whole header map (pseudo-headers included) in one host call.
pub fn set_headers(map: MapType, headers: &[(&str, &str)]) -> HostResult<()> {
    let data = serialize_map(headers);
    // SAFETY: pointer and length of a live Vec.
    check(unsafe { proxy_set_header_map_pairs(map as u32, data.as_ptr(), data.len()) })
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
    send_local_response_details(status, "", headers, body)
}

/// A local reply whose `response.code_details` is `details` (one token, no spaces).
pub fn send_local_response_details(
    status: u32,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HostResult<()> {
    let data = serialize_map(headers);
    // SAFETY: pointers and lengths of live slices.
    check(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            data.as_ptr(),
            data.len(),
            -1,
        )
    })
}

pub fn get_property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let serialized = path.join("\0");
    // SAFETY: path slice live; out-pointers valid.
    get_bytes(|data, size| unsafe {
        proxy_get_property(serialized.as_ptr(), serialized.len(), data, size)
    })
}

/// Sets a one-segment property: Envoy keeps it in the stream's filter state as `wasm.<name>`,
/// where access logs read it (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_property(name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: name and value slices live.
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Envoy's log level for this plugin (proxy-wasm levels: 0 trace .. 4 error, 5 critical).
pub fn log_level() -> HostResult<u32> {
    let mut level: u32 = 0;
    // SAFETY: the host writes one u32.
    check(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// Shared data of this vm_id: the value (None when missing) and its CAS token.
pub fn get_shared_data(key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: key slice live; out-pointers valid.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
        OK => Ok((take(data, size), Some(cas))),
        NOT_FOUND => Ok((None, None)),
        status => Err(HostError(status)),
    }
}

/// Ok(true) stored, Ok(false) the CAS token did not match.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> HostResult<bool> {
    // SAFETY: key and value slices live.
    match unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    } {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        status => Err(HostError(status)),
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// Resumes a request paused by this filter (proxy_continue_stream(HttpRequest)).
pub fn resume_http_request() -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(0) })
}

/// Resumes a response paused by this filter (proxy_continue_stream(HttpResponse)).
pub fn resume_http_response() -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(1) })
}

/// `POST path` with a JSON body to an Envoy cluster; the answer comes to
/// `on_http_call_response` of the calling context with the returned token.
///
/// The one host call not made through a raw import here: the SDK's dispatcher must learn the
/// token (its `register_callout` is private, and an unregistered token makes its
/// `proxy_on_http_call_response` panic). The SDK's wrapper panics only on a status other than
/// Ok, BadArgument and InternalFailure; Envoy's `http_call` returns only those, or
/// InvalidMemoryAccess for pointers outside the VM's memory, which live slices never are. The
/// headers are plain ASCII built here.
pub fn dispatch_http_call(
    cluster: &str,
    path: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> HostResult<u32> {
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", cluster),
        ("content-type", "application/json"),
    ];
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
        .map_err(|status| HostError(status as u32))
}

/// The answer to a `dispatch_http_call`, as `on_http_call_response` announces it: its status
/// (None: no answer, or no status) and its body.
pub fn http_call_reply(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = if num_headers == 0 {
        None
    } else {
        get_header_text(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
    };
    let body = if body_size == 0 {
        Vec::new()
    } else {
        get_buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default()
    };
    (status, body)
}
