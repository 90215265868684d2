//! Changes to the record a delivery wrote: its send given back, or the webhook verified; by
//! compare-and-swap on the revision written, rereading when another write came in between.

use super::wire::{encode_record, parse_range, parse_txn, range, txn_delete, txn_put, Txn};
use super::*;

/// Changes the record this delivery wrote, by compare-and-swap, rereading when it moved on.
pub struct Update {
    key: String,
    ident: Ident,
    change: Change,
    attempts: u32,
    retries: u32,
    last: Call,
}

#[derive(Clone, Copy)]
enum Change {
    /// Remove this send time (give-back).
    GiveBack(u64),
    /// Mark verified; `taken` is this delivery's send (kept when `verified_per_hour` counts).
    Verify { taken: Option<u64> },
}

impl Update {
    /// Gives back the send this delivery took; None when there is nothing to give back.
    pub fn give_back(
        etcd: &Etcd,
        limiter: &Limiter,
        admitted: &Admitted,
    ) -> Option<(Update, Call)> {
        let taken = admitted.ticket.taken?;
        if admitted.ticket.given_back.get() {
            return None;
        }
        admitted.ticket.given_back.set(true);
        Self::start(etcd, limiter, admitted, Change::GiveBack(taken))
    }

    /// Records the verification of the admitted webhook.
    pub fn verify(etcd: &Etcd, limiter: &Limiter, admitted: &Admitted) -> Option<(Update, Call)> {
        let taken = admitted
            .ticket
            .taken
            .filter(|_| !admitted.ticket.given_back.get());
        Self::start(etcd, limiter, admitted, Change::Verify { taken })
    }

    fn start(
        etcd: &Etcd,
        limiter: &Limiter,
        admitted: &Admitted,
        change: Change,
    ) -> Option<(Update, Call)> {
        let ident = admitted.ticket.ident();
        let key = etcd.key(limiter, &ident.name, &ident.url);
        let call = if admitted.revision == 0 {
            // Nothing written by this delivery: start from what is stored.
            range(&key)
        } else {
            let mut record = admitted.record.clone();
            apply(
                limiter,
                &key,
                &ident,
                change,
                &mut record,
                admitted.revision,
                admitted.lease,
            )?
        };
        let op = Update {
            key,
            ident,
            change,
            attempts: 0,
            retries: 0,
            last: call.clone(),
        };
        Some((op, call))
    }

    /// Ok(()) when the change is stored (or there was nothing to change).
    pub fn on_reply(&mut self, limiter: &Limiter, reply: Reply) -> Next<Result<(), Failure>> {
        let body = match body_or_retry(reply, &mut self.retries, &self.last) {
            Ok(body) => body,
            Err(next) => return next,
        };
        let kv = match parse_txn(body) {
            Ok(Txn::Succeeded { .. }) => return Next::Done(Ok(())),
            Ok(Txn::Failed { kv }) => kv,
            // The first answer of an update that started with a read.
            Err(_) => match parse_range(body) {
                Ok(kv) => kv,
                Err(why) => return done_err(Failure::LimitUnavailable(format!("etcd: {why}"))),
            },
        };
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return done_err(Failure::LimitUnavailable(format!(
                "etcd: key still contended after {MAX_ATTEMPTS} attempts"
            )));
        }
        let (mut record, revision, lease) = match &kv {
            Some(kv) => match decode_record(kv, &self.ident) {
                Ok(record) => (record, kv.mod_revision, kv.lease),
                Err(why) => return done_err(Failure::LimitUnavailable(format!("etcd: {why}"))),
            },
            None => (Record::default(), 0, 0),
        };
        if kv.is_none() {
            match self.change {
                // Gone (expired): nothing of this delivery's is left.
                Change::GiveBack(_) => return Next::Done(Ok(())),
                Change::Verify { taken } => {
                    if limiter.verified_per_hour().is_some() {
                        record.sends.extend(taken);
                    }
                }
            }
        }
        match apply(
            limiter,
            &self.key,
            &self.ident,
            self.change,
            &mut record,
            revision,
            lease,
        ) {
            Some(call) => {
                self.last = call.clone();
                Next::Call(call)
            }
            None => Next::Done(Ok(())),
        }
    }
}

/// The transaction that applies `change` to `record` (stored at `revision`), or None when the
/// record does not need it.
fn apply(
    limiter: &Limiter,
    key: &str,
    ident: &Ident,
    change: Change,
    record: &mut Record,
    revision: i64,
    lease: i64,
) -> Option<Call> {
    match change {
        Change::GiveBack(taken) => {
            if !give_back_send(record, taken) {
                return None;
            }
            if !record.verified && record.sends.is_empty() {
                return Some(txn_delete(key, revision));
            }
            Some(txn_put(key, revision, &encode_record(record, ident), lease))
        }
        Change::Verify { .. } => {
            if !limiter.verify_record(record) {
                return None;
            }
            // Verified records carry no lease: they stay.
            Some(txn_put(key, revision, &encode_record(record, ident), 0))
        }
    }
}

fn done_err(failure: Failure) -> Next<Result<(), Failure>> {
    Next::Done(Err(failure))
}
