#!/usr/bin/env python3
"""Builds of hookgate side by side: the floor (F) and one B per given wasm file, in alternating
rounds of the bench's delivery (bench.py's Envoy configurations, receiver and load), printing
Envoy's CPU time per request. For measuring one change against another in the same run, where
the machine's speed drifts between runs; `make bench` stays the reference (BENCHMARKS.md).

  bench/netns.sh bench/compare.py ROUNDS SECONDS VARIABLES LABEL=WASM[:VARIANT] ...

Like the bench, it runs only inside bench/netns.sh's network namespace, sending to the receiver's
name with no exception. VARIANT changes only that B's Envoy configuration, to measure what a part
of it costs: `afterdns` adds the check after DNS (hookgate's upstream filter) in its matcher, as
docs/security.md shows it for looking up IPv6 (the lookup family kept: the receiver is IPv4),
`unwrapped` the same without the matcher (run on every try), `norecord` drops the decision record
from the access log line, `exception` adds an exception covering the receiver to the plugin
configuration (what the guard's per-request pattern costs). WASM `floor` is the floor filter, and
two variants run a floor build instead of a B: `floor` the floor as F runs it, and `contract` the
contract floor (F-contract: the floor's bytes through with exactly the host calls of hookgate's
delivery, bench/floor/src/contract.rs), so `fc=floor:contract` runs it beside F and the Bs, and
`f0=/tmp/old-floor.wasm:floor` another floor build. Every floor build gets F's Envoy
configuration and body (the payload). Needs wrk, nginx and the floor filter built (bench/run.sh
builds it; BENCH_FLOOR_WASM names it, default target/bench-floor's).
"""

import json
import os
import shutil
import statistics
import sys

import yaml

import bench as b


def documented_after_dns():
    """The check after DNS as docs/security.md ("Looking up IPv6") shows it: the second `yaml`
    block of that section, as text (its aliases name the chain's hookgate VM and policy)."""
    with open(os.path.join(b.REPO, "docs", "security.md")) as f:
        page = f.read()
    section = page[page.index("#### Looking up IPv6"):]
    return section.split("```yaml\n")[2].split("```")[0]


def add_after_dns(cfg, wrapped=True):
    """The documented check after DNS right after the guard of every chain, its aliases bound to
    the chain's hookgate filter; `wrapped=False` leaves out its matcher (run on every try)."""
    block = documented_after_dns()
    done = set()
    for hcm in b.find_all(cfg, lambda v: isinstance(v, dict) and "http_filters" in v, []):
        filters = hcm["http_filters"]
        engine = [f for f in filters if f.get("name") == "hookgate"]
        routers = [f for f in filters if "upstream_http_filters" in f.get("typed_config", {})]
        # Chains that share their filters (a YAML alias) get the check once.
        if id(filters) in done or not engine or not routers:
            continue
        done.add(id(filters))
        config = engine[0]["typed_config"]["config"]
        bound = yaml.safe_load("bound: [&hookgate-vm %s, &hookgate-policy %s]\nfilters:\n%s" % (
            json.dumps(config["vm_config"]), json.dumps(config["configuration"]), block))
        added = [f if wrapped else f["typed_config"]["extension_config"] for f in bound["filters"]]
        upstream = routers[0]["typed_config"]["upstream_http_filters"]
        guard = [f.get("name") for f in upstream].index("envoy.filters.http.upstream_rbac")
        upstream[guard + 1:guard + 1] = added


def drop_record(cfg):
    for fmt in b.find_all(cfg, lambda v: isinstance(v, dict) and "json_format" in v, []):
        fmt["json_format"].pop("hookgate", None)


def add_exception(cfg):
    for f in b.find_all(cfg, lambda v: isinstance(v, dict) and v.get("name") == "hookgate"
                        and "typed_config" in v, []):
        configuration = f["typed_config"]["config"]["configuration"]
        plugin = json.loads(configuration["value"])
        plugin.setdefault("destination", {})["allow"] = [{"cidr": f"{b.RECEIVER_IP}/32"}]
        configuration["value"] = json.dumps(plugin)


VARIANTS = {"afterdns": add_after_dns, "unwrapped": lambda cfg: add_after_dns(cfg, wrapped=False),
            "norecord": drop_record,
            "exception": add_exception}
# Floor builds: what follows the receiver's authority and path in the floor's plugin configuration.
FLOOR_VARIANTS = {"floor": "", "contract": " contract"}


def setup(args, variables, **envoy_options):
    """The receiver and bodies, and how to start F and each build of `args`
    (LABEL=WASM[:VARIANT]): a list of (label, start), start() giving the running Envoy; bodies by
    label."""
    floor = os.environ.get("BENCH_FLOOR_WASM") or os.path.join(
        b.REPO, "target", "bench-floor", "wasm32-unknown-unknown", "release", "hookgate_bench_floor.wasm")
    shutil.copy(floor, os.path.join(b.WORK, "floor.wasm"))
    builds, labels = [], {"F"}
    for arg in args:
        label, _, spec = arg.partition("=")
        path, _, variant = spec.partition(":")
        if path == "floor":
            path, variant = os.path.join(b.WORK, "floor.wasm"), variant or "floor"
        if variant and variant not in VARIANTS and variant not in FLOOR_VARIANTS:
            b.fail(f"unknown variant {variant!r} (known: {', '.join([*VARIANTS, *FLOOR_VARIANTS])})")
        if not label or label in labels:
            b.fail(f"{arg!r}: every build needs a label of its own (F is the floor's)")
        labels.add(label)
        builds.append((label, os.path.abspath(path), variant))
    rport = b.start_receiver()
    receiver = f"{b.RECEIVER_NAME}:{rport}"
    url = f"http://{receiver}/hook"
    plugin = b.hookgate_plugin_json(b.base_config())
    plugin["limit"] = {**plugin.get("limit", {}), "verified": [{"name": b.BENCH_NAME, "url": url}]}
    options = lambda label: {k: v(label) if callable(v) else v for k, v in envoy_options.items()}
    starts = [("F", lambda: b.Envoy("F", "F", floor_target=f"{receiver} /hook", **options("F")))]
    floors = {"F"}
    for label, path, variant in builds:
        if variant in FLOOR_VARIANTS:
            floors.add(label)
            target = f"{receiver} /hook{FLOOR_VARIANTS[variant]}"
            starts.append((label, lambda label=label, path=path, target=target: b.Envoy(
                label, "F", floor_target=target, wasm=path, **options(label))))
        else:
            starts.append((label, lambda label=label, path=path, edit=VARIANTS.get(variant): b.Envoy(
                label, "B", plugin=plugin, wasm=path, edit=edit, **options(label))))
    event = b.body_file("event.json", b.event(b.BENCH_NAME, url, variables))
    payload = b.body_file("payload.json", b.payload(variables))
    bodies = {label: (payload if label in floors else event) for label, _ in starts}
    return starts, bodies


def main():
    if len(sys.argv) < 5:
        b.fail(__doc__)
    b.require_namespace()
    rounds, seconds, variables = (int(a) for a in sys.argv[1:4])
    starts, body = setup(sys.argv[4:], variables)
    envoys = {label: start() for label, start in starts}
    for label, e in envoys.items():
        b.run(e, 1, body[label])
    cpu = {label: [] for label in envoys}
    order = list(envoys)
    for r in range(rounds):
        for label in order[r % len(order):] + order[:r % len(order)]:
            cpu[label].append(b.run(envoys[label], seconds, body[label])["cpu_us"])
        print(" ".join(f"{label} {cpu[label][-1]:.1f}" for label in order), flush=True)
    median = {label: statistics.median(v) for label, v in cpu.items()}
    print("median CPU µs/req: " + " ".join(f"{label} {v:.1f}" for label, v in median.items()))
    print("F/B: " + " ".join(f"{label} {median['F'] / v:.3f}" for label, v in median.items() if label != "F"))


if __name__ == "__main__":
    try:
        main()
    finally:
        b.cleanup()
