#!/usr/bin/env bash
# A fleet on one machine, step by step: a three-member etcd over mTLS, two Envoys sharing its
# state, the demo receiver; then webhooks through both Envoys. docs/fleet.md ("Trying a fleet on
# one machine") holds this script verbatim; tests/walkthrough.rs checks that and runs it.
# Everything it makes is in fleet-local/ under the repository root. It stops what it started when
# it ends (Ctrl-C too), and exits non-zero when an answer is not the expected one. Needs
# 127.0.0.1 ports 2379-2380, 22379-22380, 32379-32380, 9901-9902, 10000-10001 and 18080 free.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tool.sh etcd etcd-server etcd-client
scripts/ensure-tool.sh openssl openssl
[ -f hookgate.wasm ] || make wasm
envoy=$(scripts/envoy.sh)
rm -rf fleet-local
mkdir -p fleet-local/pki
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT

# Step 3, certificates: one CA; per member one certificate that serves clients and peers (both
# serverAuth and clientAuth), here for 127.0.0.1; one client certificate for Envoy and etcdctl.
(
  cd fleet-local/pki
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -keyout ca.key -out ca.crt -subj /CN=etcd-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  for member in etcd-0 etcd-1 etcd-2; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$member.key" -out "$member.csr" -subj "/CN=$member"
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$member.ext"
    openssl x509 -req -in "$member.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
      -extfile "$member.ext" -out "$member.crt"
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout client.key -out client.csr -subj /CN=hookgate
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile client.ext -out client.crt
) 2>fleet-local/openssl.log

# Step 1, three members: on one machine each has its own client and peer ports.
ports=(2379 22379 32379)
cluster=etcd-0=https://127.0.0.1:2380,etcd-1=https://127.0.0.1:22380,etcd-2=https://127.0.0.1:32380
for i in 0 1 2; do
  member=etcd-$i client=https://127.0.0.1:${ports[$i]} peer=https://127.0.0.1:$((ports[i] + 1))
  etcd --name "$member" --data-dir "fleet-local/$member" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$cluster" --initial-cluster-token hookgate --initial-cluster-state new \
    --client-cert-auth --trusted-ca-file fleet-local/pki/ca.crt \
    --cert-file "fleet-local/pki/$member.crt" --key-file "fleet-local/pki/$member.key" \
    --peer-client-cert-auth --peer-trusted-ca-file fleet-local/pki/ca.crt \
    --peer-cert-file "fleet-local/pki/$member.crt" --peer-key-file "fleet-local/pki/$member.key" \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    >"fleet-local/$member.log" 2>&1 &
  pids+=($!)
done
etcdctl() {
  command etcdctl --endpoints https://127.0.0.1:2379,https://127.0.0.1:22379,https://127.0.0.1:32379 \
    --cacert fleet-local/pki/ca.crt --cert fleet-local/pki/client.crt --key fleet-local/pki/client.key "$@"
}
for _ in $(seq 100); do etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
etcdctl endpoint health

# Step 4, two Envoys: each its own node id (--service-node) and its own ports; with both on one
# machine, also --disable-hot-restart (or a --base-id of its own).
# The shipped configurations load the module from /etc/hookgate/hookgate.wasm: render copies that
# load this checkout's instead (docs/deploy.md).
scripts/render-envoy.py envoy/fleet-local.yaml >fleet-local/envoy-1.yaml
scripts/render-envoy.py envoy/fleet-local.yaml --port 10001 --admin-port 9902 >fleet-local/envoy-2.yaml
$envoy -c fleet-local/envoy-1.yaml --service-node fleet-1 --disable-hot-restart \
  >fleet-local/envoy-1.log 2>&1 &
pids+=($!)
$envoy -c fleet-local/envoy-2.yaml --service-node fleet-2 --disable-hot-restart \
  >fleet-local/envoy-2.log 2>&1 &
pids+=($!)
python3 -u examples/receiver.py --port 18080 --key demo-key >fleet-local/receiver.log 2>&1 &
pids+=($!)
for admin in 9901 9902; do
  for _ in $(seq 150); do curl -sf "127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.2; done
  curl -sf "127.0.0.1:$admin/ready"
done

# Try it: one hour for the whole fleet, and a verification that counts on every Envoy.
send() { # send PORT EVENT-FILE EXPECTED-STATUS
  status=$(curl -s -o fleet-local/answer -w '%{http_code}' "127.0.0.1:$1/" \
    -H 'content-type: application/json' -d "@examples/events/$2")
  echo "Envoy :$1 $2 -> $status $(cat fleet-local/answer)"
  [ "$status" = "$3" ] || { echo "UNEXPECTED: wanted $3" >&2; exit 1; }
}
send 10000 spam.json 200        # the first send of the hour
send 10001 spam.json 429        # the same webhook through the other Envoy: over the limit
send 10001 automation.json 200  # LeadCalled3: the receiver answers its key, it is verified
send 10000 automation.json 200  # verified for the fleet: no longer limited
send 10001 automation.json 200

# Step 5, check: one key per webhook that sent within the hour.
etcdctl get --prefix hookgate/ --keys-only
echo "fleet walkthrough: every answer as expected"
