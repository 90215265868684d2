#!/usr/bin/env bash
# `make fleet`: a fleet on one machine, in the foreground. One etcd (127.0.0.1:2379, plain HTTP,
# data in a temporary directory), two Envoys with hookgate sharing the limit through it
# (envoy/fleet-run.yaml: A on :10000, admin 127.0.0.1:9901; B on :10001, admin 127.0.0.1:9902)
# and the demo receiver on 127.0.0.1:18080. Ctrl-C stops all of them; so does any of them exiting.
# ETCD_BIN overrides the etcd binary (else Debian's etcd-server is installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

envoy=$(scripts/envoy.sh)
if [ -z "${ETCD_BIN:-}" ]; then
  scripts/ensure-tool.sh etcd etcd-server etcd-client
  ETCD_BIN=etcd
fi
[ -f hookgate.wasm ] || { echo "fleet: hookgate.wasm missing: run \`make fleet\` (it builds it)" >&2; exit 1; }

who=fleet
# shellcheck source=scripts/wait.sh
source scripts/wait.sh
ports_free "is \`make run\` or \`make demo\` running?" 2379 2380 10000 10001 9901 9902 18080

tmp=$(mktemp -d -t hookgate-fleet.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# `start NAME CMD...`: CMD in the background, stdout prefixed with NAME, stderr to $tmp/NAME.log.
start() {
  local name=$1
  shift
  "$@" > >(sed -u "s/^/$name | /") 2>"$tmp/$name.log" &
  pids+=("$!")
}
fail() {
  echo "fleet: $1 did not start; its log:" >&2
  cat "$tmp/$1.log" >&2
  exit 1
}

start etcd "$ETCD_BIN" --name fleet --data-dir "$tmp/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster fleet=http://127.0.0.1:2380
start receiver python3 -u examples/receiver.py --port 18080 --key demo-key
wait_for ready http://127.0.0.1:2379/health || fail etcd
wait_for probe 18080 || fail receiver

scripts/render-envoy.py envoy/fleet-run.yaml >"$tmp/a.yaml"
scripts/render-envoy.py envoy/fleet-run.yaml --port 10001 --admin-port 9902 >"$tmp/b.yaml"
for member in a b; do
  # shellcheck disable=SC2086 # $envoy may be "func-e run"
  start "envoy-$member" $envoy -c "$tmp/$member.yaml" --service-node "hookgate-$member" \
    --concurrency 2 --disable-hot-restart -l warning --component-log-level wasm:info \
    --file-flush-interval-msec 1000
done
wait_for ready http://127.0.0.1:9901/ready || fail envoy-a
wait_for ready http://127.0.0.1:9902/ready || fail envoy-b

cat <<'TEXT'
hookgate fleet: ready (Ctrl-C stops everything)
  envoy-a  :10000 (admin 127.0.0.1:9901)    envoy-b  :10001 (admin 127.0.0.1:9902)
  etcd     127.0.0.1:2379 (the shared limit)  demo receiver 127.0.0.1:18080
One webhook, first through A (delivered), then through B (429: the hour is shared):
  curl -si localhost:10000/ -H 'content-type: application/json' -d @examples/events/spam.json
  curl -si localhost:10001/ -H 'content-type: application/json' -d @examples/events/spam.json
The state in etcd:  ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:2379 get --prefix hookgate/
TEXT
# Until Ctrl-C (the INT trap), or until one of them exits: then the others are stopped too.
status=0
wait -n "${pids[@]}" || status=$?
echo "fleet: a member exited (status $status); stopping the others" >&2
exit 1
