//! Measurements of the limit table, natively (no Envoy): where the first "table full" refusal
//! comes for 1 000 / 10 000 / 100 000 places, and what one update costs at home and behind a
//! redirect. Compiled with the table's unit tests (they need its internals) as ignored tests;
//! bench/limit-table.sh is the only thing that runs them. Results: BENCHMARKS.md.

use super::placement::fill;
use super::*;

#[test]
#[ignore = "a measurement, not a test: bench/limit-table.sh runs it"]
fn fill_measurement() {
    for max_tracked in [1000u32, 10_000, 100_000] {
        for salt in ["", "a", "b"] {
            for share in [90u32, 95, 100] {
                let attempts = max_tracked / 100 * share;
                let (first, refused, longest, most, largest) = fill(max_tracked, attempts, salt);
                println!(
                    "max_tracked {max_tracked} salt {salt:?}: {attempts} new webhooks: first \
                     refusal at {first}, {refused} refused, longest redirect {longest}, most \
                     redirects in a bucket {most}, largest bucket {largest} bytes"
                );
            }
        }
    }
}

#[test]
#[ignore = "a measurement, not a test: bench/limit-table.sh runs it"]
fn cost_measurement() {
    use std::time::Instant;
    let url = "https://receiver.example/hooks/orders";
    // The alternative: home-only buckets of `size` entries. Where would the first webhook be
    // refused, in a table of 10000 places (uniform hash, as the home bucket)?
    for size in [8u32, 16, 32, 64, 128] {
        let buckets = 10_000u64.div_ceil(u64::from(size));
        let mut fill = vec![0u32; buckets as usize];
        let mut first = None;
        for i in 0..10_000u32 {
            let ident = Ident::new(&id(&format!("hook-{i}"), url));
            let b = (ident.hash() % buckets) as usize;
            if fill[b] == size {
                first = Some(i);
                break;
            }
            fill[b] += 1;
        }
        // What one update copies and parses: a full bucket, out of and back into the host.
        let bucket = codec::Bucket {
            entries: (0..size)
                .map(|i| Entry {
                    name: format!("hook-{i}"),
                    url: url.into(),
                    verified: false,
                    sends: vec![T],
                })
                .collect(),
            redirects: vec![],
        };
        let bytes = codec::encode(&bucket);
        let rounds = 20_000;
        let start = Instant::now();
        for _ in 0..rounds {
            let decoded = codec::decode(std::hint::black_box(&bytes)).unwrap();
            std::hint::black_box(codec::encode(&decoded));
        }
        let per = start.elapsed().as_nanos() / rounds;
        println!(
            "home-only, {size} per bucket: first refusal at {:?} of 10000; a full bucket is {} \
             bytes, decode+encode {per} ns",
            first,
            bytes.len()
        );
    }
    // This design at 90% fill: an acquire at home, and one behind a redirect.
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let mut home = Vec::new();
    let mut away = Vec::new();
    for i in 0..9_000 {
        let name = format!("hook-{i}");
        limiter.acquire(&store, &clock, &id(&name, url)).unwrap();
        let ident = Ident::new(&id(&name, url));
        let bucket = codec::decode(
            &store
                .raw(&limiter.bucket_key(limiter.home_bucket(&ident)))
                .unwrap(),
        )
        .unwrap();
        if bucket.entries.iter().any(|e| ident.is(e)) {
            home.push(name);
        } else {
            away.push(name);
        }
    }
    println!(
        "at 90%: {} at home, {} behind a redirect",
        home.len(),
        away.len()
    );
    for (label, names) in [("at home", &home), ("behind a redirect", &away)] {
        let rounds = 20_000usize;
        let before = store.writes();
        let start = Instant::now();
        for i in 0..rounds {
            let name = &names[i % names.len()];
            let _ = std::hint::black_box(limiter.acquire(&store, &clock, &id(name, url)));
        }
        let per = start.elapsed().as_nanos() / rounds as u128;
        println!(
            "refused acquire {label}: {per} ns, {} writes",
            store.writes() - before
        );
    }
    let start = Instant::now();
    let tracked = limiter.tracked(&store, &clock).unwrap();
    println!(
        "tracked() over 1250 buckets: {tracked} in {:?}",
        start.elapsed()
    );
}
