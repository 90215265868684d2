//! The delivery's side of the limit: it carries the slot's calls to etcd through the host and
//! acts on each step's end (`limit::slot` takes the same steps for both backends).

use super::{Delivery, Host, Phase};
use crate::error::Failure;
use crate::limit::etcd::{Call, Reply};
use crate::limit::slot::{Finished, Step};

impl Delivery {
    /// Sends one call to etcd through its Envoy cluster.
    pub(super) fn dispatch(&mut self, host: &dyn Host, call: Call) -> Result<(), Failure> {
        let settings = self.settings()?;
        let state = &settings.config.state;
        let timeout = std::time::Duration::from_millis(u64::from(state.timeout_ms));
        host.dispatch(&state.cluster, call.path, call.body.as_bytes(), timeout)
            .map_err(|e| {
                self.slot.abandon();
                Failure::LimitUnavailable(format!(
                    "etcd: call through cluster {:?} failed (host status {})",
                    state.cluster, e.0
                ))
            })
    }

    /// An etcd answer (or its absence) for the call in flight.
    pub(super) fn on_limit_reply(&mut self, host: &dyn Host, reply: Reply) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let (limiter, etcd) = (&settings.limiter, settings.etcd.as_ref());
        let step = self
            .slot
            .on_reply(limiter, etcd, host.store(), reply, host.clock());
        match step {
            None => {}
            Some(Step::Call(call)) => self.carry(host, call),
            Some(Step::Done(Finished::Taken(Ok(())))) => {
                self.let_go(host);
                if let Err(e) = host.resume_request() {
                    log::error!("hookgate: could not resume the request ({})", e.0);
                }
            }
            Some(Step::Done(Finished::Taken(Err(failure)))) => {
                self.refuse(host, failure);
            }
            Some(Step::Done(Finished::Updated)) => self.release_response(host),
        }
    }

    /// Carries a call to etcd. One that cannot be made refuses a request still waiting for
    /// the decision; after that (a give-back, a verification), the answer goes on without it.
    fn carry(&mut self, host: &dyn Host, call: Call) {
        if let Err(failure) = self.dispatch(host, call) {
            if matches!(self.phase, Phase::Receiving) {
                self.refuse(host, failure);
            } else {
                log::warn!("hookgate: limit state not updated: {failure}");
                self.release_response(host);
            }
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
        if let Some(settings) = self.settings.clone() {
            let etcd = settings.etcd.as_ref();
            let step = self.slot.give_back(&settings.limiter, etcd, host.store());
            if let Step::Call(call) = step {
                self.carry(host, call);
            }
        }
    }

    /// A right key verifies the webhook; a wrong one is the document's 11110113.
    pub(super) fn verify_key(&mut self, host: &dyn Host, body: &[u8]) -> Result<(), Failure> {
        if let Some(settings) = self.settings.clone() {
            let etcd = settings.etcd.as_ref();
            let step = self
                .slot
                .judge_answer(&settings.limiter, etcd, host.store(), body)?;
            if let Step::Call(call) = step {
                self.carry(host, call);
            }
        }
        Ok(())
    }
}
