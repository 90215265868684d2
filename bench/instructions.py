#!/usr/bin/env python3
"""Envoy's instructions per request, counted by callgrind, for the floor (F) and each build given
(a B per hookgate wasm file, or a floor build): the cost of a change without the machine's noise.
CPU time per request (bench/compare.py) moves by ±15% between runs and by more while other work
runs; an instruction count moves by about 1% (B) between runs, whatever else the machine does, so
steps of a few thousand instructions (one host call) show in one run.

  bench/netns.sh bench/instructions.py SECONDS [VARIABLES] LABEL=WASM[:VARIANT] ...

SECONDS: 10 or 20. VARIABLES: the event's variables (default 10; 1000 for a 28 KB event). The
builds, variants (`fc=floor:contract`: the contract floor), receiver, event and plugin
configuration are bench/compare.py's. Each Envoy runs under valgrind's callgrind, one after the
other (counts need no alternating rounds): started uninstrumented, warmed up, then instrumented
and warmed again, counters zeroed, SECONDS of one connection sending one request at a time (no
batching of requests per wake-up, which differs with speed), counters dumped, then as long with
no request, taken off (a multiple of 10 s puts as many of the limit table's scans, one every
10 s, in both). Printed per request, by where the instructions ran: Envoy's binary (its own code
and V8's runtime), generated code (`???` to callgrind: the wasm module compiled by V8 and V8's
stubs and builtins around each call between Envoy and the VM), libc; then the ratios between the
builds (X/Y: Y's count over X's, as the bench states B/F). Instruction counts are not time (a
cache miss costs more than an add; no kernel work is counted) but follow it closely at 10
variables (B/F 0.74-0.77 in instructions, 0.69-0.83 in CPU time); at 1000 variables B/F in
instructions is lower than in CPU time (0.49-0.50 against 0.63-0.69). Needs valgrind (Debian's
package); an Envoy takes about 30 s to start under it, and serves about 100 requests a second.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import time

import bench as b
import compare

# callgrind's compressed names: `ob=(3) /path` the first time, `ob=(3)` after; a cost line is
# `<position> <instructions>`; the line after `calls=` is a call's inclusive cost (not self).
NAME = re.compile(r"^(c?ob|c?fn|c?fi|c?fe|fl|cfl)=(?:\((\d+)\))?\s*(.*)$")


def self_cost_by_object(path):
    names, by_object, obj, call_line = {}, collections.Counter(), None, False
    with open(path) as f:
        for line in f:
            m = NAME.match(line)
            if m:
                kind, ident, name = m.groups()
                if kind in ("ob", "cob"):
                    if ident and name:
                        names[ident] = name
                    if kind == "ob":
                        obj = names.get(ident, name) if ident else name
                continue
            if line.startswith("calls="):
                call_line = True
                continue
            parts = line.split()
            if len(parts) >= 2 and (line[0].isdigit() or line[0] in "+-*"):
                if call_line:
                    call_line = False
                else:
                    by_object[obj] += int(parts[1])
    return by_object


def where(obj):
    if obj == "???":
        return "generated code"
    base = os.path.basename(obj or "")
    return "Envoy" if base == "envoy" else "libc" if base.startswith("libc.") else "other"


def dumped(envoy):
    """Self costs by where they ran, from the latest callgrind dump."""
    dumps = sorted((f for f in os.listdir(envoy.dir) if f.startswith("callgrind.out.")),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    if not dumps:
        b.fail(f"no callgrind dump in {envoy.dir}")
    cost = collections.Counter()
    for obj, n in self_cost_by_object(os.path.join(envoy.dir, dumps[-1])).items():
        cost[where(obj)] += n
    return cost


def measure(envoy, seconds, body):
    """Instructions per request by where they ran, and the request count. What the Envoy does
    by the clock whether requests come or not (hookgate's tick, the limit table's scan every 10 s,
    Envoy's overload manager and stats) is counted over as long with no request and taken off:
    under callgrind it would fall on a hundred times fewer requests than at full speed."""
    b.run(envoy, 5, body)  # uninstrumented: V8 compiles, connections open
    pid = str(envoy.proc.pid)
    control = lambda *args: subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)
    control("-i", "on")
    b.run(envoy, 2, body, connections=1)
    control("-z")
    r = b.run(envoy, seconds, body, connections=1)
    control("-d")
    busy = dumped(envoy)
    control("-z")
    time.sleep(seconds)
    control("-d")
    idle = dumped(envoy)
    return {k: (busy[k] - idle[k]) / r["requests"] for k in busy}, r["requests"]


def main():
    if len(sys.argv) < 3:
        b.fail(__doc__)
    if not shutil.which("valgrind"):
        b.fail("valgrind not found (apt-get install valgrind)")
    b.require_namespace()
    seconds = int(sys.argv[1])
    variables = int(sys.argv[2]) if sys.argv[2].isdigit() else 10
    builds = sys.argv[3:] if sys.argv[2].isdigit() else sys.argv[2:]
    if not builds:
        b.fail(__doc__)
    starts, bodies = compare.setup(builds, variables, wrap=lambda label: [
        "valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
        f"--callgrind-out-file={os.path.join(b.WORK, label, 'callgrind.out')}"], start_s=600)
    parts = ("Envoy", "generated code", "libc", "other")
    counts = {}
    for label, start in starts:
        envoy = start()
        counts[label], n = measure(envoy, seconds, bodies[label])
        envoy.stop()
        total = sum(counts[label].values())
        split = ", ".join(f"{p} {counts[label].get(p, 0):,.0f}" for p in parts)
        over = f" ({total - sum(counts['F'].values()):+,.0f} against F)" if label != "F" else ""
        print(f"{label}: {total:,.0f} instructions a request{over}: {split}; {n} requests", flush=True)
    # As the bench states B/F: the cheaper build's count over the dearer's (a throughput ratio).
    totals = {label: sum(c.values()) for label, c in counts.items()}
    print(f"{variables} variables; ratios X/Y (Y's instructions over X's): " + "; ".join(
        f"{x}/{y} {totals[y] / totals[x]:.3f}" for x in totals for y in totals if totals[y] < totals[x]))


if __name__ == "__main__":
    try:
        main()
    finally:
        b.cleanup()
