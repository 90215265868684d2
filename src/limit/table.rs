//! The local backend: the limit table in proxy-wasm shared data, shared by every worker of one
//! `vm_id` (layout and reasoning in the module docs of [`super`] and in docs/limit.md).
//!
//! Every decision about where a webhook lives is taken by a compare-and-swap on its **home
//! bucket**, which every worker reads first:
//!
//! 1. its entry is in the home bucket: it lives there;
//! 2. else a redirect for its fingerprint is in the home bucket: it lives in the bucket the
//!    redirect names (created there if absent, by a CAS on that bucket), never in the home;
//! 3. else it is new: placed in the home bucket when there is room; when not, in the first of
//!    the next [`MAX_PROBE_BUCKETS`](super::MAX_PROBE_BUCKETS) buckets with room (a CAS there),
//!    and then the redirect is recorded in the home bucket (a CAS there). If the home bucket
//!    changed so that the webhook now lives elsewhere (its entry was placed in the home meanwhile,
//!    or another redirect for its fingerprint was recorded), what was done in the other bucket is
//!    taken back before anything was answered, and the decision starts again from the home
//!    bucket. A record in another bucket is reachable only through a redirect in its home, so
//!    nothing reads it before the redirect exists.
//!
//! A redirect holds until `until`: every send recorded through it is at least an hour older
//! than `until` (a send through an old redirect first moves `until` to two hours after the
//! send), so when it lapses nothing behind it still counts and the webhook may be placed anew.
//! A verified webhook makes its redirect permanent (verification never lapses).

mod buckets;
mod placement;

use std::cell::Cell;

use super::codec::{self, Bucket, Entry, Redirect};
use super::{
    counts_at, give_back_send, unavailable, Admission, Ident, KeyVerdict, Lift, Lifted, LimitState,
    Limiter, Record, SharedStore, Ticket, WebhookId, BUCKET_ENTRIES, MAX_CAS_ATTEMPTS,
    MAX_PROBE_BUCKETS, MAX_REDIRECTS, WINDOW_SECS,
};
use crate::clock::Clock;
use crate::error::Failure;

/// A redirect written for a send at `t` holds until `t` + this; rewritten when a send finds
/// less than an hour left, so at most once an hour per active redirect.
const REDIRECT_HOLD_SECS: u64 = 2 * WINDOW_SECS;

/// What to do to one webhook's record.
#[derive(Clone, Copy, Debug)]
enum Op {
    Admit {
        pre: bool,
    },
    GiveBack {
        taken: u64,
    },
    /// `resend`: the send to record when the record has to be created afresh.
    Verify {
        resend: Option<u64>,
    },
    /// Takes back a verification this process made in a bucket it then could not record.
    Unverify,
    /// Forgets the sends in the window (a support operator's reset); never creates a record.
    ResetWindow,
}

/// What an [`Op`] did.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Admitted {
        admission: Admission,
        verified: bool,
    },
    Verified {
        flipped: bool,
    },
    Reset {
        changed: bool,
    },
    Other,
}

/// An [`Op`] applied to one bucket.
enum Applied {
    /// Done; `true` when the bucket changed and must be written.
    Done(Outcome, bool),
    /// The op needs a new entry and the bucket has no room.
    NoRoom,
}

/// A bucket as read, with its CAS value (None: absent, only when not asked to create it).
struct Read {
    bucket: Bucket,
    cas: Option<u32>,
}

impl Limiter {
    /// Creates the table if absent and checks that an existing one has this layout. Call from
    /// `on_configure` (safe to run concurrently with itself and with `acquire`: it never
    /// overwrites an existing key; `acquire` also creates a missing bucket the same way).
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<(), String> {
        let fail = |e: String| format!("limit: shared data unavailable: {e}");
        let cas = self.unmatchable_cas(store).map_err(fail)?;
        let meta_key = format!("hookgate/{}/meta", self.namespace);
        let layout = self.layout();
        store
            .set(&meta_key, layout.as_bytes(), Some(cas))
            .map_err(fail)?;
        let (existing, _) = store.get(&meta_key).map_err(fail)?;
        let existing = existing.unwrap_or_default();
        if existing != layout.as_bytes() {
            let shown: String = String::from_utf8_lossy(&existing)
                .chars()
                .take(120)
                .collect();
            return Err(format!(
                "limit.max_tracked: namespace {:?} already holds a table with layout {shown:?} in \
                 this vm_id, not {layout:?} (another max_tracked, or a table written by another \
                 hookgate version); keep the old max_tracked, choose another limit.namespace, or \
                 restart Envoy",
                self.namespace
            ));
        }
        let empty = codec::empty_bucket();
        for bucket in 0..self.buckets {
            store
                .set(&self.bucket_key(bucket), &empty, Some(cas))
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Takes a send for this webhook now, or refuses: `OverLimit(retry_after)` when its hourly
    /// allowance is used, `LimitUnavailable` when the table is full or the store fails.
    pub fn acquire(
        &self,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        id: &WebhookId,
    ) -> Result<Ticket, Failure> {
        let ident = Ident::new(id);
        let pre = self.is_pre_verified(&ident);
        if pre && self.verified_per_hour.is_none() {
            // Listed and unlimited: nothing is counted now nor recorded later (a verified
            // ticket's answers are not judged, nothing is given back), so no clock is read.
            return Ok(Ticket {
                name: ident.name,
                url: ident.url,
                at: 0,
                taken: None,
                verified: true,
                given_back: Cell::new(false),
            });
        }
        let now = clock.now();
        let ticket = |taken: Option<u64>, verified: bool| Ticket {
            name: ident.name.clone(),
            url: ident.url.clone(),
            at: now,
            taken,
            verified,
            given_back: Cell::new(false),
        };
        match self.update(store, &ident, now, Op::Admit { pre })? {
            Outcome::Admitted {
                admission: Admission::Counted(at),
                verified,
            } => Ok(ticket(Some(at), verified)),
            Outcome::Admitted {
                admission: Admission::Free,
                ..
            } => Ok(ticket(None, true)),
            Outcome::Admitted {
                admission: Admission::Refused(retry),
                ..
            } => Err(Failure::OverLimit(retry)),
            other => Err(Failure::LimitUnavailable(format!(
                "limit: unexpected outcome {other:?}"
            ))),
        }
    }

    /// Gives back the send this ticket took, when the request never reached the receiver.
    /// Only this delivery's send; a second call with the same ticket does nothing.
    pub fn give_back(&self, store: &dyn SharedStore, ticket: &Ticket) -> Result<(), Failure> {
        let Some(taken) = ticket.taken else {
            return Ok(());
        };
        if ticket.given_back.get() {
            return Ok(());
        }
        self.update(store, &ticket.ident(), ticket.at, Op::GiveBack { taken })?;
        ticket.given_back.set(true);
        Ok(())
    }

    /// Judges the receiver's answer for the verification key and records a verification.
    pub fn observe_answer(
        &self,
        store: &dyn SharedStore,
        ticket: &Ticket,
        answer_body: &[u8],
    ) -> Result<KeyVerdict, Failure> {
        match self.judge_key(ticket, answer_body) {
            KeyVerdict::Verified => self
                .record_verified(store, ticket)
                .map(|()| KeyVerdict::Verified),
            other => Ok(other),
        }
    }

    /// Records in shared data that the ticket's webhook is verified (with the etcd backend:
    /// the cache of verified webhooks, which never revert).
    pub fn record_verified(&self, store: &dyn SharedStore, ticket: &Ticket) -> Result<(), Failure> {
        // Should the entry be gone (an answer after more than an hour), it is recorded afresh,
        // with this delivery's send when verified webhooks are limited.
        let resend = match (self.verified_per_hour, ticket.taken) {
            (Some(_), Some(taken)) if !ticket.given_back.get() => Some(taken),
            _ => None,
        };
        self.update(store, &ticket.ident(), ticket.at, Op::Verify { resend })
            .map(|_| ())
    }

    /// With the etcd backend: whether shared data already knows the webhook as verified and
    /// unlimited, so that its send needs no call to etcd. Then the ticket to send with.
    pub fn cached_free_ticket(
        &self,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        id: &WebhookId,
    ) -> Option<Ticket> {
        if self.verified_per_hour.is_some() {
            return None;
        }
        let state = self.state(store, clock, id).ok()?;
        state.verified.then(|| {
            let ident = Ident::new(id);
            Ticket {
                name: ident.name,
                url: ident.url,
                at: clock.now(),
                taken: None,
                verified: true,
                given_back: Cell::new(false),
            }
        })
    }

    /// The webhook's state now, read only.
    pub fn state(
        &self,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        id: &WebhookId,
    ) -> Result<LimitState, Failure> {
        let now = clock.now();
        let ident = Ident::new(id);
        let pre = self.is_pre_verified(&ident);
        if pre && self.verified_per_hour.is_none() {
            return Ok(self.record_state(&Record::default(), true, now));
        }
        let record = self.locate(store, &ident, now)?.unwrap_or_default();
        Ok(self.record_state(&record, pre, now))
    }

    /// A support operator's look at one webhook (`lift` None), or its lift: the state before
    /// and after. Verifying a webhook the table does not hold records it (as a right key
    /// would); resetting one it does not hold changes nothing.
    pub fn support(
        &self,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        id: &WebhookId,
        lift: Option<Lift>,
    ) -> Result<Lifted, Failure> {
        let before = self.state(store, clock, id)?;
        let already = match lift {
            Some(Lift::Verify) => before.verified,
            Some(Lift::ResetWindow) => before.sends_in_window == 0,
            None => true,
        };
        let (Some(lift), false) = (lift, already) else {
            return Ok(Lifted {
                after: before.clone(),
                before,
                changed: false,
            });
        };
        let op = match lift {
            Lift::Verify => Op::Verify { resend: None },
            Lift::ResetWindow => Op::ResetWindow,
        };
        let changed = match self.update(store, &Ident::new(id), clock.now(), op)? {
            Outcome::Verified { flipped } => flipped,
            Outcome::Reset { changed } => changed,
            other => {
                return Err(Failure::LimitUnavailable(format!(
                    "limit: unexpected outcome {other:?}"
                )))
            }
        };
        Ok(Lifted {
            before,
            after: self.state(store, clock, id)?,
            changed,
        })
    }

    /// Webhooks the table holds now: verified ones (for ever), and unverified ones with a send
    /// still counted in the window. Webhooks listed in `verified` without `verified_per_hour`
    /// take no place and are not counted; a bucket this version cannot read counts nothing.
    /// Reads every bucket: one host call per 8 places.
    pub fn tracked(&self, store: &dyn SharedStore, clock: &dyn Clock) -> Result<u64, Failure> {
        let now = clock.now();
        let mut count = 0u64;
        for index in 0..self.buckets {
            let (value, _) = store.get(&self.bucket_key(index)).map_err(unavailable)?;
            let Ok(bucket) = codec::decode(value.as_deref().unwrap_or_default()) else {
                continue;
            };
            let live = bucket
                .entries
                .iter()
                .filter(|e| e.verified || e.sends.iter().any(|&s| counts_at(s, now)))
                .count();
            count += live as u64;
        }
        Ok(count)
    }

    /// Whether this caller should scan the table for the gauge now: at most once per
    /// `period_secs` for all workers of the `vm_id` (a CAS on `hookgate/<namespace>/scan`, which
    /// holds the time of the last scan). False on any store failure.
    pub fn claim_scan(&self, store: &dyn SharedStore, now: u64, period_secs: u64) -> bool {
        let key = format!("hookgate/{}/scan", self.namespace);
        for _ in 0..2 {
            let Ok((value, cas)) = store.get(&key) else {
                return false;
            };
            let Some(cas) = cas else {
                if self.create_if_absent(store, &key, b"0").is_err() {
                    return false;
                }
                continue;
            };
            let last: u64 = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // A last scan far "in the future" is a clock that went back: scan.
            if now < last.saturating_add(period_secs) && last <= now.saturating_add(period_secs) {
                return false;
            }
            return store
                .set(&key, now.to_string().as_bytes(), Some(cas))
                .unwrap_or(false);
        }
        false
    }
}
