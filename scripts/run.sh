#!/usr/bin/env bash
# `make run`: Envoy + hookgate on :10000 (admin 127.0.0.1:9901) with envoy/run.yaml, and the demo
# receiver on 127.0.0.1:18080. Foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
envoy=$(scripts/envoy.sh)
# envoy/run.yaml loads /etc/hookgate/hookgate.wasm; this run uses $HOOKGATE_WASM or the checkout's.
config=$(mktemp -t hookgate-run.XXXXXX.yaml)
scripts/render-envoy.py envoy/run.yaml >"$config"
python3 examples/receiver.py --port 18080 --key demo-key &
receiver=$!
trap 'kill $receiver 2>/dev/null || true; rm -f "$config"' EXIT INT TERM
echo "hookgate: listening on :10000, admin on 127.0.0.1:9901 (Ctrl-C stops)"
# shellcheck disable=SC2086 # $envoy may be "func-e run"
# The access log (one JSON line per decision) goes to stdout, flushed every second here.
$envoy -c "$config" --concurrency 2 --disable-hot-restart -l warning --component-log-level wasm:info \
  --file-flush-interval-msec 1000
