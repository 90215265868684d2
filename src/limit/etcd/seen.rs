//! Which webhooks' keys this worker saw in etcd lately: it picks the first call of an acquire.
//!
//! A first send costs one transaction when it starts with the write itself (create the key if it
//! is absent, else read it back: [`super::wire::txn_put`] at revision 0), against a read and then
//! the write. But etcd runs every transaction that may write through raft, fsync included, even
//! when its compare fails: for a key that exists (a refusal, a later send) that transaction cost
//! about 1 ms more than a read (BENCHMARKS.md, "Fleet"). So a worker starts with the read for the
//! keys it saw existing within the hour, and with the transaction for the others. A wrong guess
//! costs time, never a wrong decision: both paths end in the same compare-and-swap.

use super::super::WINDOW_SECS;
use std::cell::Cell;
use std::collections::HashMap;

/// Keys remembered per worker (a hash and a time each, about 32 bytes); when full, the ones seen
/// more than an hour ago go, and if none did, all (then every guess is "new" until relearnt).
pub const MAX_SEEN: usize = 4096;

/// What an acquire learnt about its key: the webhook's hash, whether the key exists, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub hash: u64,
    pub exists: bool,
    pub at: u64,
}

/// The keys one worker saw existing, by webhook hash, with when.
#[derive(Default)]
pub struct Seen(Cell<HashMap<u64, u64>>);

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seen")
    }
}

impl Seen {
    /// Whether the key was seen existing within the hour before `now`.
    pub fn knows(&self, hash: u64, now: u64) -> bool {
        let map = self.0.take();
        let known = map
            .get(&hash)
            .is_some_and(|&at| at <= now && now - at < WINDOW_SECS);
        self.0.set(map);
        known
    }

    pub fn note(&self, sighting: Sighting) {
        let mut map = self.0.take();
        if !sighting.exists {
            map.remove(&sighting.hash);
        } else {
            if map.len() >= MAX_SEEN && !map.contains_key(&sighting.hash) {
                map.retain(|_, at| sighting.at.saturating_sub(*at) < WINDOW_SECS);
                if map.len() >= MAX_SEEN {
                    map.clear();
                }
            }
            map.insert(sighting.hash, sighting.at);
        }
        self.0.set(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(hash: u64, exists: bool, at: u64) -> Sighting {
        Sighting { hash, exists, at }
    }

    #[test]
    fn a_key_is_known_for_the_hour_after_it_was_seen_until_seen_absent() {
        let known = Seen::default();
        assert!(!known.knows(1, 1000));
        known.note(seen(1, true, 1000));
        assert!(known.knows(1, 1000));
        assert!(known.knows(1, 1000 + WINDOW_SECS - 1));
        assert!(!known.knows(1, 1000 + WINDOW_SECS));
        assert!(
            !known.knows(1, 999),
            "seen in the future: a clock that went back"
        );
        assert!(!known.knows(2, 1000));
        known.note(seen(1, false, 1001));
        assert!(!known.knows(1, 1001));
    }

    #[test]
    fn full_it_drops_the_stale_keys_first_then_all() {
        let known = Seen::default();
        for hash in 0..MAX_SEEN as u64 - 1 {
            known.note(seen(hash, true, 0));
        }
        known.note(seen(u64::MAX, true, WINDOW_SECS - 1));
        // Full: a new key drops those seen an hour ago, keeps the recent one.
        known.note(seen(u64::MAX - 1, true, WINDOW_SECS));
        assert!(!known.knows(0, WINDOW_SECS));
        assert!(known.knows(u64::MAX, WINDOW_SECS));
        assert!(known.knows(u64::MAX - 1, WINDOW_SECS));
        // Full of recent keys: all go, the new one stays; a key already known only moves.
        for hash in 0..MAX_SEEN as u64 - 2 {
            known.note(seen(hash, true, WINDOW_SECS));
        }
        known.note(seen(u64::MAX, true, WINDOW_SECS + 1));
        assert!(known.knows(0, WINDOW_SECS + 1));
        known.note(seen(u64::MAX - 2, true, WINDOW_SECS + 1));
        assert!(!known.knows(0, WINDOW_SECS + 1));
        assert!(known.knows(u64::MAX - 2, WINDOW_SECS + 1));
    }
}
