//! One lease for many keys. Every write of an unverified record needs a lease that outlives the
//! record's hour; granting one per write cost a call and a raft write (an fsync) per send, a third
//! of a first send's calls (BENCHMARKS.md, "Fleet"). Each Envoy therefore keeps the lease it was
//! last granted in shared data and attaches it to every write for [`REUSE_SECS`] after asking for
//! it; the lease's TTL is longer by as much, so a key written with it still outlives its hour by
//! the full margin for clock skew. A lease etcd no longer knows (a restored or replaced cluster, a
//! revoked lease) fails the write; the acquire then reads again and asks for a new one.

use super::super::WINDOW_SECS;

/// How long after asking for a lease this Envoy keeps attaching it to writes.
pub const REUSE_SECS: u64 = 60;
/// Margin for clock skew between Envoy and etcd: a key outlives its hour by at least this much.
pub const SKEW_MARGIN_SECS: u64 = 300;
/// TTL asked for every lease.
pub const TTL_SECS: u64 = WINDOW_SECS + SKEW_MARGIN_SECS + REUSE_SECS;

/// A lease this Envoy was granted, and its clock just before it asked (so the lease ends no
/// sooner than `asked_at + TTL_SECS` by that clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub asked_at: u64,
}

impl Lease {
    /// The shared-data key of the lease kept for one etcd cluster and prefix.
    pub fn cache_key(cluster: &str, prefix: &str) -> String {
        format!("hookgate.etcd.lease/{cluster}/{prefix}")
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.id, self.asked_at).into_bytes()
    }

    /// None for anything but what `encode` wrote.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (id, asked_at) = text.split_once(' ')?;
        Some(Lease {
            id: id.parse().ok().filter(|id| *id != 0)?,
            asked_at: asked_at.parse().ok()?,
        })
    }

    /// Whether a write made `now` may carry it. A lease asked for "in the future" is a clock that
    /// went back: not reused.
    pub fn reusable_at(&self, now: u64) -> bool {
        self.asked_at <= now && now - self.asked_at < REUSE_SECS
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

    #[test]
    fn a_kept_lease_round_trips_and_odd_bytes_are_none() {
        let lease = Lease {
            id: 7_587_899_196_169_733_894,
            asked_at: 1_700_000_000,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease));
        for odd in [
            &b""[..],
            b"7",
            b"7 ",
            b" 1",
            b"0 1700000000",
            b"x 1",
            b"7 -1",
            b"7 1 2",
            b"\xff 1",
        ] {
            assert_eq!(Lease::decode(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn reused_for_a_minute_after_asking_and_never_after_the_clock_went_back() {
        let lease = Lease {
            id: 1,
            asked_at: 1000,
        };
        assert!(lease.reusable_at(1000));
        assert!(lease.reusable_at(1000 + REUSE_SECS - 1));
        assert!(!lease.reusable_at(1000 + REUSE_SECS));
        assert!(!lease.reusable_at(999));
        // A key written at the last reusable second still outlives its hour by the full margin.
        let last_write = 1000 + REUSE_SECS - 1;
        assert!(lease.asked_at + TTL_SECS > last_write + WINDOW_SECS + SKEW_MARGIN_SECS);
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
