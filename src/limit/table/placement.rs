//! Where a webhook lives, and the protocol that decides it by compare-and-swap on its home
//! bucket (see the module docs of `table`).

use super::buckets::contended;
use super::*;

impl Limiter {
    /// The webhook's record as the table holds it now (None: not tracked), read only.
    pub(super) fn locate(
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
    pub(super) fn update(
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
    pub(super) fn overflow(
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
    pub(super) fn commit(
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
    pub(super) fn undo(
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
    pub(super) fn update_at(
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
    pub(super) fn apply(
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
    pub(super) fn run(&self, op: Op, record: &mut Record, now: u64) -> (Outcome, bool) {
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
}

/// Whether a redirect still applies at `now`.
pub(super) fn holds(redirect: &Redirect, now: u64) -> bool {
    redirect.permanent || redirect.until > now
}

/// Makes a redirect strong enough for `op` at `now`: permanent for a verification; holding an
/// hour past `now` for a send. True when it changed.
pub(super) fn strengthen(redirect: &mut Redirect, op: Op, now: u64) -> bool {
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

pub(super) fn record_of(entry: &Entry) -> Record {
    Record {
        verified: entry.verified,
        sends: entry.sends.clone(),
    }
}
