//! Workers racing on one table: compare-and-swap under contention, and the interleavings the
//! placement protocol must survive (tests that step one worker inside another's operation).

use super::*;

#[test]
fn concurrent_acquires_of_a_fresh_webhook_allow_exactly_the_limit() {
    for per_hour in [1u32, 3] {
        for prepare_first in [true, false] {
            let limiter = limiter(LimitConfig {
                unverified_per_hour: per_hour,
                ..LimitConfig::default()
            });
            let store = MemStore::default();
            if prepare_first {
                limiter.prepare(&store).unwrap();
            }
            let clock = FakeClock::at(T);
            let allowed = AtomicUsize::new(0);
            let refused = AtomicUsize::new(0);
            let barrier = Barrier::new(8);
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        barrier.wait();
                        for _ in 0..200 {
                            match limiter.acquire(&store, &clock, &HOOK) {
                                Ok(_) => allowed.fetch_add(1, Ordering::SeqCst),
                                Err(Failure::OverLimit(3600)) => {
                                    refused.fetch_add(1, Ordering::SeqCst)
                                }
                                Err(other) => panic!("unexpected {other:?}"),
                            };
                        }
                    });
                }
            });
            assert_eq!(allowed.load(Ordering::SeqCst), per_hour as usize);
            assert_eq!(refused.load(Ordering::SeqCst), 1600 - per_hour as usize);
        }
    }
}

#[test]
fn concurrent_acquires_and_give_backs_in_one_bucket_lose_nothing() {
    let limiter = limiter(LimitConfig {
        unverified_per_hour: 2,
        max_tracked: 8,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let names: Vec<String> = (0..8).map(|i| format!("hook-{i}")).collect();
    std::thread::scope(|scope| {
        for name in &names {
            let (limiter, store, clock) = (&limiter, &store, &clock);
            scope.spawn(move || {
                let hook = id(name, "https://x.example/");
                for _ in 0..100 {
                    let a = limiter.acquire(store, clock, &hook).unwrap();
                    let b = limiter.acquire(store, clock, &hook).unwrap();
                    assert!(over(limiter.acquire(store, clock, &hook)) > 0);
                    limiter.give_back(store, &a).unwrap();
                    limiter.give_back(store, &b).unwrap();
                }
                limiter.acquire(store, clock, &hook).unwrap();
            });
        }
    });
    for name in &names {
        let state = limiter
            .state(&store, &clock, &id(name, "https://x.example/"))
            .unwrap();
        assert_eq!(state.sends_in_window, 1, "{name}");
    }
}

#[test]
fn prepare_running_with_acquires_never_loses_a_send() {
    for _ in 0..20 {
        let limiter = limiter(LimitConfig {
            max_tracked: 400,
            ..LimitConfig::default()
        });
        let store = MemStore::default();
        let clock = FakeClock::at(T);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    limiter.prepare(&store).unwrap();
                }
            });
            let workers: Vec<_> = (0..4)
                .map(|worker| {
                    let (limiter, store, clock) = (&limiter, &store, &clock);
                    scope.spawn(move || {
                        for i in 0..12 {
                            let name = format!("w{worker}-{i}");
                            let hook = id(&name, "https://x.example/");
                            limiter.acquire(store, clock, &hook).unwrap();
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        });
        for worker in 0..4 {
            for i in 0..12 {
                let name = format!("w{worker}-{i}");
                let hook = id(&name, "https://x.example/");
                let state = limiter.state(&store, &clock, &hook).unwrap();
                assert_eq!(state.sends_in_window, 1, "{name}");
                assert!(over(limiter.acquire(&store, &clock, &hook)) > 0, "{name}");
            }
        }
    }
}

/// Runs `during` once, right after prepare has obtained its CAS value and before it creates the
/// buckets: the worst interleaving for create-if-absent.
type During<'a> = Box<dyn FnOnce(&MemStore) + 'a>;

struct Interleave<'a> {
    inner: &'a MemStore,
    during: Mutex<Option<During<'a>>>,
}

impl SharedStore for Interleave<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        let result = self.inner.get(key);
        if key.ends_with("/cas-probe") {
            if let Some(during) = self.during.lock().unwrap().take() {
                during(self.inner);
            }
        }
        result
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn prepare_never_overwrites_a_bucket_created_after_it_took_its_cas() {
    let limiter = limiter(LimitConfig::default());
    let store = MemStore::default();
    let clock = FakeClock::at(T);
    let interleave = Interleave {
        inner: &store,
        during: Mutex::new(Some(Box::new(|inner: &MemStore| {
            assert!(limiter.acquire(inner, &clock, &HOOK).is_ok());
        }))),
    };
    limiter.prepare(&interleave).unwrap();
    assert!(
        interleave.during.lock().unwrap().is_none(),
        "the acquire ran"
    );
    assert_eq!(
        limiter
            .state(&store, &clock, &HOOK)
            .unwrap()
            .sends_in_window,
        1
    );
    assert!(over(limiter.acquire(&store, &clock, &HOOK)) > 0);
}

/// Runs `during` once, right after the first successful write to `key`.
struct AfterWrite<'a> {
    inner: &'a MemStore,
    key: String,
    during: Mutex<Option<During<'a>>>,
}

impl SharedStore for AfterWrite<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        let stored = self.inner.set(key, value, cas)?;
        if stored && key == self.key {
            if let Some(during) = self.during.lock().unwrap().take() {
                during(self.inner);
            }
        }
        Ok(stored)
    }
}

#[test]
fn placed_at_home_while_being_placed_elsewhere_is_taken_back_before_any_answer() {
    // The scenario that forced the home-only rule: a webhook's home is full, one worker places
    // it in another bucket; before that worker records the redirect, a place at home comes
    // free and a second worker places the same webhook at home. The first must not answer
    // "sent": it finds the webhook at home, takes its send back and is refused.
    let limiter = limiter(LimitConfig {
        max_tracked: 80,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let url = "https://x.example/";
    let names = homed(&limiter, "r", url, 2, 9);
    let mut tickets = Vec::new();
    for name in names.iter().take(8) {
        tickets.push(limiter.acquire(&store, &clock, &id(name, url)).unwrap());
    }
    let hook = id(&names[8], url);
    let ident = Ident::new(&hook);
    let first_target = (2 + limiter.probe_offset(ident.hash(), 1)) % limiter.buckets;
    let freed = tickets.pop().unwrap();
    let racer = AfterWrite {
        inner: &store,
        key: limiter.bucket_key(first_target),
        during: Mutex::new(Some(Box::new(|inner: &MemStore| {
            limiter.give_back(inner, &freed).unwrap();
            assert!(
                limiter.acquire(inner, &clock, &hook).is_ok(),
                "placed at home"
            );
        }))),
    };
    assert!(over(limiter.acquire(&racer, &clock, &hook)) > 0);
    assert!(racer.during.lock().unwrap().is_none(), "the race ran");
    assert_eq!(sends_anywhere(&limiter, &store, &hook, T), 1);
    let home = codec::decode(&store.raw(&limiter.bucket_key(2)).unwrap()).unwrap();
    assert!(home.redirects.is_empty());
    assert!(home.entries.iter().any(|e| ident.is(e)));
    assert_eq!(
        limiter
            .state(&store, &clock, &hook)
            .unwrap()
            .sends_in_window,
        1
    );
}

/// A store that yields the thread around every call, so that threads interleave.
struct Yielding<'a>(&'a MemStore);

impl SharedStore for Yielding<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        std::thread::yield_now();
        let result = self.0.get(key);
        std::thread::yield_now();
        result
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        std::thread::yield_now();
        self.0.set(key, value, cas)
    }
}

#[test]
fn a_webhook_whose_home_frees_up_during_its_placement_is_admitted_once() {
    // Eight workers send one fresh webhook whose home is full, while other workers give back
    // the sends of the home's webhooks (freeing places) or the clock expires them. Exactly one
    // send is admitted, and the table holds exactly one counted send of it, in one place.
    let url = "https://x.example/";
    let mut placed_elsewhere = 0;
    let mut placed_home = 0;
    for trial in 0..120u64 {
        let limiter = limiter(LimitConfig {
            max_tracked: 40,
            ..LimitConfig::default()
        });
        let store = prepared(&limiter);
        let clock = FakeClock::at(T);
        let names = homed(&limiter, &format!("t{trial}-"), url, 1, 9);
        let expire = trial % 2 == 0;
        let mut tickets = Vec::new();
        for (i, name) in names.iter().take(8).enumerate() {
            // Half of the home's webhooks sent an hour ago, to expire as the clock moves on.
            if expire && i % 2 == 0 {
                clock.set(T - 3600 + 1);
            }
            tickets.push(limiter.acquire(&store, &clock, &id(name, url)).unwrap());
            clock.set(T);
        }
        let hook = id(&names[8], url);
        let shared = Yielding(&store);
        let allowed = AtomicUsize::new(0);
        let barrier = Barrier::new(10);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..6 {
                        match limiter.acquire(&shared, &clock, &hook) {
                            Ok(_) => {
                                allowed.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(Failure::OverLimit(_)) => {}
                            Err(Failure::LimitUnavailable(detail))
                                if detail.starts_with("webhook table full") => {}
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                });
            }
            let (limiter, shared, barrier) = (&limiter, &shared, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for ticket in tickets.iter().skip(1) {
                    limiter.give_back(shared, ticket).unwrap();
                }
            });
            scope.spawn(|| {
                barrier.wait();
                if expire {
                    std::thread::yield_now();
                    clock.set(T + 1);
                }
            });
        });
        let now = clock.now();
        assert_eq!(allowed.load(Ordering::SeqCst), 1, "trial {trial}");
        assert_eq!(
            sends_anywhere(&limiter, &store, &hook, now),
            1,
            "trial {trial}"
        );
        assert_eq!(
            limiter
                .state(&store, &clock, &hook)
                .unwrap()
                .sends_in_window,
            1
        );
        let home = codec::decode(&store.raw(&limiter.bucket_key(1)).unwrap()).unwrap();
        if home.entries.iter().any(|e| Ident::new(&hook).is(e)) {
            placed_home += 1;
        } else {
            placed_elsewhere += 1;
        }
    }
    // Both outcomes of the race happened.
    assert!(
        placed_home > 0 && placed_elsewhere > 0,
        "{placed_home} / {placed_elsewhere}"
    );
}

#[test]
fn one_scan_per_period_for_all_workers() {
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    assert!(limiter.claim_scan(&store, T, 10));
    assert!(!limiter.claim_scan(&store, T, 10));
    assert!(!limiter.claim_scan(&store, T + 9, 10));
    assert!(limiter.claim_scan(&store, T + 10, 10));
    // A clock that went far back scans rather than waiting.
    assert!(limiter.claim_scan(&store, T - 100, 10));
    // Concurrent claims: exactly one wins.
    let wins = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                if limiter.claim_scan(&Yielding(&store), T + 1000, 10) {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1);
    store.down.store(true, Ordering::SeqCst);
    assert!(!limiter.claim_scan(&store, T + 5000, 10));
}
