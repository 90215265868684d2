//! The decisions on one webhook's [`Record`], pure: the same for every backend.

use serde::Serialize;

use super::{Limiter, WINDOW_SECS};

/// The limit state of one webhook, for the test report.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LimitState {
    pub verified: bool,
    pub sends_in_window: u32,
    /// None = unlimited.
    pub allowed_per_hour: Option<u32>,
    /// Seconds until the next send is allowed, when one would be refused now.
    pub retry_after: Option<u64>,
}

/// One webhook's state, whatever stores it (a bucket entry in shared data, a value in etcd):
/// what the decisions below read and change. The core decides; the backends only store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub verified: bool,
    /// Unix seconds of the sends still counted, ascending.
    pub sends: Vec<u64>,
}

/// What a support operator lifts from one webhook (the support listener, `crate::support`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lift {
    /// Marks it verified, as the receiver's right key would.
    Verify,
    /// Forgets the sends counted in the window: its next send is allowed at once.
    ResetWindow,
}

/// What a support operation saw and left: the state before and after (the same when it only
/// looked, or there was nothing to change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifted {
    pub before: LimitState,
    pub after: LimitState,
    pub changed: bool,
}

/// What the core decided for one send of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Allowed, and counted at this time: the changed record must be stored.
    Counted(u64),
    /// Allowed without counting (verified and unlimited): nothing to store.
    Free,
    /// Over the limit: the seconds until the next send fits (Retry-After).
    Refused(u64),
}

impl Limiter {
    /// Brings a record to `now`: sends out of the window dropped, sends of a verified unlimited
    /// webhook cleared. A record left unverified with no send carries nothing any more.
    pub fn compact_record(&self, record: &mut Record, now: u64) {
        if record.verified && self.verified_per_hour.is_none() {
            record.sends.clear();
        } else {
            prune(&mut record.sends, now);
        }
    }

    /// Decides one send now for a webhook with this record (`Record::default()` when none is
    /// stored; `pre`: listed in `verified`), and changes the record accordingly: compacted,
    /// verified when pre-verified, and with the send added when counted.
    pub fn admit(&self, record: &mut Record, pre: bool, now: u64) -> Admission {
        self.compact_record(record, now);
        record.verified |= pre;
        let Some(limit) = self.allowed(record.verified) else {
            return Admission::Free;
        };
        if let Some(retry) = retry_after(&record.sends, limit, now) {
            return Admission::Refused(retry);
        }
        let at = record.sends.partition_point(|&s| s <= now);
        record.sends.insert(at, now);
        Admission::Counted(now)
    }

    /// Marks a record verified (for ever); false when it already was.
    pub fn verify_record(&self, record: &mut Record) -> bool {
        if record.verified {
            return false;
        }
        record.verified = true;
        if self.verified_per_hour.is_none() {
            record.sends.clear();
        }
        true
    }

    /// Applies a support operator's lift to a record brought to `now`; false when it changed
    /// nothing (already verified, or no send in the window).
    pub fn lift_record(&self, record: &mut Record, lift: Lift, now: u64) -> bool {
        self.compact_record(record, now);
        match lift {
            Lift::Verify => self.verify_record(record),
            Lift::ResetWindow => !std::mem::take(&mut record.sends).is_empty(),
        }
    }

    /// The limit state a record gives now, for the test report.
    pub fn record_state(&self, record: &Record, pre: bool, now: u64) -> LimitState {
        let verified = record.verified || pre;
        let mut sends = record.sends.clone();
        prune(&mut sends, now);
        let allowed = self.allowed(verified);
        LimitState {
            verified,
            sends_in_window: u32::try_from(sends.len()).unwrap_or(u32::MAX),
            allowed_per_hour: allowed,
            retry_after: allowed.and_then(|limit| retry_after(&sends, limit, now)),
        }
    }

    fn allowed(&self, verified: bool) -> Option<u32> {
        if verified {
            self.verified_per_hour
        } else {
            Some(self.unverified_per_hour)
        }
    }
}

/// Keeps the sends within the window ending at `now`, sorted. After the clock went back, a
/// send up to an hour "in the future" still counts (until an hour after its own time); one
/// further ahead is taken for a clock error and dropped, so that no jump of the clock can
/// block a webhook for longer than two hours.
fn prune(sends: &mut Vec<u64>, now: u64) {
    sends.sort_unstable();
    sends.retain(|&s| counts_at(s, now));
}

/// Whether a send at `send` still counts at `now` (see `prune`).
pub(super) fn counts_at(send: u64, now: u64) -> bool {
    send.saturating_add(WINDOW_SECS) > now && send <= now.saturating_add(WINDOW_SECS)
}

/// Removes one send at `taken` (this delivery's) from the record; false when it is not there
/// (already given back, or out of the window and compacted away).
pub fn give_back_send(record: &mut Record, taken: u64) -> bool {
    match record.sends.iter().position(|&s| s == taken) {
        Some(index) => {
            record.sends.remove(index);
            true
        }
        None => false,
    }
}

/// Seconds until one more send fits, when `sends` (pruned, ascending) already hold `limit`.
fn retry_after(sends: &[u64], limit: u32, now: u64) -> Option<u64> {
    let excess = sends.len().checked_sub(limit as usize)?;
    let oldest_to_expire = sends.get(excess)?;
    Some(
        oldest_to_expire
            .saturating_add(WINDOW_SECS)
            .saturating_sub(now)
            .max(1),
    )
}
