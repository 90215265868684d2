//! Counters and a latency histogram, defined through proxy-wasm so they appear on Envoy's
//! `/stats` and `/stats/prometheus` (Envoy prefixes them with `wasmcustom.`):
//! - `hookgate.outcome.<reason>`: one per answer to the engine (`delivered`, or the failure's
//!   reason, e.g. `blocked_destination`, `over_limit`, `invalid_name`);
//! - `hookgate.code.<code>`: one per answer, by envelope code;
//! - `hookgate.sent`: webhooks let go towards a receiver;
//! - `hookgate.receiver_latency_ms`: time from letting a webhook go to the receiver's answer;
//! - `hookgate.tracked_webhooks` (gauge): webhooks the local limit table holds.
//!
//! Names are defined on first use and their ids kept per worker; a metric that cannot be
//! defined is skipped, never fatal.

use std::cell::RefCell;
use std::collections::HashMap;

const COUNTER: u32 = 0;
const GAUGE: u32 = 1;
const HISTOGRAM: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_define_metric(
        kind: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    pub fn count(&self, name: &str) {
        if let Some(id) = self.id(COUNTER, name) {
            // SAFETY: plain values.
            unsafe { proxy_increment_metric(id, 1) };
        }
    }

    pub fn record(&self, name: &str, value: u64) {
        if let Some(id) = self.id(HISTOGRAM, name) {
            // SAFETY: plain values.
            unsafe { proxy_record_metric(id, value) };
        }
    }

    pub fn gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.id(GAUGE, name) {
            // SAFETY: plain values.
            unsafe { proxy_record_metric(id, value) };
        }
    }

    fn id(&self, kind: u32, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let mut id = 0u32;
        // SAFETY: name slice live; the host writes one u32.
        let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
        if status != 0 {
            log::warn!("hookgate: cannot define metric {name} (host status {status})");
            return None;
        }
        self.ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }
}
