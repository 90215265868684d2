#!/usr/bin/env bash
# Runs a command inside a new network namespace that has only loopback, with a public address on
# it for the bench's receiver, so the bench measures the path production webhooks take (a public
# receiver no exception covers) and a load or policy bug can never put a packet on a real network:
# anything not on the namespace's loopback is unreachable. bench/run.sh runs bench/bench.py through
# this; bench/compare.py needs it too (`bench/netns.sh bench/compare.py ...`). Needs root (ip netns).
#
# Inside: lo up with 127.0.0.1 and BENCH_RECEIVER_IP (100.0.0.7, outside every range hookgate or
# Envoy's guard refuses by default), and BENCH_RECEIVER_NAME (receiver.bench.example) resolving to
# it through the namespace's own hosts file (`ip netns exec` mounts /etc/netns/NAME/hosts over
# /etc/hosts; Envoy's resolver reads it before asking the nameserver, 127.0.0.1, where nothing
# answers: any other name fails at once).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: bench/netns.sh COMMAND [ARG...]" >&2; exit 2; }

export BENCH_RECEIVER_IP=100.0.0.7 BENCH_RECEIVER_NAME=receiver.bench.example
ns="hookgate-bench-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; }
trap cleanup EXIT
ip netns add "$ns"
mkdir -p "/etc/netns/$ns"
printf '127.0.0.1 localhost\n%s %s\n' "$BENCH_RECEIVER_IP" "$BENCH_RECEIVER_NAME" > "/etc/netns/$ns/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$ns/resolv.conf"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip addr add "$BENCH_RECEIVER_IP/32" dev lo
echo "bench: in network namespace $ns (loopback only; $BENCH_RECEIVER_NAME is $BENCH_RECEIVER_IP on its lo)" >&2
status=0
ip netns exec "$ns" "$@" || status=$?
exit "$status"
