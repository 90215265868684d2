#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::clock::Clock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

/// Shared data with the host's semantics: one CAS counter for all keys (starting at 1, never
/// 0); a CAS that differs from an existing key's fails; on a missing key any CAS succeeds; CAS
/// 0 means "no CAS"; no delete, no TTL; an empty value reads as (None, Some(cas)) like the SDK.
#[derive(Default)]
struct MemStore {
    inner: Mutex<MemInner>,
    down: AtomicBool,
    writes: AtomicUsize,
}

#[derive(Default)]
struct MemInner {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("host says no".into());
        }
        let inner = self.inner.lock().unwrap();
        Ok(match inner.map.get(key) {
            None => (None, None),
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("host says no".into());
        }
        let mut inner = self.inner.lock().unwrap();
        if let (Some(wanted), Some((_, current))) = (cas, inner.map.get(key)) {
            if wanted != 0 && wanted != *current {
                return Ok(false);
            }
        }
        inner.last_cas = inner.last_cas.wrapping_add(1);
        if inner.last_cas == 0 {
            inner.last_cas = 1;
        }
        let next = inner.last_cas;
        inner.map.insert(key.to_string(), (value.to_vec(), next));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

impl MemStore {
    fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.inner
            .lock()
            .unwrap()
            .map
            .get(key)
            .map(|(v, _)| v.clone())
    }
    fn put_raw(&self, key: &str, value: &[u8]) {
        assert!(self.set(key, value, None).unwrap());
    }
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    fn keys(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

struct FakeClock(AtomicU64);

impl FakeClock {
    fn at(t: u64) -> Self {
        FakeClock(AtomicU64::new(t))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T: u64 = 1_700_000_000;

fn id<'a>(name: &'a str, url: &'a str) -> WebhookId<'a> {
    WebhookId {
        name,
        url,
        normalised: false,
    }
}

const HOOK: WebhookId<'static> = WebhookId {
    name: "orders",
    url: "https://example.com/hook",
    normalised: false,
};

fn limiter(config: LimitConfig) -> Limiter {
    Limiter::new(&config).unwrap()
}

fn keyed(extra: impl FnOnce(&mut LimitConfig)) -> Limiter {
    let mut config = LimitConfig::default();
    config.keys.insert("orders".into(), "s3cret".into());
    extra(&mut config);
    limiter(config)
}

fn prepared(limiter: &Limiter) -> MemStore {
    let store = MemStore::default();
    limiter.prepare(&store).unwrap();
    store
}

fn over(result: Result<Ticket, Failure>) -> u64 {
    match result {
        Err(Failure::OverLimit(retry)) => retry,
        other => panic!("expected OverLimit, got {other:?}"),
    }
}

fn unavailable_detail(result: Result<Ticket, Failure>) -> String {
    match result {
        Err(Failure::LimitUnavailable(detail)) => detail,
        other => panic!("expected LimitUnavailable, got {other:?}"),
    }
}

/// Webhook names whose (name, url) has the given home bucket.
fn names_in_bucket(limiter: &Limiter, url: &str, bucket: u32, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("hook-{i}"))
        .filter(|name| limiter.home_bucket(&Ident::new(&id(name, url))) == bucket)
        .take(count)
        .collect()
}

/// Names whose home is `bucket`, from a prefix.
fn homed(limiter: &Limiter, prefix: &str, url: &str, bucket: u32, count: usize) -> Vec<String> {
    (0..1_000_000)
        .map(|i| format!("{prefix}{i}"))
        .filter(|name| limiter.home_bucket(&Ident::new(&id(name, url))) == bucket)
        .take(count)
        .collect()
}

/// Every send of the webhook recorded anywhere in the table (reachable or not).
fn sends_anywhere(limiter: &Limiter, store: &MemStore, hook: &WebhookId, now: u64) -> usize {
    let ident = Ident::new(hook);
    (0..limiter.buckets)
        .filter_map(|b| store.raw(&limiter.bucket_key(b)))
        .map(|raw| codec::decode(&raw).unwrap())
        .flat_map(|bucket| bucket.entries)
        .filter(|e| ident.is(e))
        .map(|e| e.sends.iter().filter(|&&s| counts_at(s, now)).count())
        .sum()
}

mod concurrency;
mod lifts;
// The measurements live with the benchmarks; they need the table's internals.
#[path = "../../../bench/limit_table.rs"]
mod measurements;
mod placement;
mod slot;
mod verification;
mod window;
