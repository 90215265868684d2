//! The buckets in shared data: read (created if absent), written by compare-and-swap, compacted,
//! and the layout and probe arithmetic that names them.

use super::placement::holds;
use super::*;

impl Limiter {
    /// Reads and decodes a bucket; creates it first (create-if-absent) when missing and
    /// `create` is set. A value that does not decode, or names a redirect beyond the probe
    /// range, is an error: never overwritten.
    pub(super) fn read(
        &self,
        store: &dyn SharedStore,
        index: u32,
        create: bool,
    ) -> Result<Read, Failure> {
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
    pub(super) fn write(
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
    pub(super) fn compact(&self, bucket: &mut Bucket, now: u64) {
        for entry in bucket.entries.iter_mut() {
            let mut record = entry.take_record();
            self.compact_record(&mut record, now);
            entry.put_record(record);
        }
        bucket.entries.retain(|e| e.verified || !e.sends.is_empty());
        bucket.redirects.retain(|r| holds(r, now));
    }

    /// A CAS value that belongs to the probe key and so matches no bucket.
    pub(super) fn unmatchable_cas(&self, store: &dyn SharedStore) -> Result<u32, String> {
        let key = format!("hookgate/{}/cas-probe", self.namespace);
        store.set(&key, b"p", None)?;
        match store.get(&key)? {
            (_, Some(cas)) => Ok(cas),
            (_, None) => Err(format!("{key} has no CAS value")),
        }
    }

    pub(super) fn create_if_absent(
        &self,
        store: &dyn SharedStore,
        key: &str,
        value: &[u8],
    ) -> Result<(), String> {
        let cas = self.unmatchable_cas(store)?;
        store.set(key, value, Some(cas))?;
        Ok(())
    }

    pub(super) fn layout(&self) -> String {
        format!(
            "hookgate-limit v{} bucket_entries={BUCKET_ENTRIES} probes={MAX_PROBE_BUCKETS}:splitmix \
             redirects={MAX_REDIRECTS} max_tracked={}",
            codec::VERSION,
            self.max_tracked
        )
    }

    pub(in crate::limit) fn bucket_key(&self, bucket: u32) -> String {
        format!("hookgate/{}/bucket/{bucket}", self.namespace)
    }

    pub(in crate::limit) fn capacity(&self, bucket: u32) -> u32 {
        if bucket + 1 == self.buckets {
            self.max_tracked - BUCKET_ENTRIES * bucket
        } else {
            BUCKET_ENTRIES
        }
    }

    /// Buckets tried for a webhook whose home is full (never its home).
    pub(super) fn probes(&self) -> u32 {
        MAX_PROBE_BUCKETS.min(self.buckets - 1)
    }

    /// The offset from its home of the `probe`th (1-based) bucket tried for a webhook whose
    /// home is full: every other bucket in turn when there are few, else pseudo-random in
    /// `1..buckets` from the webhook's hash (double hashing: webhooks of one home spread over
    /// the table instead of piling up behind it, as the next-bucket rule did). Any bucket may
    /// be chosen: the redirect records the choice.
    pub(in crate::limit) fn probe_offset(&self, hash: u64, probe: u32) -> u32 {
        let others = u64::from(self.buckets - 1);
        if others <= u64::from(MAX_PROBE_BUCKETS) {
            return probe;
        }
        let mixed = splitmix64(hash ^ u64::from(probe).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        u32::try_from(1 + mixed % others).unwrap_or(1)
    }

    pub(super) fn target(&self, home: u32, offset: u32) -> u32 {
        // Both below 2^20: no overflow.
        (home + offset) % self.buckets
    }

    pub(super) fn table_full(&self) -> Failure {
        Failure::LimitUnavailable(format!(
            "webhook table full: no free place for a new webhook (limit.max_tracked = {}); \
             places of unverified webhooks come free an hour after their last send",
            self.max_tracked
        ))
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed function of its input (stable across builds).
pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(super) fn contended(bucket: u32) -> Failure {
    Failure::LimitUnavailable(format!(
        "limit bucket {bucket} still contended after {MAX_CAS_ATTEMPTS} attempts"
    ))
}
