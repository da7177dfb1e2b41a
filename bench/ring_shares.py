#!/usr/bin/env python3
"""`make ring-report`: how evenly the Collector's loadbalancing exporter and otlp-lb spread trace ids over N sinks.

For every N in the range (default 3..16, and N+1 for the last join) the driver starts the Collector (`otelcol-lb`,
`load_balancing` exporter, static resolver, routing by traceID) and then otlp-lb, each with the first N of the same
loopback sinks as its pool, and sends the same traces through each (`otlp-lb-tools loadgen`, one span per trace, a
fixed seed, so the same trace ids every time). Each sink records the trace ids it received. From that it reports,
per balancer and N:

- largest share / mean share, measured, next to the exact figure of each ring's replay for the same endpoint
  names (`ring_report --shares`: otlp-lb's own ring, and the replay of the Collector's ring);
- the keys that moved when sink N+1 joined (the runs at N and N+1), ÷ the ideal 1/(N+1), and those that moved
  between sinks that were in both pools ("stray").

It fails (exit 1) when a trace is lost or lands on two sinks, when a replay names another sink than the real
balancer for any trace id, or when a sink's measured count is more than 5 standard deviations from the replay's
exact share (binomial sampling noise). Stdlib only; every process is stopped on exit, every wait is bounded.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from macrobench.balancers import otelcol_config, otlp_lb_config
from macrobench.measure import machine_facts
from macrobench.procs import PROCS, ROOT, free_port, http_get, log, on_sigterm, read_line, target_dir, tools_env
from macrobench.procs import wait_http_ok

MAX_Z = 5.0


class Sink:
    def __init__(self, tools, i, workdir):
        err = open(os.path.join(workdir, f"sink-{i}.log"), "wb")
        argv = [tools, "sink", "--grpc", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--name", f"sink-{i}"]
        self.proc = PROCS.start(f"sink-{i}", argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        bound = json.loads(read_line(self.proc, 20))
        self.grpc, self.admin = bound["grpc"], bound["admin"]
        wait_http_ok(f"http://{self.admin}/healthz", self.proc, self.proc.bench_name, 20)

    def report(self, ids=False):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.bench_name} exited with {self.proc.returncode}")
        _, body = http_get(f"http://{self.admin}/report" + ("?traces=1" if ids else ""), timeout=30.0)
        return json.loads(body)

    def reset(self):
        req = urllib.request.Request(f"http://{self.admin}/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5.0) as r:
            r.read()


def start_balancer(args, kind, backends, workdir, label):
    path = os.path.join(workdir, f"{label}.yaml")
    grpc, port_a, port_b = free_port(), free_port(), free_port()
    if kind == "collector":
        text = otelcol_config("traces", grpc, port_a, port_b, backends, "none")
        argv, ready = [args.otelcol, "--config", path], f"http://127.0.0.1:{port_a}/"
    else:
        text = otlp_lb_config(grpc, port_a, port_b, backends, "none")
        argv, ready = [args.otlp_lb, "-c", path], f"http://127.0.0.1:{port_b}/readyz"
    with open(path, "w") as f:
        f.write(text)
    err = open(os.path.join(workdir, f"{label}.log"), "wb")
    p = PROCS.start(label, argv, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=dict(os.environ, RUST_LOG="warn"))
    wait_http_ok(ready, p, label, 60)
    return p, f"127.0.0.1:{grpc}"


def send(args, endpoint):
    argv = [args.tools, "loadgen", "--endpoint", endpoint, "--signal", "traces", "--traces", str(args.traces),
            "--spans-per-trace", "1", "--items-per-request", "100", "--connections", "4", "--rate", str(args.rate),
            "--seed", str(args.seed), "--retry", "--report-json", "--quiet"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=args.traces / 500 + 60)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"loadgen exit {r.returncode}: {r.stderr[-2000:]}")
    rep = json.loads(lines[-1])
    if rep.get("failed_requests"):
        raise RuntimeError(f"loadgen gave up on {rep['failed_requests']} requests: {rep.get('errors')}")


def wait_delivered(sinks, total, limit_s=60.0):
    """Polls the sinks until they hold `total` spans, nothing moved for 5 s, or `limit_s` passed."""
    deadline, last, last_change = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        got = sum(s.report()["traces"]["spans"] for s in sinks)
        if got != last:
            last, last_change = got, time.monotonic()
        if got >= total or time.monotonic() - last_change > 5.0:
            return got
        time.sleep(0.2)
    return last


def run(args, kind, sinks, n, workdir):
    """Sends the traces through `kind` with the first `n` sinks as its pool; {trace id: sink index}."""
    for s in sinks:
        s.reset()
    label = f"{kind}-{n}"
    proc, endpoint = start_balancer(args, kind, [s.grpc for s in sinks[:n]], workdir, label)
    try:
        t0 = time.monotonic()
        send(args, endpoint)
        got = wait_delivered(sinks, args.traces)
        took = time.monotonic() - t0
    finally:
        PROCS.stop(proc)
    owner = {}
    for i, s in enumerate(sinks):
        for tid in s.report(ids=True).get("trace_ids", {}):
            if tid in owner:
                raise RuntimeError(f"{label}: trace {tid} reached sink-{owner[tid]} and sink-{i}")
            if i >= n:
                raise RuntimeError(f"{label}: trace {tid} reached sink-{i}, which is not in the pool")
            owner[tid] = i
    if len(owner) != args.traces:
        raise RuntimeError(f"{label}: {len(owner)} distinct trace ids of {args.traces} arrived ({got} spans)")
    log(f"{label}: {args.traces} traces in {took:.1f}s")
    return owner


def replay(args, addresses, ids):
    r = subprocess.run([args.ring_report, "--shares", ",".join(addresses)], input="\n".join(ids), text=True,
                       capture_output=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"ring_report --shares: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def compare(label, n, ids, owner, predicted, total):
    """Balance of one run against its ring's replay; the problems found."""
    counts = [0] * n
    for tid in ids:
        counts[owner[tid]] += 1
    shares = predicted["shares"]
    wrong = sum(1 for tid, p in zip(ids, predicted["owners"]) if owner[tid] != p)
    z = max(abs(c - total * s) / math.sqrt(total * s * (1 - s)) for c, s in zip(counts, shares))
    row = {"measured": max(counts) * n / total, "exact": max(shares) * n, "wrong": wrong, "z": z,
           "shares": [c / total for c in counts], "replay": shares}
    problems = []
    if wrong:
        problems.append(f"{label} N={n}: the replay names another sink for {wrong} of {total} trace ids")
    if z > MAX_Z:
        problems.append(f"{label} N={n}: a sink's count is {z:.1f} standard deviations from the replay's share")
    return row, problems


def moved(ids, before, after, joined):
    changed = [tid for tid in ids if before[tid] != after[tid]]
    stray = sum(1 for tid in changed if after[tid] != joined)
    return len(changed) / len(ids), stray / len(ids)


def table(args, results, facts, took):
    kinds = (("collector", "Collector"), ("otlp-lb", "otlp-lb"))
    env = tools_env()
    L = ["# Ring shares: the Collector's loadbalancing exporter and otlp-lb, measured", ""]
    L.append(f"`make ring-report` (`python3 bench/ring_shares.py`), {datetime.date.today()}, commit "
             f"{facts['commit']}{' (dirty)' if facts['dirty'] else ''}, {took:.0f} s. Collector `otelcol-lb` from "
             f"`make tools` (contrib {env.get('OTELCOL_CONTRIB_VERSION', '?')}). {args.traces} traces of one span, random "
             f"trace ids (seed {args.seed}), through each balancer to the first N of the same loopback sinks.")
    L.append("")
    L.append("max/mean: the largest sink's share ÷ the mean share, measured (replay: exact, for the same endpoint "
             "names). joins: keys moved when sink N+1 joins ÷ the ideal 1/(N+1); stray: share of all keys moved "
             "between sinks in both pools. max z: the sink furthest from its replayed share, in standard deviations "
             "of sampling noise. Every trace id reached the sink its ring's replay names.")
    L.append("")
    L.append("| N | Collector max/mean | replay | joins | stray | max z | otlp-lb max/mean | replay | joins | stray | max z |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.ns:
        cells = [str(n)]
        for kind, _ in kinds:
            r = results[kind][n]
            join = r["moved"]
            cells += [f"{r['measured']:.3f}", f"{r['exact']:.3f}", f"{join[0] * (n + 1):.3f}",
                      f"{join[1] * 100:.2f}%", f"{r['z']:.1f}"]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    for kind, name in kinds:
        rows = [results[kind][n] for n in args.ns]
        joins = [results[kind][n]["moved"][0] * (n + 1) for n in args.ns]
        stray = max(results[kind][n]["moved"][1] for n in args.ns)
        L.append(f"- {name}: max/mean measured {min(r['measured'] for r in rows):.3f}–"
                 f"{max(r['measured'] for r in rows):.3f} (replay exact {min(r['exact'] for r in rows):.3f}–"
                 f"{max(r['exact'] for r in rows):.3f}); joins {min(joins):.3f}–{max(joins):.3f} × ideal; stray up "
                 f"to {stray * 100:.2f}% of keys.")
    return "\n".join(L) + "\n"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.path.join(target_dir(), "release")
    p.add_argument("--otelcol", default=os.path.join(os.environ.get("TOOLS_DIR", os.path.expanduser(
        "~/.cache/otlp-lb/tools")), "bin", "otelcol-lb"), help="the Collector binary (make tools)")
    p.add_argument("--otlp-lb", default=os.path.join(target, "otlp-lb"))
    p.add_argument("--tools", default=os.path.join(target, "otlp-lb-tools"))
    p.add_argument("--ring-report", default=os.path.join(target, "examples", "ring_report"))
    p.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    p.add_argument("--min", type=int, default=3, help="smallest pool")
    p.add_argument("--max", type=int, default=16, help="largest pool (a run at max+1 measures its join)")
    p.add_argument("--traces", type=int, default=100_000, help="traces sent through each balancer per pool")
    p.add_argument("--rate", type=int, default=0, help="spans/s offered, 0 = as fast as the balancer takes them")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "ring_shares.md"), help="the report ('' = none)")
    args = p.parse_args()
    if not 1 <= args.min <= args.max or args.traces < 1000:
        p.error("need 1 <= --min <= --max and --traces >= 1000")
    args.ns = list(range(args.min, args.max + 1))
    return args


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    if not args.no_build:
        argv = ["cargo", "build", "--release", "-p", "dataplane", "--bins", "--example", "ring_report"]
        log(" ".join(argv))
        if subprocess.run(argv, cwd=ROOT, timeout=3600).returncode != 0:
            raise SystemExit("build failed")
    for path in (args.otelcol, args.otlp_lb, args.tools, args.ring_report):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"missing {path} (make tools builds otelcol-lb; drop --no-build to build the rest)")
    started, facts = time.monotonic(), machine_facts()
    workdir = tempfile.mkdtemp(prefix="ring-shares-")
    problems, results = [], {"collector": {}, "otlp-lb": {}}
    try:
        sinks = [Sink(args.tools, i, workdir) for i in range(args.max + 1)]
        owners = {"collector": {}, "otlp-lb": {}}
        ids = None
        for n in args.ns + [args.max + 1]:
            for kind in owners:
                owners[kind][n] = run(args, kind, sinks, n, workdir)
            ids = ids or sorted(owners["collector"][n])
            predicted = replay(args, [s.grpc for s in sinks[:n]], ids)
            for kind, key in (("collector", "collector"), ("otlp-lb", "otlp_lb")):
                if set(owners[kind][n]) != set(ids):
                    raise RuntimeError(f"{kind} N={n}: another set of trace ids arrived")
                row, found = compare(kind, n, ids, owners[kind][n], predicted[key], args.traces)
                problems += found
                results[kind][n] = row
                if n - 1 in results[kind]:
                    results[kind][n - 1]["moved"] = moved(ids, owners[kind][n - 1], owners[kind][n], n - 1)
                    owners[kind].pop(n - 1)
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130)
    finally:
        PROCS.stop_all()
    text = table(args, results, facts, time.monotonic() - started)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if problems:
        print("\n".join(["FAILED:"] + problems + [f"(configs and logs kept in {workdir})"]), file=sys.stderr)
        raise SystemExit(1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
