//! One delivery's slot in the hourly limit, the same steps whichever backend keeps the state.
//!
//! Each step starts with [`Slot::take`], [`Slot::give_back`] or [`Slot::judge_answer`] and
//! ends with [`Step::Done`]. A step the local table decides is done at once; one etcd decides
//! returns [`Step::Call`], a call the caller carries to etcd and whose reply (or its absence) it
//! hands to [`Slot::on_reply`], which returns the next step, until one is done. One call is in
//! flight at a time.

use super::etcd::{Acquire, Admitted, Call, Etcd, Next, Reply, Update};
use super::{KeyVerdict, LimitState, Limiter, SharedStore, Ticket, WebhookId};
use crate::clock::Clock;
use crate::error::Failure;

/// A step's next move: a call to carry to etcd, or done.
#[derive(Debug)]
pub enum Step<T> {
    Call(Call),
    Done(T),
}

/// How a step that waited for etcd ended.
#[derive(Debug)]
pub enum Finished {
    /// `take` decided: the send is allowed (and counted when it counts), or refused.
    Taken(Result<(), Failure>),
    /// A give-back or a verification is written (or could not be: logged).
    Updated,
}

/// What was taken: a send in this Envoy's table (or a free pass for a webhook this Envoy knows
/// verified), or a send etcd recorded.
enum Grant {
    Local(Ticket),
    Etcd(Admitted),
}

/// The etcd operation waiting for its reply.
enum Pending {
    Take(Acquire),
    GiveBack(Update),
    Verify(Update),
}

#[derive(Default)]
pub struct Slot {
    grant: Option<Grant>,
    pending: Option<Pending>,
    /// With etcd: the limit state its record gave (for the test report).
    etcd_state: Option<LimitState>,
}

impl Slot {
    /// Takes a send for this webhook now.
    pub fn take(
        &mut self,
        limiter: &Limiter,
        etcd: Option<&Etcd>,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        id: &WebhookId,
    ) -> Result<Step<()>, Failure> {
        let Some(etcd) = etcd else {
            self.grant = Some(Grant::Local(limiter.acquire(store, clock, id)?));
            return Ok(Step::Done(()));
        };
        // A webhook this Envoy knows verified (verification never reverts) needs no call.
        if let Some(ticket) = limiter.cached_free_ticket(store, clock, id) {
            self.grant = Some(Grant::Local(ticket));
            return Ok(Step::Done(()));
        }
        let (op, call) = Acquire::start(etcd, limiter, id, clock);
        Ok(self.wait(Pending::Take(op), call))
    }

    /// A send that never reached the receiver is given back.
    pub fn give_back(
        &mut self,
        limiter: &Limiter,
        etcd: Option<&Etcd>,
        store: &dyn SharedStore,
    ) -> Step<()> {
        match &self.grant {
            Some(Grant::Etcd(admitted)) => {
                let update = etcd.and_then(|etcd| Update::give_back(etcd, limiter, admitted));
                if let Some((op, call)) = update {
                    return self.wait(Pending::GiveBack(op), call);
                }
            }
            Some(Grant::Local(ticket)) => {
                if let Err(failure) = limiter.give_back(store, ticket) {
                    log::warn!("hookgate: could not give back a limit slot: {failure}");
                }
                self.grant = None;
            }
            None => {}
        }
        Step::Done(())
    }

    /// What the receiver's answer says about the key: a wrong one is the document's 11110113;
    /// the right one verifies the webhook (written to etcd with that backend).
    pub fn judge_answer(
        &mut self,
        limiter: &Limiter,
        etcd: Option<&Etcd>,
        store: &dyn SharedStore,
        body: &[u8],
    ) -> Result<Step<()>, Failure> {
        let admitted = match &self.grant {
            None => return Ok(Step::Done(())),
            Some(Grant::Local(ticket)) => {
                return match limiter.observe_answer(store, ticket, body)? {
                    KeyVerdict::WrongKey => Err(Failure::WrongKey),
                    KeyVerdict::Verified | KeyVerdict::NoKey => Ok(Step::Done(())),
                }
            }
            Some(Grant::Etcd(admitted)) => admitted,
        };
        match limiter.judge_key(&admitted.ticket, body) {
            KeyVerdict::WrongKey => Err(Failure::WrongKey),
            KeyVerdict::NoKey => Ok(Step::Done(())),
            KeyVerdict::Verified => {
                let update = etcd.and_then(|etcd| Update::verify(etcd, limiter, admitted));
                if let Some(state) = &mut self.etcd_state {
                    state.verified = true;
                    state.allowed_per_hour = limiter.verified_per_hour();
                    if state.allowed_per_hour.is_none() {
                        state.sends_in_window = 0;
                        state.retry_after = None;
                    }
                }
                Ok(match update {
                    Some((op, call)) => self.wait(Pending::Verify(op), call),
                    None => Step::Done(()),
                })
            }
        }
    }

    /// etcd's reply (status None: no answer, e.g. a timeout) to the call in flight; None when
    /// no call was.
    pub fn on_reply(
        &mut self,
        limiter: &Limiter,
        etcd: Option<&Etcd>,
        store: &dyn SharedStore,
        reply: Reply,
        clock: &dyn Clock,
    ) -> Option<Step<Finished>> {
        let step = match self.pending.take()? {
            Pending::Take(mut op) => match op.on_reply(limiter, reply, clock) {
                Next::Call(call) => self.wait(Pending::Take(op), call),
                Next::Done(decided) => {
                    if let Some(etcd) = etcd {
                        etcd.note(&decided);
                    }
                    self.etcd_state = decided.state;
                    let taken = decided.result.map(|admitted| {
                        // Read verified from etcd, whoever verified it: cached here too.
                        if admitted.free_by_verification() {
                            cache_verified(limiter, store, &admitted);
                        }
                        self.grant = Some(Grant::Etcd(admitted));
                    });
                    Step::Done(Finished::Taken(taken))
                }
            },
            Pending::GiveBack(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.wait(Pending::GiveBack(op), call),
                Next::Done(result) => {
                    if let Err(failure) = result {
                        log::warn!("hookgate: could not give back a limit slot: {failure}");
                    }
                    Step::Done(Finished::Updated)
                }
            },
            Pending::Verify(mut op) => match op.on_reply(limiter, reply) {
                Next::Call(call) => self.wait(Pending::Verify(op), call),
                Next::Done(result) => {
                    match (result, &self.grant) {
                        (Ok(()), Some(Grant::Etcd(admitted))) => {
                            cache_verified(limiter, store, admitted)
                        }
                        (Ok(()), _) => {}
                        (Err(failure), _) => {
                            log::warn!("hookgate: could not record a verification: {failure}")
                        }
                    }
                    Step::Done(Finished::Updated)
                }
            },
        };
        Some(step)
    }

    /// The call just asked for could not be made: nothing is in flight.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// Whether a call to etcd is in flight.
    pub fn in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// The limit state etcd's record gave, with that backend.
    pub fn etcd_state(&self) -> Option<&LimitState> {
        self.etcd_state.as_ref()
    }

    fn wait<T>(&mut self, pending: Pending, call: Call) -> Step<T> {
        self.pending = Some(pending);
        Step::Call(call)
    }
}

/// With the etcd backend: records a verified webhook in this Envoy's shared data (the local table,
/// within `limit.max_tracked`), so that its later sends through this Envoy need no call to etcd.
fn cache_verified(limiter: &Limiter, store: &dyn SharedStore, admitted: &Admitted) {
    if let Err(failure) = limiter.record_verified(store, &admitted.ticket) {
        log::info!("hookgate: verification not cached: {failure}");
    }
}
