"""The fleet case of the benchmark (BENCHMARKS.md, "Fleet (etcd)"): hookgate with its state in a
three-member etcd over mTLS, two Envoys sharing it, against the local state, one send at a time.

Imported by bench/bench.py (`make bench`, or `BENCH_FLEET=1 make bench` for this case alone). For
each of SENDS rounds, in turn: (a) a first send of a new webhook through one of the two etcd
Envoys (alternating), (b) a first send of a new webhook through the local-state Envoy, (c) one
bare etcd transaction of the shape hookgate's first send makes, straight to the same cluster; the
latency of each as the client saw it. Then refusals of a webhook over its limit through both etcd
Envoys and the local one, and verified sends through both etcd Envoys with the calls to etcd
counted (by each Envoy and by etcd itself).
"""

import base64
import copy
import http.client
import json
import os
import ssl
import subprocess
import time

import yaml

import bench as b

SENDS = 200 if b.QUICK else 600  # rounds of (a), (b), (c); also the refusals and verified sends
MEMBERS = 3
NAME_LEN = 12  # webhook names of the first sends, as long as hookgate's key and value hold them
TARGET_FACTOR = 1.3  # a first send may cost at most 1.3x a bare transaction plus a local delivery


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


# ---------------------------------------------------------------- the cluster

def make_pki(d):
    """One CA, a certificate per member (serverAuth and clientAuth, for 127.0.0.1) and a client
    certificate, as scripts/fleet-walkthrough.sh makes them."""
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=etcd-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = [(f"etcd-{i}", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
             for i in range(MEMBERS)] + [("client", "extendedKeyUsage=clientAuth\n")]
    for name, ext in names:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return {k: os.path.join(d, f"client.{k}") for k in ("crt", "key")} | {"ca": os.path.join(d, "ca.crt")}


class Cluster:
    """Three etcd members over mTLS on loopback, default settings (fsync on every write)."""

    def __init__(self):
        d = os.path.join(b.WORK, "etcd")
        self.pki = make_pki(os.path.join(d, "pki"))
        self.ports = [(b.free_port(), b.free_port()) for _ in range(MEMBERS)]
        initial = ",".join(f"etcd-{i}=https://127.0.0.1:{peer}" for i, (_, peer) in enumerate(self.ports))
        self.procs = []
        for i, (client, peer) in enumerate(self.ports):
            crt, key = os.path.join(d, "pki", f"etcd-{i}.crt"), os.path.join(d, "pki", f"etcd-{i}.key")
            cmd = [os.environ.get("ETCD_BIN", "etcd"), "--name", f"etcd-{i}", "--data-dir", os.path.join(d, f"data-{i}"),
                   "--listen-client-urls", f"https://127.0.0.1:{client}",
                   "--advertise-client-urls", f"https://127.0.0.1:{client}",
                   "--listen-peer-urls", f"https://127.0.0.1:{peer}",
                   "--initial-advertise-peer-urls", f"https://127.0.0.1:{peer}",
                   "--initial-cluster", initial, "--initial-cluster-token", "bench", "--initial-cluster-state", "new",
                   "--client-cert-auth", "--trusted-ca-file", self.pki["ca"], "--cert-file", crt, "--key-file", key,
                   "--peer-client-cert-auth", "--peer-trusted-ca-file", self.pki["ca"],
                   "--peer-cert-file", crt, "--peer-key-file", key]
            p = subprocess.Popen(b.pinned(cmd, b.LOAD_CPUS), stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(d, f"etcd-{i}.log"), "w"))
            b.PROCS.append(p)
            self.procs.append(p)
        self.tls = ssl.create_default_context(cafile=self.pki["ca"])
        self.tls.load_cert_chain(self.pki["crt"], self.pki["key"])
        self.conns = [None] * MEMBERS
        deadline = time.monotonic() + 30
        while not all(b'"health":"true"' in self.get(i, "/health") for i in range(MEMBERS)):
            if time.monotonic() > deadline:
                b.fail(f"etcd cluster not healthy in 30 s (see {d})")
            time.sleep(0.2)

    def conn(self, i):
        """A kept-alive HTTPS connection to member i (HTTP/1.1, as Envoy's etcd cluster speaks)."""
        if self.conns[i] is None:
            self.conns[i] = http.client.HTTPSConnection("127.0.0.1", self.ports[i][0], context=self.tls, timeout=5)
        return self.conns[i]

    def request(self, i, method, path, body=None):
        for attempt in (0, 1):
            c = self.conn(i)
            try:
                c.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
                r = c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                c.close()
                self.conns[i] = None
                if attempt:
                    raise
        return None

    def get(self, i, path):
        try:
            return self.request(i, "GET", path)[1]
        except (OSError, http.client.HTTPException):
            return b""

    def post(self, i, path, body):
        status, answer = self.request(i, "POST", path, json.dumps(body).encode())
        if status != 200:
            b.fail(f"etcd {path} answered {status}: {answer[:200]!r}")
        return json.loads(answer)

    def count(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return int(self.post(0, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(end),
                                                  "count_only": True}).get("count", 0))

    def kv_requests(self):
        """Range and Txn requests all members served (etcd's gRPC counters, which its JSON gateway
        goes through)."""
        total = 0
        for i in range(MEMBERS):
            for line in self.get(i, "/metrics").decode().splitlines():
                if line.startswith("grpc_server_handled_total{") and (
                        'grpc_method="Range"' in line or 'grpc_method="Txn"' in line):
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stop(self):
        for c in self.conns:
            if c:
                c.close()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)


# ---------------------------------------------------------------- Envoys

def fleet_parts(cluster):
    """envoy/fleet.yaml's `state` and its `etcd` cluster (mTLS, health checks, outlier detection as
    shipped), pointed at the three loopback members and the bench's certificates."""
    with open(os.path.join(b.REPO, "envoy", "fleet.yaml")) as f:
        fleet = yaml.safe_load(f)
    state = b.hookgate_plugin_json(fleet).get("state")
    if not state or state.get("backend") != "etcd":
        b.fail("envoy/fleet.yaml: no etcd state (layout changed?)")
    found = [c for c in fleet["static_resources"]["clusters"] if c.get("name") == state["cluster"]]
    if len(found) != 1:
        b.fail(f"envoy/fleet.yaml: no cluster {state['cluster']!r}")
    etcd = found[0]
    etcd["type"] = "STATIC"
    etcd["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": client}}}}
        for client, _ in cluster.ports]}]
    tls = etcd["transport_socket"]["typed_config"]["common_tls_context"]
    tls["tls_certificates"] = [{"certificate_chain": {"filename": cluster.pki["crt"]},
                                "private_key": {"filename": cluster.pki["key"]}}]
    tls["validation_context"] = {"trusted_ca": {"filename": cluster.pki["ca"]}}
    return state, etcd


class Client:
    """One kept-alive connection to an Envoy's listener, one request at a time."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)

    def post(self, body, headers=None):
        """(status, body, seconds)."""
        t0 = time.perf_counter()
        self.conn.request("POST", "/", body=body, headers={"content-type": "application/json", **(headers or {})})
        r = self.conn.getresponse()
        answer = r.read()
        return r.status, answer, time.perf_counter() - t0


def expect(status, answer, want, what):
    if status != want:
        b.fail(f"{what}: answered {status} (want {want}): {answer[:300]!r}")


# ---------------------------------------------------------------- the bare transaction

class Bare:
    """hookgate's first-send transaction, sent straight to the cluster: compare the key's
    create_revision with 0, put the value with the lease, else read the key; one kept-alive HTTPS
    connection per member, taken in turn (as Envoy's round-robin cluster does), one lease granted
    up front and attached to every put (as a worker keeps its lease)."""

    def __init__(self, cluster, prefix, url):
        self.cluster, self.prefix, self.url = cluster, prefix, url
        self.lease = cluster.post(0, "/v3/lease/grant", {"TTL": "3960"})["ID"]
        self.n = 0

    def txn(self, name):
        key = b64(f"{self.prefix}/default/webhook/{name}/{self.url}")
        value = json.dumps({"v": 1, "name": name, "url": self.url, "verified": False,
                            "sends": [int(time.time())]}, separators=(",", ":"))
        body = json.dumps({"compare": [{"target": "CREATE", "key": key, "create_revision": "0", "result": "EQUAL"}],
                           "success": [{"request_put": {"key": key, "value": b64(value), "lease": self.lease}}],
                           "failure": [{"request_range": {"key": key}}]}, separators=(",", ":")).encode()
        i = self.n % MEMBERS
        self.n += 1
        t0 = time.perf_counter()
        status, answer = self.cluster.request(i, "POST", "/v3/kv/txn", body)
        took = time.perf_counter() - t0
        if status != 200 or not json.loads(answer).get("succeeded"):
            b.fail(f"bare txn on member {i}: {status} {answer[:200]!r}")
        return took


# ---------------------------------------------------------------- the measurement

def quantiles(xs):
    s = sorted(xs)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1e6  # noqa: E731
    return {"n": len(s), "p50": b.med(s) * 1e6, "p90": pick(0.90), "p99": pick(0.99)}


def measure(receiver, url, plugin):
    cluster = Cluster()
    state, etcd_cluster = fleet_parts(cluster)
    key_name = "BenchFleetKey"
    local_plugin = plugin({"keys": {key_name: b.KEY}, "max_tracked": b.MAX_TRACKED})
    etcd_plugin = {**copy.deepcopy(local_plugin), "state": state}

    def add_cluster(cfg):
        cfg["static_resources"]["clusters"].append(copy.deepcopy(etcd_cluster))

    fleet = [b.Envoy(f"B-etcd-{i}", "B", plugin=etcd_plugin, edit=add_cluster) for i in (1, 2)]
    local = b.Envoy("B-local", "B", plugin=local_plugin)
    b.say(f"\n== fleet: {MEMBERS} etcd members (mTLS) on :{','.join(str(c) for c, _ in cluster.ports)}, "
          f"B-etcd-1 :{fleet[0].port}, B-etcd-2 :{fleet[1].port}, B-local :{local.port}; {SENDS} sends per path, "
          f"one at a time")
    clients = [Client(e) for e in fleet]
    local_client = Client(local)
    bare = Bare(cluster, state["prefix"], url)

    def first(client, tag, i):
        name = f"F{tag}{i:0{NAME_LEN - 2}d}"
        status, answer, took = client.post(b.event(name, url, 10))
        expect(status, answer, 200, f"first send of {name} through {client.envoy.label}")
        return took

    # Warm-up: every connection open, every worker's lease granted, etcd's leader settled.
    for i in range(20):
        first(clients[i % 2], "w", i), first(local_client, "v", i), bare.txn(f"Fb{i:0{NAME_LEN - 2}d}w")
    times = {"etcd": [], "local": [], "bare": []}
    calls0 = [e.stat("cluster.etcd.upstream_rq_total") for e in fleet]
    for i in range(SENDS):
        times["etcd"].append(first(clients[i % 2], "e", i))
        times["local"].append(first(local_client, "l", i))
        times["bare"].append(bare.txn(f"Fb{i:0{NAME_LEN - 2}d}"))
    first_calls = sum(e.stat("cluster.etcd.upstream_rq_total") for e in fleet) - sum(calls0)
    keys = cluster.count(f"{state['prefix']}/default/webhook/Fe")
    if keys != SENDS:
        b.fail(f"etcd holds {keys} keys of the {SENDS} first sends through the etcd Envoys")

    # Over the limit: a webhook sent once through B-etcd-1 (and once through B-local), then refused.
    limited = b.event("BenchFleetLimited", url, 10)
    for c in (clients[0], local_client):
        expect(*c.post(limited)[:2], 200, f"first send of BenchFleetLimited through {c.envoy.label}")
    refusals = {"etcd": [], "local": []}
    for i in range(SENDS // 2):
        status, answer, took = clients[i % 2].post(limited)
        expect(status, answer, 429, f"BenchFleetLimited through {clients[i % 2].envoy.label}")
        refusals["etcd"].append(took)
        status, answer, took = local_client.post(limited)
        expect(status, answer, 429, "BenchFleetLimited through B-local")
        refusals["local"].append(took)

    # Verified: by its key through B-etcd-1; B-etcd-2 reads it once; then no call on either.
    verified = b.event(key_name, f"http://{receiver}/verify", 10)
    expect(*clients[0].post(verified)[:2], 200, f"{key_name} through B-etcd-1")
    before = fleet[1].stat("cluster.etcd.upstream_rq_total")
    status, answer, _ = clients[1].post(verified, {"x-hookgate-test": "true"})
    expect(status, answer, 200, f"{key_name} through B-etcd-2")
    if not (json.loads(answer).get("limit") or {}).get("verified"):
        b.fail(f"{key_name} not verified for B-etcd-2: {answer[:300]!r}")
    unseen_calls = fleet[1].stat("cluster.etcd.upstream_rq_total") - before
    calls = [e.stat("cluster.etcd.upstream_rq_total") for e in fleet]
    delivered = [e.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.delivered.code.1") for e in fleet]
    served = cluster.kv_requests()
    verified_times = []
    for i in range(SENDS):
        status, answer, took = clients[i % 2].post(verified)
        expect(status, answer, 200, f"verified {key_name} through {clients[i % 2].envoy.label}")
        verified_times.append(took)
    wait_counted(fleet, delivered, SENDS // 2)
    verified_calls = [e.stat("cluster.etcd.upstream_rq_total") - c for e, c in zip(fleet, calls)]
    verified_served = cluster.kv_requests() - served

    result = dict(
        state=state, sends=SENDS, keys=keys, first_calls=first_calls,
        first={k: quantiles(v) for k, v in times.items()},
        refusal={k: quantiles(v) for k, v in refusals.items()},
        verified=quantiles(verified_times), verified_calls=verified_calls, verified_served=verified_served,
        unseen_calls=unseen_calls,
        connections=[e.stat("cluster.etcd.upstream_cx_total") for e in fleet],
        http2=[e.stat("cluster.etcd.upstream_cx_http2_total") for e in fleet])
    for e in (*fleet, local):
        e.stop()
    cluster.stop()
    return result


def wait_counted(fleet, before, want):
    """Until each etcd Envoy's `delivered` counter shows its share of the verified sends (counters
    reach Envoy on the tick): the positive signal before reading that nothing else happened."""
    deadline = time.monotonic() + 5
    while any(e.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.delivered.code.1") - d < want for e, d in zip(fleet, before)):
        if time.monotonic() > deadline:
            b.fail("the etcd Envoys' delivered counters did not count the verified sends in 5 s")
        time.sleep(0.1)


def verdict(result):
    """(limit in µs, met) of the target: first send <= 1.3 x bare txn + local delivery (medians)."""
    f = result["first"]
    limit = TARGET_FACTOR * f["bare"]["p50"] + f["local"]["p50"]
    return limit, f["etcd"]["p50"] <= limit


def summary(result):
    f = result["first"]
    limit, met = verdict(result)
    return (f"fleet target: first send through etcd p50 {f['etcd']['p50'] / 1000:.2f} ms <= {TARGET_FACTOR} x bare txn "
            f"{f['bare']['p50'] / 1000:.2f} ms + local delivery {f['local']['p50'] / 1000:.2f} ms = "
            f"{limit / 1000:.2f} ms: {'met' if met else 'NOT met'}; verified sends made "
            f"{sum(result['verified_calls'])} etcd calls ({result['verified_served']} served by etcd)")


# ---------------------------------------------------------------- the report

def report(result, envoy_version, wasm_size):
    f, r = result["first"], result["refusal"]
    limit, met = verdict(result)
    etcd_version = subprocess.run([os.environ.get("ETCD_BIN", "etcd"), "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0:1]
    load = os.getloadavg()
    L = []
    w = L.append
    w("### Latest fleet run\n")
    w(f"- Command: `{'BENCH_FLEET=1 make bench' if b.FLEET else 'make bench'}`; "
      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    w(f"- Machine: {os.cpu_count()} cores; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
      f"(the three members, three Envoys, nginx and the client share the cores)")
    w(f"- Envoy {envoy_version}, `--concurrency 1`; {etcd_version[0] if etcd_version else 'etcd'}, {MEMBERS} members "
      f"on loopback, mTLS, default settings (fsync on every write); `hookgate.wasm` {b.fmt_rps(wasm_size)} bytes")
    w(f"- B-etcd-1 and B-etcd-2: `state` {json.dumps(result['state'])} and the `etcd` cluster of `envoy/fleet.yaml` "
      f"(mTLS, health checks, outlier detection as shipped; the three members as endpoints); B-local: the same "
      f"without `state`. {result['sends']} rounds of (a), (b), (c) one after the other, each a new webhook name.\n")
    w("| one send at a time | n | p50 ms | p90 ms | p99 ms |")
    w("|---|---|---|---|---|")
    rows = [("(a) first send through etcd (B-etcd-1, B-etcd-2 in turn)", f["etcd"]),
            ("(b) first send, local state (B-local)", f["local"]),
            ("(c) bare etcd transaction, Python client", f["bare"]),
            ("over limit (429) through etcd (both in turn)", r["etcd"]),
            ("over limit (429), local state", r["local"]),
            ("verified by key, through etcd (both in turn)", result["verified"])]
    for label, q in rows:
        w(f"| {label} | {q['n']} | {b.ms(q['p50'])} | {b.ms(q['p90'])} | {b.ms(q['p99'])} |")
    w("")
    w(f"| target | measured | met |\n|---|---|---|\n"
      f"| first send p50 <= {TARGET_FACTOR} x (c) + (b) = {b.ms(limit)} ms | {b.ms(f['etcd']['p50'])} ms "
      f"(added over local {b.ms(f['etcd']['p50'] - f['local']['p50'])} ms = "
      f"{(f['etcd']['p50'] - f['local']['p50']) / f['bare']['p50']:.2f} x (c)) | {'yes' if met else 'no'} |\n"
      f"| a verified webhook makes no etcd call on any Envoy | {sum(result['verified_calls'])} calls from the Envoys "
      f"({' + '.join(str(c) for c in result['verified_calls'])}), {result['verified_served']} Range/Txn served by "
      f"etcd, over {result['sends']} verified sends | {'yes' if sum(result['verified_calls']) == 0 else 'no'} |\n")
    w(f"Calls to etcd during the {result['sends']} first sends: {result['first_calls']} "
      f"({result['first_calls'] / result['sends']:.2f} per send, lease grants included); etcd held one key per first "
      f"send ({result['keys']}). B-etcd-2's first send of the webhook verified through B-etcd-1 made "
      f"{result['unseen_calls']} call(s) (it reads the verification once, then caches it). Connections to etcd "
      f"opened over the whole run: {' and '.join(str(c) for c in result['connections'])} "
      f"(HTTP/2: {' and '.join(str(c) for c in result['http2'])}).\n")
    b.write_section("fleet", L, "## Fleet (etcd)\n\n")


def run(receiver, url, plugin, envoy_version, wasm_size, t0):
    result = measure(receiver, url, plugin)
    b.say(f"\nfleet bench took {time.monotonic() - t0:.0f} s\n{summary(result)}")
    report(result, envoy_version, wasm_size)
