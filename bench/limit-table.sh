#!/usr/bin/env bash
# The limit table's capacity and cost, natively (no Envoy): where the first "table full" refusal
# comes for 1 000 / 10 000 / 100 000 places, and what one update costs at home and behind a
# redirect. The measurements are bench/limit_table.rs, compiled with the table's unit tests (they
# need its internals) as ignored tests; this script is the only thing that runs them. Results:
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet --release --lib -- --ignored --nocapture --test-threads=1 \
  limit::tests::measurements::fill_measurement limit::tests::measurements::cost_measurement 2>&1 |
  grep -vE '^(running|test |$)'
