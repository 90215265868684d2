//! The hourly limit of one delivery, the same steps whichever backend keeps the state: start
//! (take a send), on reply, done; then give back or verify. The local table finishes each step
//! at once; etcd needs one or more calls, whose replies come back through `on_etcd_reply`.

use super::{Delivery, Host};
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::Failure;
use crate::limit::etcd::{Acquire, Admitted, Call, Next, Reply, Update};
use crate::limit::{KeyVerdict, Ticket, WebhookId};

/// What the limit let through for this delivery, and the etcd call in flight.
#[derive(Default)]
pub(super) struct Limit {
    grant: Option<Grant>,
    pending: Option<Pending>,
}

/// What was taken: a send in this Envoy's table (or a free pass for a webhook this Envoy knows
/// verified), or a send etcd recorded.
enum Grant {
    Local(Ticket),
    Etcd(Admitted),
}

/// A call to etcd in flight (one at a time per request), and what it is for.
pub(super) enum Pending {
    /// The request is paused until etcd decided.
    Acquire(Acquire),
    /// A delivery that never arrived gives its send back.
    GiveBack(Update),
    /// The receiver's right key is recorded.
    Verify(Update),
}

impl Limit {
    /// Takes a send for this webhook: done at once (Ok(None)), or the first call to etcd.
    pub(super) fn start(
        &mut self,
        host: &dyn Host,
        settings: &Settings,
        clock: &dyn Clock,
        id: &WebhookId,
    ) -> Result<Option<(Pending, Call)>, Failure> {
        let limiter = &settings.limiter;
        let Some(etcd) = &settings.etcd else {
            self.grant = Some(Grant::Local(limiter.acquire(host.store(), clock, id)?));
            return Ok(None);
        };
        // A webhook this Envoy knows verified (verification never reverts) needs no call.
        if let Some(ticket) = limiter.cached_free_ticket(host.store(), clock, id) {
            self.grant = Some(Grant::Local(ticket));
            return Ok(None);
        }
        let (op, call) = Acquire::start(etcd, limiter, id);
        Ok(Some((Pending::Acquire(op), call)))
    }

    /// Whether a call to etcd is in flight.
    pub(super) fn in_flight(&self) -> bool {
        self.pending.is_some()
    }
}

impl Delivery {
    /// Sends one call to etcd through its Envoy cluster.
    pub(super) fn dispatch(
        &mut self,
        host: &dyn Host,
        call: Call,
        pending: Pending,
    ) -> Result<(), Failure> {
        let settings = self.settings()?;
        let state = &settings.config.state;
        let timeout = std::time::Duration::from_millis(u64::from(state.timeout_ms));
        host.dispatch(&state.cluster, call.path, call.body.as_bytes(), timeout)
            .map_err(|e| {
                Failure::LimitUnavailable(format!(
                    "etcd: call through cluster {:?} failed (host status {})",
                    state.cluster, e.0
                ))
            })?;
        self.limit.pending = Some(pending);
        Ok(())
    }

    /// An etcd answer (or its absence) for the call in flight.
    pub(super) fn on_limit_reply(&mut self, host: &dyn Host, reply: Reply) {
        let (Some(settings), Some(pending)) = (self.settings.clone(), self.limit.pending.take())
        else {
            return;
        };
        let limiter = &settings.limiter;
        match pending {
            Pending::Acquire(mut op) => match op.on_reply(limiter, reply, host.clock()) {
                Next::Call(call) => {
                    if let Err(failure) = self.dispatch(host, call, Pending::Acquire(op)) {
                        self.refuse(host, failure);
                    }
                }
                Next::Done(decided) => {
                    if let Some(etcd) = &settings.etcd {
                        etcd.note_lease(decided.lease);
                    }
                    self.etcd_state = decided.state;
                    match decided.result {
                        Ok(admitted) => {
                            self.limit.grant = Some(Grant::Etcd(admitted));
                            self.let_go(host);
                            if let Err(e) = host.resume_request() {
                                log::error!("hookgate: could not resume the request ({})", e.0);
                            }
                        }
                        Err(failure) => {
                            self.refuse(host, failure);
                        }
                    }
                }
            },
            Pending::GiveBack(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.dispatch_update(host, call, Pending::GiveBack(op)),
                Next::Done(result) => {
                    if let Err(failure) = result {
                        log::warn!("hookgate: could not give back a limit slot: {failure}");
                    }
                    self.release_response(host);
                }
            },
            Pending::Verify(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.dispatch_update(host, call, Pending::Verify(op)),
                Next::Done(result) => {
                    match result {
                        Ok(()) => {
                            if let Some(Grant::Etcd(admitted)) = &self.limit.grant {
                                // Cached: this Envoy's later sends need no call to etcd.
                                if let Err(failure) =
                                    limiter.record_verified(host.store(), &admitted.ticket)
                                {
                                    log::info!("hookgate: verification not cached: {failure}");
                                }
                            }
                        }
                        Err(failure) => {
                            log::warn!("hookgate: could not record a verification: {failure}")
                        }
                    }
                    self.release_response(host);
                }
            },
        }
    }

    /// Dispatches a give-back or verification write; on failure the answer goes on without it.
    fn dispatch_update(&mut self, host: &dyn Host, call: Call, pending: Pending) {
        if let Err(failure) = self.dispatch(host, call, pending) {
            log::warn!("hookgate: limit state not updated: {failure}");
            self.release_response(host);
        }
    }

    /// Lets the engine's answer go once the etcd write it waited for is done.
    fn release_response(&mut self, host: &dyn Host) {
        if std::mem::take(&mut self.holding_response) {
            if let Err(e) = host.resume_response() {
                log::error!("hookgate: could not resume the answer ({})", e.0);
            }
        }
    }

    /// A delivery that never reached the receiver gives its send back.
    pub(super) fn give_back(&mut self, host: &dyn Host) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        match self.limit.grant.take() {
            Some(Grant::Etcd(admitted)) => {
                if let Some(etcd) = &settings.etcd {
                    if let Some((op, call)) = Update::give_back(etcd, &settings.limiter, &admitted)
                    {
                        self.dispatch_update(host, call, Pending::GiveBack(op));
                    }
                }
                self.limit.grant = Some(Grant::Etcd(admitted));
            }
            Some(Grant::Local(ticket)) => {
                if let Err(failure) = settings.limiter.give_back(host.store(), &ticket) {
                    log::warn!("hookgate: could not give back a limit slot: {failure}");
                }
            }
            None => {}
        }
    }

    /// A right key verifies the webhook; a wrong one is the document's 11110113.
    pub(super) fn verify_key(&mut self, host: &dyn Host, body: &[u8]) -> Result<(), Failure> {
        let Some(settings) = self.settings.clone() else {
            return Ok(());
        };
        let limiter = &settings.limiter;
        match &self.limit.grant {
            None => Ok(()),
            Some(Grant::Local(ticket)) => {
                match limiter.observe_answer(host.store(), ticket, body)? {
                    KeyVerdict::WrongKey => Err(Failure::WrongKey),
                    KeyVerdict::Verified | KeyVerdict::NoKey => Ok(()),
                }
            }
            Some(Grant::Etcd(admitted)) => match limiter.judge_key(&admitted.ticket, body) {
                KeyVerdict::WrongKey => Err(Failure::WrongKey),
                KeyVerdict::NoKey => Ok(()),
                KeyVerdict::Verified => {
                    if let Some(state) = &mut self.etcd_state {
                        state.verified = true;
                        state.allowed_per_hour = limiter.verified_per_hour();
                        if state.allowed_per_hour.is_none() {
                            state.sends_in_window = 0;
                            state.retry_after = None;
                        }
                    }
                    let update = settings
                        .etcd
                        .as_ref()
                        .and_then(|etcd| Update::verify(etcd, limiter, admitted));
                    if let Some((op, call)) = update {
                        self.dispatch_update(host, call, Pending::Verify(op));
                    }
                    Ok(())
                }
            },
        }
    }
}
