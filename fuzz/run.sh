#!/usr/bin/env bash
# Coverage-guided fuzzing of hookgate's pure core (cargo-fuzz + libFuzzer, nightly Rust).
#
#   fuzz/run.sh [seconds-per-target] [target...]     (default: 60 s, every target)
#
# Writes seed corpora (from the unit tests, examples/events and fuzz/seeds/ssrf),
# builds every target, runs each for the bounded time and prints, per target, executions,
# coverage and findings. Crash inputs land in fuzz/artifacts/<target>/, logs in
# fuzz/artifacts/logs/. Exits 1 when a target found something. See RELIABILITY.md.
set -uo pipefail

SECONDS_PER_TARGET="${1:-60}"
shift || true
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$FUZZ_DIR/.." && pwd)"
SSRF_DIR="${HOOKGATE_SSRF_DIR:-$FUZZ_DIR/seeds/ssrf}"
ALL_TARGETS=(event destination_url destination_config receiver_answer plugin_config limit_codec abi_map)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [seconds-per-target] [target...]" >&2; exit 2 ;;
esac

# --- toolchain -------------------------------------------------------------------------------
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)" >&2
  rustup toolchain install nightly --profile minimal || exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io" >&2
  cargo install cargo-fuzz || exit 2
fi

# --- seed corpora ----------------------------------------------------------------------------
CORPUS="$FUZZ_DIR/corpus"
n=0
seed() { # seed <target> <content>  (content as bytes; printf %b escapes allowed by callers)
  mkdir -p "$CORPUS/$1"
  n=$((n + 1))
  printf '%s' "$2" >"$CORPUS/$1/seed-$(printf '%04d' "$n")"
}
seed_bytes() { # seed_bytes <target> <printf-format with \x escapes>
  mkdir -p "$CORPUS/$1"
  n=$((n + 1))
  printf "$2" >"$CORPUS/$1/seed-$(printf '%04d' "$n")"
}
# Every r#"..."# raw string of a Rust file, NUL-separated.
raw_strings() { perl -0777 -ne 'while (/r#"(.*?)"#/sg) { print "$1\0" }' "$@"; }
# Every "http(s)://..." string literal of a Rust file without escapes, one a line.
url_literals() { perl -ne 'while (/"(https?:[^"\\]*)"/g) { print "$1\n" }' "$@"; }

varint() { # LEB128 of $1 as a printf format
  local v=$1 out=""
  while :; do
    local low=$((v & 127)); v=$((v >> 7))
    if [ "$v" -eq 0 ]; then out+=$(printf '\\x%02x' "$low"); break; fi
    out+=$(printf '\\x%02x' $((low | 128)))
  done
  printf '%s' "$out"
}
text_field() { printf '%s%s' "$(varint ${#1})" "$1"; } # length-prefixed text as a format

write_seeds() {
  rm -rf "$CORPUS"/*/seed-* 2>/dev/null
  # event: the documented examples, the sample events and every JSON body of the unit tests.
  for f in "$ROOT"/examples/events/*.json; do [ -f "$f" ] && seed event "$(cat "$f")"; done
  while IFS= read -r -d '' body; do seed event "$body"; done < <(raw_strings "$ROOT/src/event.rs" "$ROOT"/src/event/*.rs)
  seed event '[{"webhook":{"name":"S","url":"https://x.example/"},"event":"spam","email":"a@b.c"},{"event":"unsubscribe"}]'

  # destination_url: the public SSRF spellings and every URL of the destination tests.
  for f in "$SSRF_DIR"/ssrf_bypass_candidates.txt "$SSRF_DIR"/ssrf_dns_candidates.txt; do
    [ -f "$f" ] || continue
    while IFS= read -r url; do [ -n "$url" ] && seed destination_url "$url"; done <"$f"
  done
  while IFS= read -r url; do seed destination_url "$url"; done < <(url_literals "$ROOT"/src/destination.rs "$ROOT"/src/destination/tests/*.rs | sort -u)

  # destination_config: lines D <cidr> / H <host> / A <cidr> [port] / U <url>.
  seed destination_config $'A 127.0.0.1/32 18080\nU http://127.0.0.1:18080/\nU http://127.0.0.1:8080/'
  seed destination_config $'D 203.0.113.7/32\nD fd12::/16\nH *.corp.example\nH internal\nU http://a.corp.example/x'
  seed destination_config $'A ::ffff:127.0.0.1/128\nA 10.0.0.0/8 443\nU http://[::ffff:127.0.0.1]/\nU https://10.1.2.3/'
  seed destination_config $'D 10.0.0.1/8\nH *.\nA 127.0.0.1/33'
  seed destination_config $'H ＥＸＡＭＰＬＥ.com.\nH xn--nxasmq6b.example\nU http://example.com./'
  perl -ne 'print "$1\n" if /^\s*range\("([0-9a-f.:]+\/\d+)",/' "$ROOT/src/destination/ranges.rs" | sort -u |
    while IFS= read -r cidr; do seed destination_config "D $cidr"$'\n'"A $cidr"; done
  if [ -f "$SSRF_DIR/ssrf_bypass_candidates.txt" ]; then
    head -n 40 "$SSRF_DIR/ssrf_bypass_candidates.txt" | while IFS= read -r url; do
      seed destination_config $'A 127.0.0.1/32\nA ::1/128\nU '"$url"
    done
  fi

  # receiver_answer: 4 header bytes (status selector, status, options) + the answer body.
  for opts in '\x00' '\x02' '\x04' '\x08' '\x01'; do
    for body in '{"key":"s3cret"}' '[{"key":"s3cret"},1]' '{"key":12345}' '{"key":"12345"}' \
      '{"key":null}' '{"key":"wrong"}' '{"a":{"key":"s3cret"}}' ' {"a":1} ' '[]' '"text"' \
      'ok' '{"a":' '{} {}' '{"key":"s3cret","key":"x"}' '{"key":1.2345e4}'; do
      seed_bytes receiver_answer "\x00\x00\x00${opts}${body}"
    done
  done
  seed_bytes receiver_answer '\x01\xf4\x01\x00{"key":"s3cret"}'
  seed_bytes receiver_answer '\x00\x00\x00\x00\xff\xfe'
  seed_bytes receiver_answer '\x01\x93\x01\x00upstream_reset_before_response_started{connection_termination}'
  seed_bytes receiver_answer '\x01\xf7\x01\x00rbac_access_denied_matched_policy[blocked]'
  seed_bytes receiver_answer '\x01\xf7\x01\x00dns_resolution_failure{x}'

  # plugin_config: the shipped, tested and documented configurations.
  seed plugin_config ''
  seed plugin_config '{}'
  while IFS= read -r -d '' cfg; do seed plugin_config "$cfg"; done < <(raw_strings "$ROOT/src/config.rs")
  while IFS= read -r cfg; do seed plugin_config "$cfg"; done < <(grep -rho 'plugin_config(r#"[^#]*"#' "$ROOT/tests" 2>/dev/null | sed 's/^plugin_config(r#"//; s/"#$//' | sort -u)
  seed plugin_config '{"max_event_bytes":1024,"max_response_bytes":2048,"max_name_length":32,"static_headers":{"x-source":"sendpulse"},"destination":{"deny_cidrs":["203.0.113.7/32"],"deny_hosts":["*.corp.example"],"allow":[{"cidr":"127.0.0.1/32","port":18080}]},"limit":{"unverified_per_hour":2,"verified_per_hour":100,"keys":{"orders":"s3cret"},"default_key":"k","key_field":"key","verified":[{"name":"orders","url":"https://example.com/hook#x"}],"max_tracked":16,"namespace":"ns-1"}}'
  seed plugin_config '{"limit":{"max_tracked":0}}'
  seed plugin_config '{"limit":{"namespace":"a/b"}}'
  seed plugin_config '{"static_headers":{"x-envoy-a":"x"}}'

  # limit_codec: option byte + a bucket value (format version 2, see src/limit/codec.rs):
  # version, entries, redirects (flags, fingerprint u32 LE, offset, until). e4c42b8b is the
  # fingerprint of the target's webhook ("orders", https://example.com/hook).
  local entry redirect
  entry="\\x00$(text_field orders)$(text_field https://example.com/hook)\\x01$(varint 1700000000)"
  redirect="\\xe4\\xc4\\x2b\\x8b\\x01$(varint 1700007200)"
  for opts in '\x00' '\x01' '\x02' '\x03' '\x40'; do
    seed_bytes limit_codec "${opts}"
    seed_bytes limit_codec "${opts}\x02\x00\x00"
    seed_bytes limit_codec "${opts}\x02\x01${entry}\x00"
    seed_bytes limit_codec "${opts}\x02\x02${entry}\x01$(text_field other)$(text_field https://a.example/)\x00\x00"
    seed_bytes limit_codec "${opts}\x02\x01\x01$(text_field orders)$(text_field https://example.com/hook)\x03$(varint 1699999000)\x0a\x0a\x00"
    seed_bytes limit_codec "${opts}\x02\x00\x01\x00${redirect}"
    seed_bytes limit_codec "${opts}\x02\x00\x01\x01${redirect}"
    seed_bytes limit_codec "${opts}\x02\x01\x01$(text_field other)$(text_field https://a.example/)\x00\x01\x00${redirect}"
  done
  seed_bytes limit_codec '\x00\x01\x00'
  seed_bytes limit_codec '\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01'
  seed_bytes limit_codec '\x00\x02\x01\x00\x01\xff\x00\x00\x00'

  # abi_map: the ABI's map encoding (count, sizes, NUL-ended keys and values).
  seed_bytes abi_map '\x00\x00\x00\x00'
  seed_bytes abi_map '\x02\x00\x00\x00\x07\x00\x00\x00\x03\x00\x00\x00\x0c\x00\x00\x00\x10\x00\x00\x00:status\x00200\x00content-type\x00application/json\x00'
  seed_bytes abi_map '\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00k\x00\xff\x00'
  seed_bytes abi_map '\xff\xff\xff\xff'
  seed_bytes abi_map '\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff'
}
write_seeds

# --- build and run ---------------------------------------------------------------------------
cd "$FUZZ_DIR" || exit 2
mkdir -p "$FUZZ_DIR/artifacts"
echo "fuzz: building ${#TARGETS[@]} target(s) (cargo +nightly fuzz build)" >&2
if [ "${#TARGETS[@]}" -eq "${#ALL_TARGETS[@]}" ]; then BUILDS=(""); else BUILDS=("${TARGETS[@]}"); fi
for t in "${BUILDS[@]}"; do
  # shellcheck disable=SC2086 # an empty $t builds every target
  if ! cargo +nightly fuzz build $t >"$FUZZ_DIR/artifacts/build.log" 2>&1; then
    cat "$FUZZ_DIR/artifacts/build.log" >&2
    exit 2
  fi
done

LOGS="$FUZZ_DIR/artifacts/logs"
mkdir -p "$LOGS"
found=0
rows=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$CORPUS/$t" "$FUZZ_DIR/artifacts/$t"
  seeds=$(find "$CORPUS/$t" -name 'seed-*' | wc -l)
  before=$(find "$FUZZ_DIR/artifacts/$t" -maxdepth 1 -type f | wc -l)
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s ($seeds seeds)" >&2
  cargo +nightly fuzz run "$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$LOGS/$t.log" 2>&1
  rc=$?
  log="$LOGS/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[^ ]*' | tail -n 1)
  after=$(find "$FUZZ_DIR/artifacts/$t" -maxdepth 1 -type f | wc -l)
  new=$((after - before))
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    found=1
    what=$(grep -m 1 -A 1 'panicked at' "$log" | tail -n 1 | cut -c 1-160)
    [ -n "$what" ] || what=$(grep -m 1 -E 'ERROR: libFuzzer|SUMMARY' "$log" | cut -c 1-160)
    findings="FOUND (exit $rc, $new new artifact(s)): ${what:-see $log}"
  else
    findings="none"
  fi
  rows+=("$(printf '%-19s %12s  %-40s %s' "$t" "${execs:-?}" "${last:-?}" "$findings")")
done

echo
echo "hookgate fuzzing: ${SECONDS_PER_TARGET}s per target, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
printf '%-19s %12s  %-40s %s\n' target executions "coverage (edges, features, corpus)" findings
for row in "${rows[@]}"; do echo "$row"; done
echo "logs: $LOGS; crash inputs: $FUZZ_DIR/artifacts/<target>/"
exit "$found"
