#!/usr/bin/env bash
# `make demo`: starts the gateway (envoy/run.yaml: :10000, admin 127.0.0.1:9901) and the demo
# receiver (examples/receiver.py on 127.0.0.1:18080, the only destination run.yaml allows), walks
# through every outcome of the contract, printing each event and the answer (HTTP status,
# x-hookgate-* headers, envelope) and what the receiver got, then stops everything it started.
#
# Webhook names (and the URLs of LeadCalled3, whose name is fixed by run.yaml's key) carry this
# run's id, so a second `make demo` within the hour shows the same outcomes. Every wait is
# bounded. Exit status: 0 when every answer had the expected HTTP status, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY=http://127.0.0.1:10000/
RECEIVER=http://127.0.0.1:18080
RUN=$(date +%s)$$
tmp=$(mktemp -d -t hookgate-demo.XXXXXX)
envoy_pid=""
receiver_pid=""
failures=0

stop_receiver() {
  if [ -n "$receiver_pid" ]; then
    kill "$receiver_pid" 2>/dev/null || true
    wait "$receiver_pid" 2>/dev/null || true
    receiver_pid=""
  fi
}
cleanup() {
  stop_receiver
  if [ -n "$envoy_pid" ]; then
    kill "$envoy_pid" 2>/dev/null || true
    wait "$envoy_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

who=demo
# shellcheck source=scripts/wait.sh
source scripts/wait.sh

start_receiver() {
  python3 -u examples/receiver.py --port 18080 --key demo-key >>"$tmp/receiver.log" 2>&1 &
  receiver_pid=$!
  wait_for probe 18080
}

# `show TITLE`: a heading. `send ARGS...`: examples/send.py, counting unexpected answers, then
# what the receiver got meanwhile.
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
show() { printf '\n%s=== %s%s\n' "$bold" "$*" "$plain"; }
receiver_seen=0
receiver_news() {
  local total
  total=$(wc -l <"$tmp/receiver.log")
  if [ "$total" -gt "$receiver_seen" ]; then
    echo "    the receiver got:"
    tail -n "+$((receiver_seen + 1))" "$tmp/receiver.log" | head -n "$((total - receiver_seen))" | sed 's/^/    | /'
  else
    echo "    (the receiver got nothing)"
  fi
  receiver_seen=$total
}
send() {
  if ! python3 examples/send.py --gateway "$GATEWAY" "$@"; then failures=$((failures + 1)); fi
  receiver_news
}

ports_free "is \`make run\` running?" 10000 9901 18080
[ -f hookgate.wasm ] || { echo "demo: hookgate.wasm missing: run \`make demo\` (it builds it)" >&2; exit 1; }

envoy=$(scripts/envoy.sh)
scripts/render-envoy.py envoy/run.yaml >"$tmp/run.yaml"
touch "$tmp/receiver.log"
start_receiver
receiver_seen=$(wc -l <"$tmp/receiver.log")
# shellcheck disable=SC2086 # $envoy may be "func-e run"
$envoy -c "$tmp/run.yaml" --concurrency 2 --disable-hot-restart -l warning --component-log-level wasm:info \
  --file-flush-interval-msec 200 >"$tmp/envoy.log" 2>&1 &
envoy_pid=$!
if ! wait_for ready http://127.0.0.1:9901/ready; then cat "$tmp/envoy.log" >&2; exit 1; fi
echo "hookgate demo (run $RUN): gateway $GATEWAY (envoy/run.yaml), demo receiver $RECEIVER"
echo "the demo receiver answers {\"key\": \"demo-key\"} unless the webhook URL's query says otherwise"

show "1. success: the receiver answers 2xx with JSON -> 200, delivered, status true, code 1"
send --expect 200 --name "NewLead$RUN" examples/events/automation.json

show "2. test request (x-hookgate-test: true): the report of what was sent and what came back"
send --expect 200 --test --name "TestLead$RUN" examples/events/automation.json

show "3. the document's event webhooks, passed through as sent: spam and unsubscribe"
send --expect 200 --name "Complaints$RUN" examples/events/spam.json
send --expect 200 --name "Unsubscribes$RUN" examples/events/unsubscribe.json

show "4. an array of events for one webhook: one delivery"
send --expect 200 --name "Batch$RUN" examples/events/batch.json

show "5. bad name (Latin letters and digits only) -> 400, code 21111011, nothing sent"
send --expect 400 examples/events/bad-name.json
show "   an event without a webhook URL -> 400"
send --expect 400 examples/events/missing-url.json

show "6. local address (a name resolving to loopback: the Envoy admin) -> 403 Incorrect url ip"
send --expect 403 examples/events/loopback.json

show "7. hourly limit: an unverified webhook may send one an hour -> the second gets 429 + Retry-After"
send --expect 200 --name "Hourly$RUN" examples/events/automation.json
send --expect 429 --quiet --name "Hourly$RUN" examples/events/automation.json

show "8. verification: LeadCalled3 is limited until its receiver answers the key demo-key"
verify_url="$RECEIVER/hooks/verify?run=$RUN&delay=5"
echo "    the receiver takes 5 s to answer this URL; a second send while the first is in flight:"
python3 examples/send.py --gateway "$GATEWAY" --expect 200 --url "$verify_url" \
  examples/events/automation.json >"$tmp/first.out" 2>&1 &
first=$!
wait_for grep -q "run=$RUN&delay=5" "$tmp/receiver.log" || true
send --expect 429 --quiet --url "$verify_url" examples/events/automation.json
echo "    the first send's answer (the receiver answered the key: LeadCalled3 is now verified):"
if ! wait "$first"; then failures=$((failures + 1)); fi
sed 's/^/  /' "$tmp/first.out"
echo "    verified webhooks are no longer limited: one more send, delivered"
send --expect 200 --quiet --url "$verify_url" examples/events/automation.json

show "9. wrong verification key -> 200, delivered, code 11110113"
send --expect 200 --url "$RECEIVER/hooks/wrong-key?run=$RUN&body=%7B%22key%22%3A%22not-the-key%22%7D" \
  examples/events/wrong-key.json

show "10. the receiver answers text, not JSON -> 200, delivered, code 11110112"
send --expect 200 --name "TextReply$RUN" examples/events/not-json-receiver.json

show "11. the receiver answers 500 -> 200, delivered, The request failed (11110111)"
send --expect 200 --name "Broken$RUN" examples/events/receiver-error.json

show "12. receiver down (the demo receiver is stopped) -> 502, not delivered"
stop_receiver
send --expect 502 --name "Down$RUN" examples/events/automation.json
start_receiver
echo "    receiver back: the same webhook is not limited, since nothing reached the receiver"
send --expect 200 --quiet --name "Down$RUN" examples/events/automation.json

show "13. the receiver does not answer within the route timeout (10 s) -> 504, delivered unknown"
send --expect 504 --name "Slow$RUN" examples/events/slow-receiver.json

show "the gateway's access log: one line per decision (no email, phone or variables)"
sleep 0.5 # the access log is flushed every 200 ms here
grep '"hookgate":"webhook=' "$tmp/envoy.log" | sed 's/^/    /' || echo "    (none)"

if [ "$failures" -ne 0 ]; then
  echo
  echo "demo: $failures answer(s) differed from the expected outcome" >&2
  exit 1
fi
echo
echo "demo: every outcome as expected; stopping the gateway and the receiver"
