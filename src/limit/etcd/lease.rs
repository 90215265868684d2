//! One lease for many keys. Every write of an unverified record needs a lease that outlives the
//! record's hour; granting one per write cost a call and a raft write (an fsync) per send, a third
//! of a first send's calls (BENCHMARKS.md, "Fleet"). Each worker therefore keeps the lease it was
//! last granted and attaches it to its writes for [`REUSE_SECS`] after asking for it, and to at
//! most [`MAX_WRITES`] of them (kube-apiserver's lease manager uses the same two bounds, 60 s and
//! 1000 objects: expiring a lease deletes all its keys in one raft entry). The TTL is longer by the
//! minute of reuse, so a key written with a kept lease still outlives its hour by the full margin
//! for clock skew. A lease etcd no longer knows (a restored or replaced cluster, a revoked lease)
//! fails the write; the acquire then reads again and asks for a new one.

use super::super::WINDOW_SECS;
use std::cell::Cell;

/// How long after asking for a lease a worker keeps attaching it to writes.
pub const REUSE_SECS: u64 = 60;
/// How many writes one lease carries at most.
pub const MAX_WRITES: u32 = 1000;
/// Margin for clock skew between Envoy and etcd: a key outlives its hour by at least this much.
pub const SKEW_MARGIN_SECS: u64 = 300;
/// TTL asked for every lease.
pub const TTL_SECS: u64 = WINDOW_SECS + SKEW_MARGIN_SECS + REUSE_SECS;

/// A lease etcd granted, and the worker's clock just before it asked (so the lease ends no
/// sooner than `asked_at + TTL_SECS` by that clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub asked_at: u64,
}

impl Lease {
    /// Whether a write made `now` may carry it. A lease asked for "in the future" is a clock that
    /// went back: not reused.
    pub fn reusable_at(&self, now: u64) -> bool {
        self.asked_at <= now && now - self.asked_at < REUSE_SECS
    }
}

/// What an acquire did with leases, for the worker's [`KeptLease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseUse {
    /// No write carried a lease (a refusal, a verified webhook, a failure).
    Nothing,
    /// The write carried the kept lease.
    Kept,
    /// A new lease was granted (and carried the write, if there was one).
    Granted(Lease),
}

/// The lease one worker attaches to its writes, and how many writes carried it.
#[derive(Debug, Default)]
pub struct KeptLease(Cell<Option<(Lease, u32)>>);

impl KeptLease {
    /// The kept lease while it may carry another write (its age is judged at the write).
    pub fn get(&self) -> Option<Lease> {
        self.0
            .get()
            .filter(|(_, writes)| *writes < MAX_WRITES)
            .map(|(lease, _)| lease)
    }

    pub fn note(&self, used: LeaseUse) {
        match used {
            LeaseUse::Nothing => {}
            LeaseUse::Kept => {
                if let Some((lease, writes)) = self.0.get() {
                    self.0.set(Some((lease, writes.saturating_add(1))));
                }
            }
            LeaseUse::Granted(lease) => self.0.set(Some((lease, 1))),
        }
    }
}

/// Whether etcd refused a write for its lease.
pub fn not_found(status: Option<u16>, body: &[u8]) -> bool {
    const MESSAGE: &[u8] = b"requested lease not found";
    status != Some(200) && body.windows(MESSAGE.len()).any(|w| w == MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Lease = Lease {
        id: 7,
        asked_at: 1000,
    };

    #[test]
    fn reused_for_a_minute_after_asking_and_never_after_the_clock_went_back() {
        assert!(LEASE.reusable_at(1000));
        assert!(LEASE.reusable_at(1000 + REUSE_SECS - 1));
        assert!(!LEASE.reusable_at(1000 + REUSE_SECS));
        assert!(!LEASE.reusable_at(999));
        // A key written at the last reusable second still outlives its hour by the full margin.
        let last_write = 1000 + REUSE_SECS - 1;
        assert!(LEASE.asked_at + TTL_SECS > last_write + WINDOW_SECS + SKEW_MARGIN_SECS);
    }

    #[test]
    fn a_kept_lease_carries_at_most_max_writes_and_a_grant_replaces_it() {
        let kept = KeptLease::default();
        kept.note(LeaseUse::Kept); // nothing kept yet: nothing to count
        assert_eq!(kept.get(), None);
        kept.note(LeaseUse::Granted(LEASE));
        for _ in 1..MAX_WRITES {
            assert_eq!(kept.get(), Some(LEASE));
            kept.note(LeaseUse::Kept);
        }
        assert_eq!(kept.get(), None, "full after {MAX_WRITES} writes");
        kept.note(LeaseUse::Nothing);
        assert_eq!(kept.get(), None);
        let next = Lease { id: 8, ..LEASE };
        kept.note(LeaseUse::Granted(next));
        assert_eq!(kept.get(), Some(next));
    }

    #[test]
    fn only_etcds_lease_error_counts_as_not_found() {
        let etcd = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert!(not_found(Some(404), etcd));
        assert!(!not_found(Some(200), etcd));
        assert!(!not_found(Some(404), b"{}"));
        assert!(!not_found(Some(503), b"no healthy upstream"));
    }
}
