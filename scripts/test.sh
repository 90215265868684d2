#!/usr/bin/env bash
# `make test`: lints, then every test (unit and end-to-end) inside a network namespace that has only
# loopback, so that a policy bug can never put a packet on a real network.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${HOOKGATE_SKIP_LINT:-}" ]; then
  echo "== lint"
  cargo fmt --check
  cargo clippy --quiet --all-targets -- -D warnings
  # Every shipped configuration's plugin configuration and guard, by the filter's own code.
  cargo run --quiet --bin hookgate -- check envoy/*.yaml examples/compose/envoy.yaml
fi

echo "== build (outside the namespace: nothing can be downloaded inside it)"
# The module the end-to-end tests load, rebuilt when a source changed (also when this script is
# run directly rather than by `make test`, which would otherwise test a stale module).
make --no-print-directory --quiet hookgate.wasm
ENVOY_BIN=$(scripts/envoy.sh)
export ENVOY_BIN
scripts/ensure-tool.sh docker-compose docker-compose  # tests/operators.rs validates the compose rig
[ -n "${ETCD_BIN:-}" ] || scripts/ensure-tool.sh etcd etcd-server etcd-client  # tests/fleet/
scripts/ensure-tool.sh wat2wasm wabt  # tests/fail_closed.rs assembles a trapping filter
scripts/ensure-tool.sh openssl openssl  # tests/tls.rs makes a private CA and certificates
scripts/ensure-tool.sh node nodejs  # tests/bench_tools.rs runs bench/wasm-profile.js
scripts/ensure-tool.sh skopeo skopeo  # tests/deploy.rs reads the OCI layouts of `make dist`
scripts/ensure-check-jsonschema.sh >/dev/null  # tests/deploy.rs validates the Kubernetes manifests
scripts/ensure-tool.sh promtool prometheus  # tests/metrics.rs checks examples/prometheus/ alerts
scripts/ensure-standardwebhooks.sh >/dev/null  # tests/signing.rs verifies with the reference library
cargo test --quiet --no-run

ns="hookgate-test-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; }
trap cleanup EXIT
ip netns add "$ns"
mkdir -p "/etc/netns/$ns"
# Names the end-to-end tests resolve: loopback, one name with two loopback addresses, and one
# blocked loopback address no test rig excepts. c-ares reads only the first hosts line of a name,
# so names with several addresses are served by the DNS server tests/destination/ runs on
# 127.0.0.1:53 inside this namespace (other names get "connection refused" from it: fast failure).
cat > "/etc/netns/$ns/hosts" <<'HOSTS'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
127.0.0.1 receiver.test
127.0.0.2 mixed.test
127.0.0.1 mixed.test
127.0.0.3 blocked.test
HOSTS
cat > "/etc/netns/$ns/resolv.conf" <<'RESOLV'
nameserver 127.0.0.1
options timeout:1 attempts:1
RESOLV
ip netns exec "$ns" ip link set lo up
# A public address (not in any built-in deny range) on the namespace's loopback, for policies that
# refuse what the defaults allow (tests/policy.rs); the namespace has no other interface.
ip netns exec "$ns" ip addr add 100.0.0.7/32 dev lo
# The same in IPv6, and an ISATAP interface id under it embedding 127.0.0.1 (tests/destination/
# after_dns.rs: what only the check after DNS refuses, with a listener there that must get nothing).
ip netns exec "$ns" ip addr add 2600::7/128 dev lo
ip netns exec "$ns" ip addr add 2600::5efe:7f00:1/128 dev lo

echo "== test (in network namespace $ns: loopback only)"
output=$(mktemp)
ip netns exec "$ns" cargo test --frozen "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
echo "== summary (one line per test binary: unit tests, then each file in tests/)"
grep -aE '^test result:|FAILED|panicked' "$output" || true
rm -f "$output"
exit "$status"
