//! One lease for many keys. Every write of an unverified record needs a lease that outlives the
//! record's hour; granting one per write cost a call and a raft write (an fsync) per send, a third
//! of a first send's calls (BENCHMARKS.md, "Fleet"). Each worker therefore keeps the lease it was
//! last granted and attaches it to its writes for [`REUSE_SECS`] after asking for it, and to at
//! most [`MAX_WRITES`] of them (kube-apiserver's lease manager uses the same two bounds, 60 s and
//! 1000 objects: expiring a lease deletes all its keys in one raft entry). The TTL is longer by the
//! minute of reuse, so a key written with a kept lease still outlives its hour by the full margin
//! for clock skew. A lease etcd no longer knows (a restored or replaced cluster, a revoked lease)
//! fails the write; the acquire then reads again and asks for a new one.
//!
//! A worker that writes asks for its next lease on the tick, [`RENEW_AHEAD_SECS`] before the kept
//! one stops carrying writes (or when it is nearly full), so that a send rarely waits for a grant:
//! one asked for on a send's way cost that send a read and a grant more than its one transaction.
//! It keeps doing so while it wrote with one of its last [`KEEP_WARM_LEASES`] leases (about ten
//! minutes); an idle worker, and the main thread, which never writes, ask for nothing.

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
/// How long before the kept lease stops carrying writes the tick asks for the next one.
pub const RENEW_AHEAD_SECS: u64 = 15;
/// Writes before [`MAX_WRITES`] at which the tick asks for the next lease.
pub const RENEW_AHEAD_WRITES: u32 = MAX_WRITES / 10;
/// Leases in a row asked for ahead and carrying no write, after which the worker stops asking.
pub const KEEP_WARM_LEASES: u32 = 10;
/// After asking ahead, the next try waits this long (no answer yet, or a failure).
pub const ASK_AGAIN_SECS: u64 = 10;

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

/// The lease one worker attaches to its writes and how many writes carried it; how many leases
/// asked for ahead in a row carried none; when the tick last asked ahead (None: answered).
#[derive(Debug, Default)]
pub struct KeptLease {
    kept: Cell<Option<(Lease, u32)>>,
    idle: Cell<u32>,
    asked: Cell<Option<u64>>,
}

impl KeptLease {
    /// The kept lease while it may carry another write (its age is judged at the write).
    pub fn get(&self) -> Option<Lease> {
        self.kept
            .get()
            .filter(|(_, writes)| *writes < MAX_WRITES)
            .map(|(lease, _)| lease)
    }

    pub fn note(&self, used: LeaseUse) {
        match used {
            LeaseUse::Nothing => {}
            LeaseUse::Kept => {
                if let Some((lease, writes)) = self.kept.get() {
                    self.kept.set(Some((lease, writes.saturating_add(1))));
                }
            }
            LeaseUse::Granted(lease) => {
                self.kept.set(Some((lease, 1)));
                self.idle.set(0);
            }
        }
    }

    /// On the tick: whether to ask for the next lease now; if so, notes that it asked at `now`.
    pub fn ask_ahead(&self, now: u64) -> bool {
        let Some((lease, writes)) = self.kept.get() else {
            return false;
        };
        let waiting = self
            .asked
            .get()
            .is_some_and(|asked| asked <= now && now - asked < ASK_AGAIN_SECS);
        let idle = writes == 0 && self.idle.get() >= KEEP_WARM_LEASES;
        let due = !lease.reusable_at(now.saturating_add(RENEW_AHEAD_SECS))
            || writes >= MAX_WRITES - RENEW_AHEAD_WRITES;
        let ask = due && !waiting && !idle;
        if ask {
            self.asked.set(Some(now));
        }
        ask
    }

    /// The lease asked for ahead was granted: it replaces the kept one.
    pub fn granted_ahead(&self, id: i64) {
        let Some(asked_at) = self.asked.take() else {
            return;
        };
        let carried = self.kept.get().map_or(0, |(_, writes)| writes);
        self.idle.set(if carried == 0 {
            self.idle.get().saturating_add(1)
        } else {
            0
        });
        self.kept.set(Some((Lease { id, asked_at }, 0)));
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
    fn a_writing_worker_asks_ahead_once_before_its_lease_goes_stale_or_full() {
        let kept = KeptLease::default();
        assert!(
            !kept.ask_ahead(1000),
            "nothing kept: the main thread, or no write yet"
        );
        kept.note(LeaseUse::Granted(LEASE));
        let due = 1000 + REUSE_SECS - RENEW_AHEAD_SECS;
        assert!(!kept.ask_ahead(due - 1));
        assert!(kept.ask_ahead(due));
        assert!(!kept.ask_ahead(due + 1), "asked: waits for the answer");
        kept.granted_ahead(8);
        assert_eq!(
            kept.get(),
            Some(Lease {
                id: 8,
                asked_at: due
            })
        );
        assert!(!kept.ask_ahead(due + 1));
        // Unanswered (or failed): asked again after ASK_AGAIN_SECS.
        let next = due + REUSE_SECS - RENEW_AHEAD_SECS;
        assert!(kept.ask_ahead(next));
        assert!(!kept.ask_ahead(next + ASK_AGAIN_SECS - 1));
        assert!(kept.ask_ahead(next + ASK_AGAIN_SECS));
        // Nearly full: asked ahead at once.
        kept.note(LeaseUse::Granted(Lease {
            id: 9,
            asked_at: next,
        }));
        for _ in 1..MAX_WRITES - RENEW_AHEAD_WRITES {
            kept.note(LeaseUse::Kept);
        }
        assert!(kept.ask_ahead(next + 1));
    }

    #[test]
    fn an_idle_worker_stops_asking_after_keep_warm_leases() {
        let kept = KeptLease::default();
        kept.note(LeaseUse::Granted(LEASE));
        let mut now = 1000;
        for round in 0..=KEEP_WARM_LEASES {
            now += REUSE_SECS;
            assert!(kept.ask_ahead(now), "round {round}");
            kept.granted_ahead(100 + i64::from(round));
        }
        now += REUSE_SECS;
        assert!(!kept.ask_ahead(now), "idle for {KEEP_WARM_LEASES} leases");
        // A send's own grant (a write) makes it warm again.
        kept.note(LeaseUse::Granted(Lease {
            id: 200,
            asked_at: now,
        }));
        assert!(kept.ask_ahead(now + REUSE_SECS));
        // The answer replaces the kept lease; a second answer to the same ask changes nothing.
        kept.granted_ahead(300);
        kept.granted_ahead(301);
        assert_eq!(kept.get().map(|l| l.id), Some(300));
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
