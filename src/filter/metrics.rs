//! Counters and a gauge, defined through proxy-wasm so they appear on Envoy's
//! `/stats` and `/stats/prometheus` (Envoy prefixes them with `wasmcustom.`):
//! - `hookgate.outcome.<reason>`: one per answer to the engine (`delivered`, or the failure's
//!   reason, e.g. `blocked_destination`, `over_limit`, `invalid_name`);
//!   `engine_reset` counts requests the engine reset before any answer;
//! - `hookgate.code.<code>`: one per answer, by envelope code;
//! - `hookgate.sent`: webhooks let go towards a receiver;
//! - `hookgate.tracked_webhooks` (gauge): webhooks the local limit table holds.
//!
//! Latency is Envoy's own: `http.hookgate.downstream_rq_time` (the engine's view) and the
//! `upstream_rq_time` of the forward proxy's per-receiver sub-clusters. A copy kept here cost
//! two host calls a request.
//!
//! Names are defined on first use and their ids kept per worker; a metric that cannot be
//! defined is skipped, never fatal. The per-request ones (`sent`, the outcome and
//! code counters) are found again without building or hashing their names.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

const COUNTER: u32 = 0;
const GAUGE: u32 = 1;

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
    sent: Cell<Option<u32>>,
    /// `hookgate.outcome.<reason>` ids by reason (a failure's `reason()` or "delivered").
    outcomes: RefCell<Vec<(&'static str, u32)>>,
    /// `hookgate.code.<code>` ids by code.
    codes: RefCell<Vec<(u32, u32)>>,
}

impl Metrics {
    /// `hookgate.sent`.
    pub fn count_sent(&self) {
        if let Some(id) = self.fixed(&self.sent, COUNTER, "hookgate.sent") {
            // SAFETY: plain values.
            unsafe { proxy_increment_metric(id, 1) };
        }
    }

    /// `hookgate.outcome.<reason>` and, for an answer, `hookgate.code.<code>`: names are built
    /// only the first time a worker meets an outcome.
    pub fn count_outcome(&self, reason: &'static str, code: Option<u32>) {
        let outcome = find(&self.outcomes, |r| *r == reason).or_else(|| {
            let id = self.id(COUNTER, &format!("hookgate.outcome.{reason}"))?;
            self.outcomes.borrow_mut().push((reason, id));
            Some(id)
        });
        let code = code.and_then(|code| {
            find(&self.codes, |c| *c == code).or_else(|| {
                let id = self.id(COUNTER, &format!("hookgate.code.{code}"))?;
                self.codes.borrow_mut().push((code, id));
                Some(id)
            })
        });
        for id in [outcome, code].into_iter().flatten() {
            // SAFETY: plain values.
            unsafe { proxy_increment_metric(id, 1) };
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

    fn fixed(&self, cached: &Cell<Option<u32>>, kind: u32, name: &str) -> Option<u32> {
        if cached.get().is_none() {
            cached.set(self.id(kind, name));
        }
        cached.get()
    }
}

/// The id kept for a key, if any (a handful of entries: a scan beats hashing).
fn find<K: Copy>(ids: &RefCell<Vec<(K, u32)>>, is: impl Fn(&K) -> bool) -> Option<u32> {
    ids.borrow()
        .iter()
        .find(|(key, _)| is(key))
        .map(|(_, id)| *id)
}
