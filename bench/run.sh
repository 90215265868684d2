#!/usr/bin/env bash
# `make bench`: hookgate against plain Envoy (A) and the floor wasm filter (F), see BENCHMARKS.md.
# On a fresh machine installs wrk and nginx (Debian packages, only if missing), builds
# hookgate.wasm and the floor filter (bench/floor, same toolchain route as hookgate), then runs
# bench/bench.py inside a network namespace that has only loopback (bench/netns.sh; bench.py refuses
# to run anywhere else), where it starts nginx on a public address on that loopback, the Envoys and
# the load, and writes BENCHMARKS.md.
# BENCH_QUICK=1: about 3 minutes instead of about 8. BENCH_FLEET=1: only the fleet case (hookgate
# with its state in etcd against the local state; the full run does it too), which also needs etcd
# (Debian's, installed by scripts/ensure-tool.sh when missing) and not the floor filter.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || apt-get install -y -qq --no-install-recommends "${missing[@]/nginx-light/nginx}" >&2
fi
# The Debian package may have started its own nginx (where no policy-rc.d prevents it): it does
# not matter, the bench runs its own in its own network namespace.

python=python3
if ! "$python" -c 'import yaml' 2>/dev/null; then
  if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    echo "installing python3-yaml (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >&2
  fi
  python=/usr/bin/python3
fi

make --no-print-directory wasm
scripts/envoy.sh >/dev/null
if [ "${BENCH_FLEET:-}" = 1 ] || [ "${BENCH_QUICK:-}" != 1 ]; then
  [ -n "${ETCD_BIN:-}" ] || scripts/ensure-tool.sh etcd etcd-server etcd-client
  scripts/ensure-tool.sh openssl openssl
fi
if [ "${BENCH_FLEET:-}" = 1 ]; then
  exec bench/netns.sh "$python" bench/bench.py
fi

# The floor: its own crate ([workspace]), built the way scripts/build-wasm.sh builds hookgate.
eval "$(scripts/wasm-toolchain.sh)"
target=wasm32-unknown-unknown
export CARGO_TARGET_DIR="$PWD/target/bench-floor"
if [ "$HOOKGATE_WASM_ROUTE" = rustup ]; then
  (cd bench/floor && cargo build --quiet --release --target $target)
else
  export CARGO_TARGET_DIR="$PWD/target/bench-floor-debian"
  # shellcheck disable=SC2086 # HOOKGATE_BUILD_STD is two words on purpose
  (cd bench/floor && "$HOOKGATE_CARGO" build --quiet --release --target $target $HOOKGATE_BUILD_STD)
fi
export BENCH_FLOOR_WASM="$CARGO_TARGET_DIR/$target/release/hookgate_bench_floor.wasm"
echo "built the floor filter ($(stat -c %s "$BENCH_FLOOR_WASM") bytes, $HOOKGATE_WASM_ROUTE toolchain)"

exec bench/netns.sh "$python" bench/bench.py
