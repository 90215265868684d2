//! Counters and a gauge, defined through proxy-wasm so they appear on Envoy's `/stats` and
//! `/stats/prometheus`. Envoy prefixes them with `wasmcustom.`; the names carry their labels
//! as `.<label>.<value>` pairs, which the bootstrap's `stats_config.stats_tags`
//! (envoy/*.yaml) turns into Prometheus labels:
//! - `hookgate.outcomes.plan.<namespace>.outcome.<reason>.code.<code>`, on
//!   `/stats/prometheus` `hookgate_outcomes{plan,outcome,code}`: one per answer to the engine
//!   (`delivered`, or the failure's reason, e.g. `blocked_destination`, `over_limit`);
//!   `engine_reset` (requests the engine reset before any answer) has no code:
//!   `hookgate.outcomes.plan.<namespace>.outcome.engine_reset`, `hookgate_outcomes{plan,outcome}`;
//! - `hookgate.sent.plan.<namespace>` (`hookgate_sent{plan}`): webhooks let go towards a
//!   receiver;
//! - `hookgate.receiver_answers.plan.<namespace>.class.<N>xx`
//!   (`hookgate_receiver_answers{plan,class}`): the receivers' own answers by status class.
//!   Envoy's `upstream_rq_xx` of the `webhooks` cluster counts Envoy's own 503s (a DNS failure)
//!   as 5xx too (measured), so it cannot tell a failing receiver;
//! - `hookgate.tracked_webhooks.plan.<namespace>` (gauge, `hookgate_tracked_webhooks{plan}`):
//!   webhooks the local limit table holds.
//!
//! The plan is the configuration's `limit.namespace`. Latency is Envoy's own:
//! `http.<listener>.downstream_rq_time` (the engine's view) and the `webhooks` cluster's
//! `upstream_rq_time` (the receiver's answer). A copy kept here cost two host calls a request.
//!
//! Names are defined on first use and their ids kept per worker; a metric that cannot be
//! defined is skipped, never fatal. The per-request ones are found again without building or
//! hashing their names.
//!
//! The counters are added up inside the worker and handed to Envoy by the worker's tick (every
//! second, `flush`), one host call per counter that moved, instead of three host calls a
//! delivery: `/stats` is at most about a second behind (docs/observability.md). A configuration
//! that is replaced hands over what it still holds when its last stream ends (`Drop`).

use std::cell::{Cell, RefCell};

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

/// An outcome's reason, and its envelope code when there was an answer.
type Outcome = (&'static str, Option<u32>);

/// The metrics of one plugin configuration (one plan).
pub struct Metrics {
    plan: String,
    sent: Cell<Option<u32>>,
    tracked: Cell<Option<u32>>,
    /// `hookgate.receiver_answers` ids by status class (1 to 5).
    classes: [Cell<Option<u32>>; 5],
    /// `hookgate.outcomes` ids by outcome.
    outcomes: RefCell<Vec<(Outcome, u32)>>,
    /// Increments not yet handed to Envoy, by counter id.
    pending: RefCell<Vec<(u32, i64)>>,
    /// No tick to flush on: every increment goes to Envoy at once.
    unbatched: Cell<bool>,
}

impl Metrics {
    /// The metrics of the plan `plan` (a `limit.namespace`: `A-Z a-z 0-9 . _ -`, so a dot in it
    /// would split the name: it is written as `_`).
    pub fn new(plan: &str) -> Self {
        Metrics {
            plan: plan.replace('.', "_"),
            sent: Cell::new(None),
            tracked: Cell::new(None),
            classes: Default::default(),
            outcomes: RefCell::new(Vec::new()),
            pending: RefCell::new(Vec::new()),
            unbatched: Cell::new(false),
        }
    }

    /// Without a tick nothing would flush: count straight into Envoy instead.
    pub fn unbatched(&self) {
        self.unbatched.set(true);
    }

    /// Counts one for `id`, handed to Envoy at the next `flush`.
    fn add(&self, id: u32) {
        {
            let mut pending = self.pending.borrow_mut();
            match pending.iter_mut().find(|(known, _)| *known == id) {
                Some((_, count)) => *count += 1,
                None => pending.push((id, 1)),
            }
        }
        if self.unbatched.get() {
            self.flush();
        }
    }

    /// Hands every pending increment to Envoy (on the worker's tick).
    pub fn flush(&self) {
        for (id, count) in self.pending.borrow_mut().iter_mut() {
            if *count > 0 {
                // SAFETY: plain values.
                unsafe { proxy_increment_metric(*id, *count) };
                *count = 0;
            }
        }
    }

    /// `hookgate.sent`.
    pub fn count_sent(&self) {
        let name = || format!("hookgate.sent.plan.{}", self.plan);
        if let Some(id) = fixed(&self.sent, COUNTER, name) {
            self.add(id);
        }
    }

    /// `hookgate.outcomes` (with a code for an answer): the name is built only the first time a
    /// worker meets an outcome.
    pub fn count_outcome(&self, reason: &'static str, code: Option<u32>) {
        let key = (reason, code);
        let known = self
            .outcomes
            .borrow()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, id)| *id);
        let id = known.or_else(|| {
            let name = outcome_name(&self.plan, reason, code);
            let id = define(COUNTER, &name)?;
            self.outcomes.borrow_mut().push((key, id));
            Some(id)
        });
        if let Some(id) = id {
            self.add(id);
        }
    }

    /// `hookgate.receiver_answers`: one per answer that came from a receiver.
    pub fn count_receiver_answer(&self, status: u16) {
        let class = status / 100;
        let Some(cached) = self.classes.get(usize::from(class).wrapping_sub(1)) else {
            return;
        };
        let name = || {
            format!(
                "hookgate.receiver_answers.plan.{}.class.{class}xx",
                self.plan
            )
        };
        if let Some(id) = fixed(cached, COUNTER, name) {
            self.add(id);
        }
    }

    /// `hookgate.tracked_webhooks`.
    pub fn tracked_webhooks(&self, value: u64) {
        let name = || format!("hookgate.tracked_webhooks.plan.{}", self.plan);
        if let Some(id) = fixed(&self.tracked, GAUGE, name) {
            // SAFETY: plain values.
            unsafe { proxy_record_metric(id, value) };
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The name of one outcome counter; the labels' order is the one the stats tags expect.
fn outcome_name(plan: &str, reason: &str, code: Option<u32>) -> String {
    match code {
        Some(code) => format!("hookgate.outcomes.plan.{plan}.outcome.{reason}.code.{code}"),
        None => format!("hookgate.outcomes.plan.{plan}.outcome.{reason}"),
    }
}

fn fixed(cached: &Cell<Option<u32>>, kind: u32, name: impl FnOnce() -> String) -> Option<u32> {
    if cached.get().is_none() {
        cached.set(define(kind, &name()));
    }
    cached.get()
}

fn define(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: name slice live; the host writes one u32.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    if status != 0 {
        log::warn!("hookgate: cannot define metric {name} (host status {status})");
        return None;
    }
    Some(id)
}
