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

    // ---- Where a webhook lives ----

    /// The webhook's record as the table holds it now (None: not tracked), read only.
    fn locate(
        &self,
        store: &dyn SharedStore,
        ident: &Ident,
        now: u64,
    ) -> Result<Option<Record>, Failure> {
        let home = self.home_bucket(ident);
        let read = self.read(store, home, false)?;
        if let Some(entry) = read.bucket.entries.iter().find(|e| ident.is(e)) {
            return Ok(Some(record_of(entry)));
        }
        let fingerprint = ident.fingerprint();
        let Some(redirect) = read
            .bucket
            .redirects
            .iter()
            .find(|r| r.fingerprint == fingerprint && holds(r, now))
        else {
            return Ok(None);
        };
        let target = self.read(store, self.target(home, redirect.offset), false)?;
        Ok(target
            .bucket
            .entries
            .iter()
            .find(|e| ident.is(e))
            .map(record_of))
    }

    /// Runs `op` on the webhook's record wherever it lives, placing it when the op creates it
    /// (see the module docs for the protocol).
    fn update(
        &self,
        store: &dyn SharedStore,
        ident: &Ident,
        now: u64,
        op: Op,
    ) -> Result<Outcome, Failure> {
        let home = self.home_bucket(ident);
        let fingerprint = ident.fingerprint();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Read { mut bucket, cas } = self.read(store, home, true)?;
            self.compact(&mut bucket, now);
            let at_home = bucket.entries.iter().any(|e| ident.is(e));
            if !at_home {
                if let Some(redirect) = bucket
                    .redirects
                    .iter_mut()
                    .find(|r| r.fingerprint == fingerprint)
                {
                    let offset = redirect.offset;
                    if strengthen(redirect, op, now) && !self.write(store, home, &bucket, cas)? {
                        continue;
                    }
                    return match self.update_at(store, self.target(home, offset), ident, now, op)? {
                        Applied::Done(outcome, _) => Ok(outcome),
                        Applied::NoRoom => Err(self.table_full()),
                    };
                }
            }
            match self.apply(op, &mut bucket, self.capacity(home), ident, now) {
                Applied::Done(outcome, false) => return Ok(outcome),
                Applied::Done(outcome, true) => {
                    if self.write(store, home, &bucket, cas)? {
                        return Ok(outcome);
                    }
                }
                Applied::NoRoom => {
                    if bucket.redirects.len() >= MAX_REDIRECTS as usize {
                        return Err(self.table_full());
                    }
                    if let Some(outcome) = self.overflow(store, home, ident, now, op)? {
                        return Ok(outcome);
                    }
                }
            }
        }
        Err(contended(home))
    }

    /// The home bucket is full and has no redirect for the webhook: places it in the first of
    /// the next buckets with room, then records the redirect in the home bucket. `Ok(None)`
    /// when the home bucket changed so that the webhook must be decided there again (what was
    /// done in the other bucket has been taken back).
    fn overflow(
        &self,
        store: &dyn SharedStore,
        home: u32,
        ident: &Ident,
        now: u64,
        op: Op,
    ) -> Result<Option<Outcome>, Failure> {
        let hash = ident.hash();
        for probe in 1..=self.probes() {
            let offset = self.probe_offset(hash, probe);
            let target = self.target(home, offset);
            // A bucket this version cannot read, or that stays contended, is passed over.
            let outcome = match self.update_at(store, target, ident, now, op) {
                Ok(Applied::Done(outcome, _)) => outcome,
                Ok(Applied::NoRoom) | Err(_) => continue,
            };
            return self.commit(store, home, offset, ident, now, op, outcome);
        }
        Err(self.table_full())
    }

    /// Records in the home bucket that the webhook lives `offset` buckets further on, where
    /// `op` just had `outcome`; takes that back when the home bucket says otherwise by now.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        store: &dyn SharedStore,
        home: u32,
        offset: u32,
        ident: &Ident,
        now: u64,
        op: Op,
        outcome: Outcome,
    ) -> Result<Option<Outcome>, Failure> {
        let fingerprint = ident.fingerprint();
        let permanent = matches!(op, Op::Verify { .. })
            || matches!(outcome, Outcome::Admitted { verified: true, .. });
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Read { mut bucket, cas } = self.read(store, home, true)?;
            self.compact(&mut bucket, now);
            let at_home = bucket.entries.iter().any(|e| ident.is(e));
            let room = bucket.redirects.len() < MAX_REDIRECTS as usize;
            let existing = bucket
                .redirects
                .iter_mut()
                .find(|r| r.fingerprint == fingerprint);
            let changed = match existing {
                _ if at_home => None,
                Some(redirect) if redirect.offset == offset => {
                    let mut changed = false;
                    if permanent && !redirect.permanent {
                        redirect.permanent = true;
                        changed = true;
                    }
                    changed |= strengthen(redirect, op, now);
                    Some(changed)
                }
                Some(_) => None,
                None if room => {
                    bucket.redirects.push(Redirect {
                        fingerprint,
                        offset,
                        until: now.saturating_add(REDIRECT_HOLD_SECS),
                        permanent,
                    });
                    Some(true)
                }
                None => {
                    self.undo(store, home, offset, ident, now, op, outcome)?;
                    return Err(self.table_full());
                }
            };
            match changed {
                Some(false) => return Ok(Some(outcome)),
                Some(true) => {
                    if self.write(store, home, &bucket, cas)? {
                        return Ok(Some(outcome));
                    }
                }
                None => {
                    self.undo(store, home, offset, ident, now, op, outcome)?;
                    return Ok(None);
                }
            }
        }
        self.undo(store, home, offset, ident, now, op, outcome)?;
        Err(contended(home))
    }

    /// Takes back what `op` did (`outcome`) in a bucket the home bucket does not point to:
    /// nothing has read it there, and nothing was answered yet.
    #[allow(clippy::too_many_arguments)]
    fn undo(
        &self,
        store: &dyn SharedStore,
        home: u32,
        offset: u32,
        ident: &Ident,
        now: u64,
        op: Op,
        outcome: Outcome,
    ) -> Result<(), Failure> {
        let reverse = match (op, outcome) {
            (
                _,
                Outcome::Admitted {
                    admission: Admission::Counted(at),
                    ..
                },
            ) => Op::GiveBack { taken: at },
            (Op::Verify { .. }, Outcome::Verified { flipped: true }) => Op::Unverify,
            _ => return Ok(()),
        };
        self.update_at(store, self.target(home, offset), ident, now, reverse)
            .map(|_| ())
    }

    /// Runs `op` on one bucket (read, compact, apply, CAS write), creating the webhook's entry
    /// there when the op needs one and there is room.
    fn update_at(
        &self,
        store: &dyn SharedStore,
        index: u32,
        ident: &Ident,
        now: u64,
        op: Op,
    ) -> Result<Applied, Failure> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Read { mut bucket, cas } = self.read(store, index, true)?;
            self.compact(&mut bucket, now);
            match self.apply(op, &mut bucket, self.capacity(index), ident, now) {
                Applied::Done(outcome, true) => {
                    if self.write(store, index, &bucket, cas)? {
                        return Ok(Applied::Done(outcome, true));
                    }
                }
                other => return Ok(other),
            }
        }
        Err(contended(index))
    }

    /// Applies `op` to the webhook's entry in this (compacted) bucket, or to a fresh record
    /// placed in it when the op creates one.
    fn apply(
        &self,
        op: Op,
        bucket: &mut Bucket,
        capacity: u32,
        ident: &Ident,
        now: u64,
    ) -> Applied {
        if let Some(entry) = bucket.entries.iter_mut().find(|e| ident.is(e)) {
            let mut record = entry.take_record();
            let (outcome, changed) = self.run(op, &mut record, now);
            entry.put_record(record);
            return Applied::Done(outcome, changed);
        }
        let mut record = Record::default();
        let (outcome, create) = self.run(op, &mut record, now);
        let create = create && !matches!(op, Op::GiveBack { .. } | Op::Unverify | Op::ResetWindow);
        if !create {
            return Applied::Done(outcome, false);
        }
        if bucket.entries.len() >= capacity as usize {
            return Applied::NoRoom;
        }
        bucket.entries.push(Entry {
            name: ident.name.clone(),
            url: ident.url.clone(),
            verified: record.verified,
            sends: record.sends,
        });
        Applied::Done(outcome, true)
    }

    /// The decision itself, on one record (a fresh one when the webhook has none): what it
    /// did, and whether the record changed.
    fn run(&self, op: Op, record: &mut Record, now: u64) -> (Outcome, bool) {
        match op {
            Op::Admit { pre } => {
                let admission = self.admit(record, pre, now);
                let outcome = Outcome::Admitted {
                    admission,
                    verified: record.verified,
                };
                (outcome, matches!(admission, Admission::Counted(_)))
            }
            Op::GiveBack { taken } => (Outcome::Other, give_back_send(record, taken)),
            Op::Verify { resend } => {
                let fresh = !record.verified && record.sends.is_empty();
                let flipped = self.verify_record(record);
                if fresh && self.verified_per_hour.is_some() {
                    record.sends.extend(resend);
                }
                (Outcome::Verified { flipped }, flipped)
            }
            Op::Unverify => {
                let changed = std::mem::replace(&mut record.verified, false);
                (Outcome::Other, changed)
            }
            Op::ResetWindow => {
                let changed = self.lift_record(record, Lift::ResetWindow, now);
                (Outcome::Reset { changed }, changed)
            }
        }
    }

    // ---- Buckets ----

    /// Reads and decodes a bucket; creates it first (create-if-absent) when missing and
    /// `create` is set. A value that does not decode, or names a redirect beyond the probe
    /// range, is an error: never overwritten.
    fn read(&self, store: &dyn SharedStore, index: u32, create: bool) -> Result<Read, Failure> {
        let key = self.bucket_key(index);
        for _ in 0..2 {
            let (value, cas) = store.get(&key).map_err(unavailable)?;
            let cas = match (value.is_some(), cas) {
                (false, None) if create => {
                    self.create_if_absent(store, &key, &codec::empty_bucket())
                        .map_err(unavailable)?;
                    continue;
                }
                (false, None) => None,
                (true, None) => {
                    return Err(Failure::LimitUnavailable(format!(
                        "limit bucket {index} has no CAS value"
                    )))
                }
                (_, Some(cas)) => Some(cas),
            };
            let bucket = codec::decode(value.as_deref().unwrap_or_default())
                .and_then(|bucket| {
                    match bucket.redirects.iter().find(|r| r.offset >= self.buckets) {
                        Some(r) => Err(format!(
                            "redirect offset {} beyond the table of {} buckets",
                            r.offset, self.buckets
                        )),
                        None => Ok(bucket),
                    }
                })
                .map_err(|e| {
                    Failure::LimitUnavailable(format!(
                        "limit bucket {index} holds state this version cannot read ({e}); use \
                         another limit.namespace"
                    ))
                })?;
            return Ok(Read { bucket, cas });
        }
        Err(Failure::LimitUnavailable(format!(
            "limit bucket {index} is missing"
        )))
    }

    /// CAS write; false on mismatch.
    fn write(
        &self,
        store: &dyn SharedStore,
        index: u32,
        bucket: &Bucket,
        cas: Option<u32>,
    ) -> Result<bool, Failure> {
        let Some(cas) = cas else {
            return Err(Failure::LimitUnavailable(format!(
                "limit bucket {index} is missing"
            )));
        };
        store
            .set(&self.bucket_key(index), &codec::encode(bucket), Some(cas))
            .map_err(unavailable)
    }

    /// Drops sends out of the window, unverified entries with no send left, and redirects that
    /// no longer hold; clears the sends of verified entries when they are unlimited.
    fn compact(&self, bucket: &mut Bucket, now: u64) {
        for entry in bucket.entries.iter_mut() {
            let mut record = entry.take_record();
            self.compact_record(&mut record, now);
            entry.put_record(record);
        }
        bucket.entries.retain(|e| e.verified || !e.sends.is_empty());
        bucket.redirects.retain(|r| holds(r, now));
    }

    /// A CAS value that belongs to the probe key and so matches no bucket.
    fn unmatchable_cas(&self, store: &dyn SharedStore) -> Result<u32, String> {
        let key = format!("hookgate/{}/cas-probe", self.namespace);
        store.set(&key, b"p", None)?;
        match store.get(&key)? {
            (_, Some(cas)) => Ok(cas),
            (_, None) => Err(format!("{key} has no CAS value")),
        }
    }

    fn create_if_absent(
        &self,
        store: &dyn SharedStore,
        key: &str,
        value: &[u8],
    ) -> Result<(), String> {
        let cas = self.unmatchable_cas(store)?;
        store.set(key, value, Some(cas))?;
        Ok(())
    }

    fn layout(&self) -> String {
        format!(
            "hookgate-limit v{} bucket_entries={BUCKET_ENTRIES} probes={MAX_PROBE_BUCKETS}:splitmix \
             redirects={MAX_REDIRECTS} max_tracked={}",
            codec::VERSION,
            self.max_tracked
        )
    }

    pub(super) fn bucket_key(&self, bucket: u32) -> String {
        format!("hookgate/{}/bucket/{bucket}", self.namespace)
    }

    pub(super) fn capacity(&self, bucket: u32) -> u32 {
        if bucket + 1 == self.buckets {
            self.max_tracked - BUCKET_ENTRIES * bucket
        } else {
            BUCKET_ENTRIES
        }
    }

    /// Buckets tried for a webhook whose home is full (never its home).
    fn probes(&self) -> u32 {
        MAX_PROBE_BUCKETS.min(self.buckets - 1)
    }

    /// The offset from its home of the `probe`th (1-based) bucket tried for a webhook whose
    /// home is full: every other bucket in turn when there are few, else pseudo-random in
    /// `1..buckets` from the webhook's hash (double hashing: webhooks of one home spread over
    /// the table instead of piling up behind it, as the next-bucket rule did). Any bucket may
    /// be chosen: the redirect records the choice.
    pub(super) fn probe_offset(&self, hash: u64, probe: u32) -> u32 {
        let others = u64::from(self.buckets - 1);
        if others <= u64::from(MAX_PROBE_BUCKETS) {
            return probe;
        }
        let mixed = splitmix64(hash ^ u64::from(probe).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        u32::try_from(1 + mixed % others).unwrap_or(1)
    }

    fn target(&self, home: u32, offset: u32) -> u32 {
        // Both below 2^20: no overflow.
        (home + offset) % self.buckets
    }

    fn table_full(&self) -> Failure {
        Failure::LimitUnavailable(format!(
            "webhook table full: no free place for a new webhook (limit.max_tracked = {}); \
             places of unverified webhooks come free an hour after their last send",
            self.max_tracked
        ))
    }
}

/// Whether a redirect still applies at `now`.
fn holds(redirect: &Redirect, now: u64) -> bool {
    redirect.permanent || redirect.until > now
}

/// Makes a redirect strong enough for `op` at `now`: permanent for a verification; holding an
/// hour past `now` for a send. True when it changed.
fn strengthen(redirect: &mut Redirect, op: Op, now: u64) -> bool {
    match op {
        Op::Verify { .. } if !redirect.permanent => {
            redirect.permanent = true;
            true
        }
        Op::Admit { .. }
            if !redirect.permanent && redirect.until < now.saturating_add(WINDOW_SECS) =>
        {
            redirect.until = now.saturating_add(REDIRECT_HOLD_SECS);
            true
        }
        _ => false,
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed function of its input (stable across builds).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn record_of(entry: &Entry) -> Record {
    Record {
        verified: entry.verified,
        sends: entry.sends.clone(),
    }
}

fn contended(bucket: u32) -> Failure {
    Failure::LimitUnavailable(format!(
        "limit bucket {bucket} still contended after {MAX_CAS_ATTEMPTS} attempts"
    ))
}
