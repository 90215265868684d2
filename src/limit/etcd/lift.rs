//! A support operator's look at one webhook's record in etcd, or its lift (verify, reset the
//! window): read the key, let the core decide ([`Limiter::lift_record`]), write by
//! compare-and-swap on the revision read, and decide again on what is there when another write
//! came in between (at most [`MAX_ATTEMPTS`] rounds).
//!
//! A verified record is written without a lease (it stays, as every verified record); an
//! unverified record left with no send is deleted (its key would carry nothing).

use super::{
    body_or_retry, decode_record, encode_record, parse_range, parse_txn, range, txn_delete,
    txn_put, Call, Etcd, Kv, Next, Reply, Txn, MAX_ATTEMPTS,
};
use crate::clock::Clock;
use crate::error::Failure;
use crate::limit::{Ident, Lift, Lifted, LimitState, Limiter, Record, WebhookId};

/// One support operation on one webhook's key.
pub struct Support {
    key: String,
    ident: Ident,
    pre: bool,
    lift: Option<Lift>,
    /// The state first read (what the operator is shown as "before").
    before: Option<LimitState>,
    /// The state the write in flight leaves.
    after: Option<LimitState>,
    attempts: u32,
    retries: u32,
    last: Call,
}

impl Support {
    /// Starts with a read of the webhook's key.
    pub fn start(
        etcd: &Etcd,
        limiter: &Limiter,
        id: &WebhookId,
        lift: Option<Lift>,
    ) -> (Support, Call) {
        let ident = Ident::new(id);
        let key = etcd.key(limiter, &ident.name, &ident.url);
        let call = range(&key);
        let op = Support {
            pre: limiter.is_pre_verified(&ident),
            key,
            ident,
            lift,
            before: None,
            after: None,
            attempts: 0,
            retries: 0,
            last: call.clone(),
        };
        (op, call)
    }

    pub fn on_reply(
        &mut self,
        limiter: &Limiter,
        reply: Reply,
        clock: &dyn Clock,
    ) -> Next<Result<Lifted, Failure>> {
        let unavailable =
            |why: String| Next::Done(Err(Failure::LimitUnavailable(format!("etcd: {why}"))));
        let body = match body_or_retry(reply, &mut self.retries, &self.last) {
            Ok(body) => body,
            Err(next) => return next,
        };
        let kv = if self.after.is_some() {
            match parse_txn(body) {
                Ok(Txn::Succeeded { .. }) => return self.done(true),
                Ok(Txn::Failed { kv }) => kv,
                Err(why) => return unavailable(why),
            }
        } else {
            match parse_range(body) {
                Ok(kv) => kv,
                Err(why) => return unavailable(why),
            }
        };
        self.attempts += 1;
        if self.attempts > MAX_ATTEMPTS {
            return unavailable(format!("key still contended after {MAX_ATTEMPTS} attempts"));
        }
        match self.decide(limiter, kv, clock.now()) {
            Ok(Some(call)) => {
                self.last = call.clone();
                Next::Call(call)
            }
            Ok(None) => self.done(false),
            Err(why) => unavailable(why),
        }
    }

    /// The write that applies the lift to what etcd holds, or None when nothing changes.
    fn decide(
        &mut self,
        limiter: &Limiter,
        kv: Option<Kv>,
        now: u64,
    ) -> Result<Option<Call>, String> {
        let mut record = match &kv {
            Some(kv) => decode_record(kv, &self.ident)?,
            None => Record::default(),
        };
        let state = limiter.record_state(&record, self.pre, now);
        self.before.get_or_insert_with(|| state.clone());
        self.after = None;
        let lift = match self.lift {
            Some(Lift::Verify) if state.verified => None,
            lift => lift,
        };
        let Some(lift) = lift else {
            self.after = Some(state);
            return Ok(None);
        };
        let revision = kv.as_ref().map_or(0, |kv| kv.mod_revision);
        if !limiter.lift_record(&mut record, lift, now) {
            self.after = Some(state);
            return Ok(None);
        }
        self.after = Some(limiter.record_state(&record, self.pre, now));
        Ok(Some(if !record.verified && record.sends.is_empty() {
            txn_delete(&self.key, revision)
        } else {
            // Verified (the only other case a lift leaves): no lease, it stays.
            txn_put(&self.key, revision, &encode_record(&record, &self.ident), 0)
        }))
    }

    fn done(&mut self, changed: bool) -> Next<Result<Lifted, Failure>> {
        match (self.before.take(), self.after.take()) {
            (Some(before), Some(after)) => Next::Done(Ok(Lifted {
                before,
                after,
                changed,
            })),
            _ => Next::Done(Err(Failure::LimitUnavailable(
                "etcd: support operation without a state".into(),
            ))),
        }
    }
}
