#!/usr/bin/env python3
"""`make bench`: otlp-lb against the OpenTelemetry Collector's loadbalancing exporter, same workload, same sinks.

For each signal (traces routed by traceID, metrics routed by service) and each balancer (the Collector, otlp-lb,
and otlp-lb in front of a single sink as a pass-through baseline) the driver starts the balancer pinned to one
core, sweeps offered rates with `otlp-lb-tools loadgen` (pinned with the sinks to the other core), and per step
measures the balancer's CPU time (its process CPU-time clock, all threads), what reached the sinks (their /report),
the client's rate, errors and latency. Then it runs half of the Collector's capacity against both balancers for
latency, runs the criterion micro-benchmarks, optionally profiles otlp-lb under callgrind and samples it with
perf at a light load, and writes bench/results.md. See bench/README.md.

Stdlib only. Every process started here is killed on exit, error or Ctrl-C; every wait is bounded.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_RATES = "5000,10000,20000,40000,80000,160000,320000,0"
ITEM = {"traces": "spans", "metrics": "data points"}
SINK_FIELD = {"traces": ("traces", "spans"), "metrics": ("metrics", "data_points")}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Procs:
    """Every child process, so that all of them are stopped on the way out."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, **kw):
        # With a raised priority, each child gets a session (so its own scheduler autogroup) whose niceness is
        # raised too: with autogroups, niceness only orders processes within a group, and the machine's other
        # work sits in other groups.
        p = subprocess.Popen(argv, start_new_session=bool(NICE[0]), **kw)
        p.bench_name = name
        self.procs.append(p)
        if NICE[0]:
            try:
                with open(f"/proc/{p.pid}/autogroup", "w") as f:
                    f.write(str(NICE[0]))
            except OSError:
                pass
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=10.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log(f"{p.bench_name} (pid {p.pid}) did not exit after SIGKILL")
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p, grace=5.0)


PROCS = Procs()
NICE = [0]


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


# ---------------------------------------------------------------------------------------------------------------
# Small helpers: ports, /proc, HTTP


USED_PORTS = set()


def free_port():
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in USED_PORTS:
            USED_PORTS.add(port)
            return port
    raise RuntimeError("no free loopback port")


def cpu_seconds(pid):
    """CPU time of the whole process (all its threads, exited ones included), in seconds: its CPU-time clock
    (clock_getcpuclockid's id for `pid`, in nanoseconds); utime + stime from /proc/<pid>/stat, in ticks, where
    that clock cannot be read."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # the kernel's process CPU clock id: CPUCLOCK_SCHED of pid
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_ticks():
    """{cpu index: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out[int(name[3:])] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def core_busy(before, after, cpu):
    """Fraction of `cpu` busy (any process) between two cpu_ticks() readings."""
    if cpu not in before or cpu not in after:
        return float("nan")
    busy, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
    return busy / total if total > 0 else float("nan")


def written_bytes(pid):
    """Bytes the process has passed to write system calls (/proc/<pid>/io `wchar`): a balancer's exports to its
    backends, its replies to clients and its log lines."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http_ok(url, proc, what, deadline_s):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready at {url} after {deadline_s:.0f}s")


def read_line(proc, deadline_s):
    """The first line a child prints on stdout, waiting at most `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode()
        elif proc.poll() is not None:
            break
    raise RuntimeError(f"{proc.bench_name}: no start-up line (exit {proc.poll()})")


def taskset(cpu, argv):
    """Pins `argv` to `cpu` and, when allowed, raises its priority above the machine's other work."""
    prefix = ["nice", "-n", str(NICE[0])] if NICE[0] else []
    return prefix + (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv


# ---------------------------------------------------------------------------------------------------------------
# Sinks


class Sinks:
    def __init__(self, tools, n, cpu, workdir):
        self.sinks = []
        for i in range(n):
            err = open(os.path.join(workdir, f"sink-{i}.log"), "wb")
            argv = taskset(cpu, [tools, "sink", "--no-ids", "--grpc", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                                 "--name", f"sink-{i}"])
            p = PROCS.start(f"sink-{i}", argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
            bound = json.loads(read_line(p, 20))
            self.sinks.append({"proc": p, "grpc": bound["grpc"], "admin": bound["admin"]})
            USED_PORTS.add(int(bound["grpc"].rsplit(":", 1)[1]))
            USED_PORTS.add(int(bound["admin"].rsplit(":", 1)[1]))
        for s in self.sinks:
            wait_http_ok(f"http://{s['admin']}/healthz", s["proc"], "sink", 20)

    def addresses(self, n=None):
        return [s["grpc"] for s in self.sinks[: n or len(self.sinks)]]

    def pids(self):
        return [s["proc"].pid for s in self.sinks]

    def counts(self, signal_name):
        """Items of `signal_name` received, and requests refused or malformed, summed over the sinks."""
        group, field = SINK_FIELD[signal_name]
        items, bad = 0, 0
        per = []
        for s in self.sinks:
            if s["proc"].poll() is not None:
                raise RuntimeError(f"{s['proc'].bench_name} exited with {s['proc'].returncode}")
            _, body = http_get(f"http://{s['admin']}/report", timeout=5.0)
            r = json.loads(body)
            items += r[group][field]
            per.append(r[group][field])
            bad += sum(r.get("rejected_requests", {}).values()) + r.get("malformed_requests", 0)
        return items, bad, per

    def cpu(self):
        return sum(cpu_seconds(pid) for pid in self.pids())


# ---------------------------------------------------------------------------------------------------------------
# Balancers


def otlp_lb_config(grpc, http, telemetry, backends, compression, coalesce=True, level=None):
    hosts = ", ".join(backends)
    queue = "" if coalesce else ", sending_queue: {coalesce: {enabled: false}}"
    queue += "" if level is None else f", compression_params: {{level: {level}}}"
    return f"""# generated by bench/macro.py
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
loadbalancing:
  protocol:
    otlp: {{compression: {compression}, tls: {{insecure: true}}{queue}}}
  resolver:
    static: {{hostnames: [{hosts}]}}
routing:
  traces: traceID
  metrics: service
telemetry:
  metrics: {{address: 127.0.0.1:{telemetry}}}
"""


def otelcol_config(signal_name, grpc, health, metrics_port, backends, compression):
    routing = "traceID" if signal_name == "traces" else "service"
    hosts = "\n".join(f"          - {b}" for b in backends)
    comp = "" if compression == "gzip" else f"\n        compression: {compression}"
    return f"""# generated by bench/macro.py
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  load_balancing:
    routing_key: {routing}
    protocol:
      otlp:
        tls:
          insecure: true{comp}
    resolver:
      static:
        hostnames:
{hosts}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    {signal_name}:
      receivers: [otlp]
      exporters: [load_balancing]
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
"""


class Balancer:
    """A balancer process under test: otlp-lb or the Collector."""

    def __init__(self, kind, label, proc, endpoint, config_text):
        self.kind, self.label, self.proc, self.endpoint, self.config_text = kind, label, proc, endpoint, config_text

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None


def start_otlp_lb(args, workdir, label, backends, wrap=None, ready_s=30, compression=None, coalesce=True,
                  level=None):
    grpc, http, tele = free_port(), free_port(), free_port()
    text = otlp_lb_config(grpc, http, tele, backends, compression or args.compression, coalesce, level)
    path = os.path.join(workdir, f"{label}.yaml")
    with open(path, "w") as f:
        f.write(text)
    argv = taskset(args.lb_cpu, (wrap or []) + [args.otlp_lb, "-c", path])
    err = open(os.path.join(workdir, f"{label}.log"), "wb")
    p = PROCS.start(label, argv, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=dict(os.environ, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "warn")))
    wait_http_ok(f"http://127.0.0.1:{tele}/readyz", p, label, ready_s)
    return Balancer("otlp-lb", label, p, f"127.0.0.1:{grpc}", text)


def start_otelcol(args, workdir, label, signal_name, backends, compression=None):
    grpc, health, mport = free_port(), free_port(), free_port()
    text = otelcol_config(signal_name, grpc, health, mport, backends, compression or args.compression)
    path = os.path.join(workdir, f"{label}.yaml")
    with open(path, "w") as f:
        f.write(text)
    argv = taskset(args.lb_cpu, [args.otelcol, "--config", path])
    err = open(os.path.join(workdir, f"{label}.log"), "wb")
    p = PROCS.start(label, argv, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_http_ok(f"http://127.0.0.1:{health}/", p, label, 60)
    return Balancer("otelcol", label, p, f"127.0.0.1:{grpc}", text)


# ---------------------------------------------------------------------------------------------------------------
# Load and measurement


def loadgen(args, endpoint, signal_name, rate, duration_s=None, requests=None, connections=None, seed=None,
            limit_s=None):
    """Runs loadgen to completion; returns (report dict, loadgen CPU seconds)."""
    argv = [args.tools, "loadgen", "--endpoint", endpoint, "--signal", signal_name,
            "--rate", str(int(rate)), "--spans-per-trace", str(args.spans_per_trace),
            "--items-per-request", str(args.items_per_request), "--connections", str(connections or args.connections),
            "--report-json", "--quiet", "--seed", str(seed if seed is not None else 42)]
    if duration_s is not None:
        argv += ["--duration", f"{duration_s}s"]
    if requests is not None:
        argv += ["--requests", str(requests)]
    limit = limit_s or (duration_s or 0) + 60 + (requests or 0) / 50
    p = PROCS.start("loadgen", taskset(args.load_cpu, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    out, err = b"", b""
    rusage = None
    try:
        while time.monotonic() < deadline:
            # Drain the pipes so loadgen never blocks on a full one.
            ready, _, _ = select.select([p.stdout.fileno(), p.stderr.fileno()], [], [], 0.1)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if fd == p.stdout.fileno():
                    out += chunk
                else:
                    err += chunk
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                rusage = ru
                break
        else:
            raise RuntimeError(f"loadgen still running after {limit:.0f}s")
        for stream, acc in ((p.stdout, "out"), (p.stderr, "err")):
            rest = stream.read() or b""
            if acc == "out":
                out += rest
            else:
                err += rest
    finally:
        PROCS.stop(p, grace=2)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no report (exit {p.returncode}): {err.decode(errors='replace')[-2000:]}")
    cpu = (rusage.ru_utime + rusage.ru_stime) if rusage else 0.0
    return json.loads(lines[-1]), cpu


def settle(sinks, signal_name, target, settle_max_s, quiet_s=1.0):
    """Polls the sinks until they hold `target` items, or nothing moved for `quiet_s`, or `settle_max_s` passed."""
    deadline = time.monotonic() + settle_max_s
    last, last_change = None, time.monotonic()
    while True:
        items, bad, per = sinks.counts(signal_name)
        now = time.monotonic()
        if items != last:
            last, last_change = items, now
        if items >= target and now - last_change >= 0.2:
            return items, bad, per
        if now - last_change >= quiet_s and items < target:
            return items, bad, per
        if now >= deadline:
            return items, bad, per
        time.sleep(0.1)


def step(args, bal, sinks, signal_name, rate, duration_s, kind="sweep", connections=None):
    if not bal.alive():
        raise RuntimeError(f"{bal.label} exited with {bal.proc.returncode}")
    base_items, base_bad, _ = sinks.counts(signal_name)
    cpu0, sinks_cpu0, t0, ticks0 = cpu_seconds(bal.pid), sinks.cpu(), time.monotonic(), cpu_ticks()
    written0 = written_bytes(bal.pid)
    rep, load_cpu = loadgen(args, bal.endpoint, signal_name, rate, duration_s=duration_s, connections=connections)
    t1 = time.monotonic()
    cpu1, sinks_cpu1, ticks1 = cpu_seconds(bal.pid), sinks.cpu(), cpu_ticks()
    win_items, _, _ = sinks.counts(signal_name)
    acked = rep["sent_items"]
    final_items, bad, per = settle(sinks, signal_name, base_items + acked, args.settle_max)
    cpu2, written2 = cpu_seconds(bal.pid), written_bytes(bal.pid)
    hwm = vm_hwm_kib(bal.pid)  # the peak so far: the sweep climbs, so this is the peak up to this rate
    elapsed = max(rep["elapsed_s"], 1e-6)
    delivered = final_items - base_items
    errors = sum(rep["errors"].values()) + rep["failed_requests"]
    client_rate = rep["items_per_s"]
    window_rate = (win_items - base_items) / elapsed
    wall = max(t1 - t0, 1e-6)
    res = {
        "kind": kind,
        "offered": rate,
        "client_rate": client_rate,
        "window_rate": window_rate,
        "sustained_rate": min(client_rate, window_rate),
        "acked": acked,
        "failed_items": rep["failed_items"],
        "delivered": delivered,
        "lost": max(acked - delivered, 0),
        "extra": max(delivered - acked, 0),
        "sink_refusals": bad - base_bad,
        "errors": errors,
        "error_kinds": rep["errors"],
        "p50_ms": rep["p50_ms"],
        "p99_ms": rep["p99_ms"],
        "max_ms": rep["max_ms"],
        "lb_cpu_s": cpu2 - cpu0,
        "lb_util": (cpu1 - cpu0) / wall,
        "load_util": ((sinks_cpu1 - sinks_cpu0) + load_cpu) / wall,
        "lb_core_busy": core_busy(ticks0, ticks1, args.lb_cpu),
        "load_core_busy": core_busy(ticks0, ticks1, args.load_cpu),
        "items_per_cpu_s": delivered / (cpu2 - cpu0) if cpu2 > cpu0 else float("nan"),
        "written": written2 - written0,
        "per_sink": [p for p in per],
        "elapsed_s": elapsed,
        "connections": connections or args.connections,
        "vm_hwm_kib": hwm,
    }
    ok_rate = rate == 0 or res["sustained_rate"] >= args.pass_fraction * rate
    res["clean"] = errors == 0 and res["lost"] == 0 and res["sink_refusals"] == 0
    res["pass"] = res["clean"] and ok_rate
    log(f"  {bal.label:<22} {fmt_rate(rate):>9} offered: client {client_rate:9.0f}/s, sinks {window_rate:9.0f}/s, "
        f"delivered {delivered}/{acked} acked, errors {errors}, lb cpu {res['lb_util'] * 100:5.1f}% "
        f"(core {res['lb_core_busy'] * 100:3.0f}% busy), "
        f"load cpu {res['load_util'] * 100:5.1f}%, {res['items_per_cpu_s']:9.0f} {ITEM[signal_name]}/cpu-s, "
        f"p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms{'' if res['pass'] else '  <- stop'}")
    return res


def warm_up(args, bal, sinks, signal_name):
    """A short unmeasured run so that connections exist and allocators and the Go heap are warm."""
    loadgen(args, bal.endpoint, signal_name, 5000, duration_s=1)
    settle(sinks, signal_name, 1 << 62, 5.0, quiet_s=0.5)


def sweep_connections(args, rate):
    """Connections for an offered rate: enough that each may take 1/`rate_per_connection` s per item's worth of
    requests, few enough that loadgen's synchronised start stays a small burst; all of them when unlimited."""
    if rate == 0:
        return args.connections
    return max(args.min_connections, min(args.connections, -(-int(rate) // args.rate_per_connection)))


def step_seconds(args, rate):
    """A sweep step's duration: `--step-seconds`, longer at low rates so that every step carries at least
    `--step-items` (a light step's CPU time is a few tens of milliseconds: the longer step averages more noise)."""
    if rate == 0:
        return args.step_seconds
    return max(args.step_seconds, -(-args.step_items // int(rate)))


def sweep(args, bal, sinks, signal_name, rates):
    steps = []
    for rate in rates:
        r = step(args, bal, sinks, signal_name, rate, step_seconds(args, rate),
                 connections=sweep_connections(args, rate))
        steps.append(r)
        if not r["pass"]:
            break
    return steps


def capacity(steps):
    """The highest rate a step delivered with no error, refusal or loss (0 when none did)."""
    clean = [s["sustained_rate"] for s in steps if s["clean"]]
    return max(clean) if clean else 0.0


def run_balancer(args, workdir, sinks, signal_name, kind, rates, latency_rate=None, backends=4, compression=None,
                 coalesce=True, level=None):
    compression = compression or args.compression
    label = f"{kind}-{signal_name}" + ("-passthrough" if backends == 1 else "") + \
        ("" if compression == args.compression else f"-{compression}") + ("" if coalesce else "-no-coalescing") + \
        ("" if level is None else f"-level-{level}")
    log(f"{label}: start ({backends} backend{'s' if backends > 1 else ''}, exporter compression {compression})")
    if kind == "otelcol":
        bal = start_otelcol(args, workdir, label, signal_name, sinks.addresses(backends), compression)
    else:
        bal = start_otlp_lb(args, workdir, label, sinks.addresses(backends), compression=compression, coalesce=coalesce,
                            level=level)
    try:
        warm_up(args, bal, sinks, signal_name)
        steps = sweep(args, bal, sinks, signal_name, rates)
        cap = capacity(steps)
        lat = None
        if latency_rate is None and kind == "otelcol":
            # Half the Collector's capacity; if no step was clean, half the lowest offered rate.
            latency_rate = cap / 2 if cap > 0 else min([r for r in rates if r > 0] or [10000]) / 2
        if latency_rate:
            lat = step(args, bal, sinks, signal_name, latency_rate, args.latency_seconds, kind="latency",
                       connections=args.latency_connections)
        hwm = vm_hwm_kib(bal.pid)
        return {"label": label, "kind": kind, "signal": signal_name, "backends": backends, "steps": steps,
                "compression": compression, "coalesce": coalesce, "level": level,
                "capacity": cap, "latency": lat, "latency_rate": latency_rate, "vm_hwm_kib": hwm,
                "config": bal.config_text}
    finally:
        PROCS.stop(bal.proc, grace=25)


# ---------------------------------------------------------------------------------------------------------------
# Criterion and callgrind


def criterion(args, workdir):
    home = os.path.join(workdir, "criterion")
    env = dict(os.environ, CRITERION_HOME=home)
    argv = ["cargo", "bench", "-p", "dataplane", "--bench", "route", "--bench", "codec", "--",
            "--warm-up-time", "1", "--measurement-time", "3", "--noplot"]
    log("criterion: " + " ".join(argv))
    # On the balancer's core, with the same priority as the balancers: micro-benchmarks are as noisy as the rest.
    with open(os.path.join(workdir, "criterion.log"), "wb") as out:
        p = PROCS.start("cargo bench", taskset(args.lb_cpu, argv), cwd=ROOT, env=env, stdout=out,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            p.wait(timeout=1200)
        finally:
            PROCS.stop(p)
    if p.returncode != 0:
        raise RuntimeError(f"cargo bench failed (exit {p.returncode}), see {workdir}/criterion.log")
    results = []
    for est in sorted(glob.glob(os.path.join(home, "*", "*", "new", "estimates.json"))):
        d = os.path.dirname(est)
        with open(est) as f:
            e = json.load(f)
        with open(os.path.join(d, "benchmark.json")) as f:
            b = json.load(f)
        elems = (b.get("throughput") or {}).get("Elements") or 1
        ns = e["mean"]["point_estimate"]
        lo, hi = e["mean"]["confidence_interval"]["lower_bound"], e["mean"]["confidence_interval"]["upper_bound"]
        results.append({"id": b.get("full_id") or f"{b['group_id']}/{b['function_id']}", "elements": elems,
                        "ns_iter": ns, "ns_elem": ns / elems, "ns_elem_lo": lo / elems, "ns_elem_hi": hi / elems})
    return results


def profile(args, workdir, sinks, compression):
    """otlp-lb under callgrind, traces over 4 sinks, a fixed load; start-up excluded."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        log("profile: valgrind not installed (apt-get install -y valgrind); skipped")
        return None
    out_dir = os.path.join(workdir, f"callgrind-{compression}")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "callgrind.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no"]
    log(f"profile: otlp-lb under callgrind, exporter compression {compression}, {args.profile_requests} "
        f"requests of traces at {args.profile_rate} spans/s")
    bal = start_otlp_lb(args, workdir, f"otlp-lb-callgrind-{compression}", sinks.addresses(4), wrap=wrap,
                        ready_s=300, compression=compression)
    try:
        loadgen(args, bal.endpoint, "traces", 2000, requests=40, connections=4, seed=7, limit_s=300)  # warm up
        r = subprocess.run(["callgrind_control", "-i", "on", str(bal.pid)], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"callgrind_control -i on failed: {r.stdout!r} {r.stderr!r}")
        base, _, _ = sinks.counts("traces")
        # Under callgrind otlp-lb runs some 50 times slower: allow for it.
        rep, _ = loadgen(args, bal.endpoint, "traces", args.profile_rate, requests=args.profile_requests,
                         connections=4, seed=9, limit_s=900)
        settle(sinks, "traces", base + rep["sent_items"], 30)
        subprocess.run(["callgrind_control", "-i", "off", str(bal.pid)], capture_output=True, timeout=60)
    finally:
        PROCS.stop(bal.proc, grace=120)
    files = [f for f in glob.glob(out + "*") if os.path.getsize(f) > 0]
    if not files:
        log("profile: no callgrind output")
        return None
    data = max(files, key=os.path.getsize)
    texts = {}
    for inclusive in ("no", "yes"):
        r = subprocess.run(["callgrind_annotate", f"--inclusive={inclusive}", "--threshold=100", "--auto=no", data],
                           capture_output=True, text=True, timeout=300)
        texts[inclusive] = r.stdout
    return {"compression": compression, "requests": rep["sent_requests"], "spans": rep["sent_items"],
            "errors": sum(rep["errors"].values()), "self": texts["no"], "inclusive": texts["yes"]}


# Samples per CPU-second: at a light load otlp-lb uses a few percent of a core, so a lower rate leaves too few samples
# for the heaviest functions to stand apart (about 0.15 CPU-s in 10 s at 5k spans/s).
PERF_HZ = 4999


def perf_record(args, workdir, sinks, label, perf_args, rate, seconds, connections):
    """Runs otlp-lb (traces over 4 sinks, the default compression), warms it up, then records it with `perf record
    <perf_args> -p` while loadgen offers `rate` (0: unlimited) for `seconds`. Returns (loadgen report, otlp-lb's
    CPU seconds during the recording)."""
    bal = start_otlp_lb(args, workdir, label, sinks.addresses(4))
    try:
        loadgen(args, bal.endpoint, "traces", rate, requests=40, connections=4, seed=7)  # warm up
        rec = PROCS.start("perf", ["perf", "record", *perf_args, "-p", str(bal.pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        cpu0 = cpu_seconds(bal.pid)
        rep, _ = loadgen(args, bal.endpoint, "traces", rate, duration_s=seconds, connections=connections, seed=11)
        cpu = cpu_seconds(bal.pid) - cpu0
        PROCS.stop(rec, sig=signal.SIGINT, grace=60)
    finally:
        PROCS.stop(bal.proc)
    return rep, cpu


def perf_profile(args, workdir, sinks):
    """Where otlp-lb's CPU time goes at a light load, the kernel included (callgrind sees user space only):
    `perf record` of the running process (sampling; user and kernel), traces over 4 sinks with the default
    compression."""
    if not shutil.which("perf"):
        log("perf profile: perf not installed; skipped")
        return None
    data = os.path.join(workdir, "perf.data")
    rate, seconds = args.perf_rate, args.perf_seconds
    log(f"perf profile: otlp-lb, traces at {rate} spans/s for {seconds}s")
    rep, cpu = perf_record(args, workdir, sinks, "otlp-lb-perf", ["-F", str(PERF_HZ), "-o", data], rate, seconds, 4)
    report = {}
    for key in ("dso", "dso,sym"):
        r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", key, "--stdio", "-g", "none"],
                           capture_output=True, text=True, timeout=300)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"^\s*([\d.]+)%\s+(\S+)(?:\s+\[[.k]\]\s+(.*?))?\s*$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), clean_symbol(m.group(3) or "")))
        report[key] = rows
    if not report["dso"]:
        log("perf profile: no samples (perf_event_paranoid?)")
        return None
    r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "-n", "--stdio",
                        "-g", "none"], capture_output=True, text=True, timeout=300)
    samples = sum(int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+%\s+(\d+)\s", r.stdout, re.M))
    return {"rate": rate, "seconds": seconds, "requests": rep["sent_requests"], "spans": rep["sent_items"],
            "cpu_s": cpu, "samples": samples, "dso": report["dso"], "sym": report["dso,sym"][:30]}


def inferno_tools():
    """The two inferno binaries (collapse perf's stacks, draw the SVG), or None."""
    bin_dir = os.path.join(os.environ.get("TOOLS_DIR", os.path.expanduser("~/.cache/otlp-lb/tools")), "bin")
    found = [shutil.which(t) or os.path.join(bin_dir, t) for t in ("inferno-collapse-perf", "inferno-flamegraph")]
    return found if all(os.access(t, os.X_OK) for t in found) else None


def flamegraphs(args, workdir, sinks):
    """Flame graphs of otlp-lb from perf's call stacks (DWARF unwinding; user and kernel), traces over 4 sinks with
    the default compression: at the light load of the perf profile and at saturation. Written beside the report."""
    tools = inferno_tools()
    if not shutil.which("perf") or tools is None:
        log("flame graphs: perf or inferno (make bench installs it into TOOLS_DIR) not found; skipped")
        return []
    out = []
    # At a light load otlp-lb runs a few percent of the time: sample it more often to get a few hundred stacks.
    for name, rate, conns, seconds, hz in (("light", args.perf_rate, 4, 10, 1999),
                                           ("saturation", 0, args.connections, 5, 499)):
        data = os.path.join(workdir, f"flame-{name}.data")
        rep, _ = perf_record(args, workdir, sinks, f"otlp-lb-flame-{name}",
                             ["-F", str(hz), "--call-graph", "dwarf,65528", "-o", data], rate, seconds, conns)
        script = subprocess.run(["perf", "script", "-i", data], capture_output=True, timeout=900, check=True)
        folded = subprocess.run([tools[0]], input=script.stdout, capture_output=True, timeout=300, check=True)
        load = f"{fmt_rate(rate)} spans/s" if rate else f"unlimited rate over {conns} connections"
        title = (f"otlp-lb, traces at {load}, gzip to 4 sinks, one core ({rep['sent_requests']} requests in "
                 f"{seconds}s, {hz} samples per CPU-second)")
        path = os.path.join(os.path.dirname(os.path.abspath(args.out)), f"flamegraph-{name}.svg")
        with open(path, "wb") as f:
            subprocess.run([tools[1], "--title", title, "--minwidth", "0.2", "--hash"], input=folded.stdout,
                           stdout=f, timeout=300, check=True)
        log(f"flame graph: {path}")
        out.append({"name": name, "file": os.path.basename(path), "title": title})
    return out


def annotate_rows(annotate_text):
    """(total, [(instructions, function)]) of callgrind_annotate output, file parts dropped."""
    rows, total = [], None
    for line in annotate_text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*?)\s*$", line)
        if m is None:
            continue
        ir, fn = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in fn:
            total = ir
            continue
        if not fn or fn.startswith("file:function"):
            continue
        rows.append((ir, clean_symbol(fn)))
    return total, rows


def top_functions(annotate_text, n, merge):
    """The `n` heaviest functions; inlined copies of one function are summed (self) or the largest kept
    (inclusive)."""
    total, rows = annotate_rows(annotate_text)
    by_name = {}
    for ir, fn in rows:
        by_name[fn] = (by_name.get(fn, 0) + ir) if merge == "sum" else max(by_name.get(fn, 0), ir)
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:n]
    return total, [(ir, 100.0 * ir / total if total else 0.0, fn) for fn, ir in top]


ATTRIBUTION = [
    ("request framing and compression (`export::grpc::frame`, libdeflate gzip, one compressor per thread)",
     "dataplane::export::grpc::frame"),
    ("gRPC message compression in tonic (replies to clients that accept it; flate2 with zlib-rs, one encoder per "
     "message)", "tonic::codec::compression::compress"),
    ("compressor set-up (`flate2::mem::Compress::new`)", "flate2::mem::Compress::new"),
    ("gRPC message decompression (tonic)", "tonic::codec::compression::decompress"),
    ("receiving: `GrpcReceiver::call` (tonic server unary path, incl. the pipeline)",
     "<dataplane::receive::grpc::GrpcReceiver as tower_service::Service"),
    ("  `Pipeline::export` (admit, split, deliver, answer)",
     ("dataplane::pipeline::Pipeline::export", "dataplane::pipeline::Pipeline::route_and_deliver")),
    ("    routing: `split::split` (walk, keys, ring, affinity, assemble parts)", "dataplane::route::split::split"),
    ("      of which trace affinity (`Affinity::first_seen`)", "dataplane::route::affinity::Affinity::first_seen"),
    ("    `Backend::export` (a part joins its backend's queue)", "dataplane::export::backend::Backend::export"),
    ("sending: `Backend::send` (one HTTP/2 call per request of coalesced parts, incl. framing and compressing its body)",
     "dataplane::export::backend::Backend::send"),
    ("h2 frame reading (`FramedRead::poll_next`)", "<h2::codec::framed_read::FramedRead"),
    ("h2 frame writing (`framed_write::Encoder::buffer`)", "h2::codec::framed_write::Encoder"),
    ("malloc / free / realloc (self)", None),
]


def attribution(prof):
    total, rows = annotate_rows(prof["inclusive"])
    _, self_rows = annotate_rows(prof["self"])
    out = []
    for label, prefix in ATTRIBUTION:
        if prefix is None:
            ir = sum(i for i, fn in self_rows if fn in ("malloc", "free", "realloc", "calloc", "_int_malloc",
                                                      "_int_free", "_int_realloc", "malloc_consolidate",
                                                      "_int_free_merge_chunk", "_int_free_create_chunk",
                                                      "unlink_chunk", "cfree", "__libc_free", "__libc_malloc"))
        else:
            prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
            ir = max([i for i, fn in rows if fn.startswith(prefixes)] or [0])
        if ir == 0 and prefix is not None and "compression" not in label:
            continue  # inlined away in this build
        out.append((label, ir, 100.0 * ir / total if total else 0.0))
    return total, out


def perf_section(perf):
    """The perf profile: CPU time by object (kernel, otlp-lb, libc) and the heaviest functions."""
    per_req = perf["cpu_s"] / perf["requests"] * 1e3 if perf["requests"] else 0.0
    L = ["### CPU time at a light load, the kernel included (perf)", "",
         f"otlp-lb as in the sweep (release build, pinned to one core, gzip to 4 sinks), sampled with `perf record -F "
         f"{PERF_HZ} -p` for {perf['seconds']}s of traces at {perf['rate']:,} spans/s after a warm-up: {perf['requests']} "
         f"requests, {perf['cpu_s']:.2f} CPU-s ({per_req:.2f} ms per 100-span request), "
         f"{perf.get('samples', 0):,} samples. Samples are CPU time, so "
         f"unlike the instruction counts above they include the kernel (the system calls and the loopback TCP "
         f"that the sending side processes) and cache misses.", "",
         "| object | share of samples |", "|---|---:|"]
    L += [f"| `{dso}` | {share:.1f}% |" for share, dso, _ in perf["dso"]]
    L += ["", "| # | share | object | function |", "|---:|---:|---|---|"]
    L += [f"| {i} | {share:.1f}% | `{dso}` | `{fn}` |" for i, (share, dso, fn) in enumerate(perf["sym"], 1)]
    flames = perf.get("flamegraphs") or []
    if flames:
        L += ["", "Flame graphs (perf call stacks unwound with DWARF; open the SVG in a browser to zoom and search): " + "; ".join(f"[{f['name']}]({f['file']}): {f['title']}" for f in flames) + "."]
    return L + [""]


def clean_symbol(fn):
    """Drops the file part (a build path) that callgrind_annotate prints before the function."""
    fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", fn)
    if ":" in fn:
        head, tail = fn.split(":", 1)
        if "/" in head or head.startswith("???") or head.endswith((".rs", ".c", ".h", ".S", ".s")):
            fn = tail
    fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
    return fn if len(fn) <= 150 else fn[:147] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Report


def fmt_rate(r):
    if r == 0:
        return "unlimited"
    return f"{r / 1000:.0f}k" if r >= 1000 else f"{r:.0f}"


def fmt_num(x, digits=0):
    if x is None or x != x:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    return a / b if a and b and a == a and b == b else float("nan")


def tools_env():
    out = {}
    try:
        with open(os.path.join(ROOT, "e2e", "tools.env")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    out[k] = v
    except OSError:
        pass
    return out


def machine_facts():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"cores": os.cpu_count(), "model": model, "mem": mem, "kernel": platform.release(),
            "rustc": cmd(["rustc", "--version"]),
            "commit": os.environ.get("BENCH_COMMIT") or cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
            or "unknown",
            "dirty": bool(cmd(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])),
            "loadavg": load_average()}


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return ["?"]


def pick(runs, kind, signal_name, backends=4, compression=None, coalesce=True, level=None):
    for r in runs:
        if r["kind"] == kind and r["signal"] == signal_name and r["backends"] == backends and \
                (compression is None or r.get("compression") == compression) and r.get("coalesce", True) == coalesce \
                and r.get("level") == level:
            return r
    return None


def summary_rows(runs, signal_name, compression, peer=None, names=("otlp-lb", "Collector")):
    """otlp-lb against the Collector (or against `peer`, another otlp-lb run, without the pass-through rows)."""
    lb, col = pick(runs, "otlp-lb", signal_name, 4, compression), peer or pick(runs, "otelcol", signal_name, 4, compression)
    pt = None if peer else pick(runs, "otlp-lb", signal_name, 1, compression)
    item = ITEM[signal_name]
    if not lb and not col:
        return [], float("nan"), float("nan")

    def sat(r):
        """Items per CPU-second at the highest clean step."""
        clean = [s for s in r["steps"] if s["clean"]] if r else []
        return max(clean, key=lambda s: s["sustained_rate"])["items_per_cpu_s"] if clean else float("nan")

    def lat(r, key):
        return r["latency"][key] if r and r.get("latency") else float("nan")

    def eq(r):
        return r["latency"]["items_per_cpu_s"] if r and r.get("latency") else float("nan")

    # The steps both ran at the same offered rate and both passed, plus the common-rate step: equal load.
    common = sorted({s["offered"] for s in (lb["steps"] if lb else []) if s["pass"] and s["offered"] > 0} &
                    {s["offered"] for s in (col["steps"] if col else []) if s["pass"] and s["offered"] > 0})

    def equal_load(r):
        return [s for s in r["steps"] if s["offered"] in common] + ([r["latency"]] if r.get("latency") else [])

    def pooled(r):
        steps = equal_load(r) if r else []
        cpu = sum(s["lb_cpu_s"] for s in steps)
        return sum(s["delivered"] for s in steps) / cpu if cpu > 0 else float("nan")

    def written(r):
        """Bytes written per item over the same steps as `pooled` (runs from before the figure: nan)."""
        steps = equal_load(r) if r else []
        items = sum(s["delivered"] for s in steps)
        if not items or any("written" not in s for s in steps):
            return float("nan")
        return sum(s["written"] for s in steps) / items

    # The peer's sweep stops at its first failed step; up to there both were offered the same load, and VmHWM
    # read after each step is the peak so far, so this compares memory at equal load rather than at each
    # one's saturation (where otlp-lb carries several times the peer's traffic).
    top = max((s["offered"] for s in (col["steps"] if col else []) if s["offered"] > 0), default=0)

    def hwm_upto(r, rate):
        at = [s["vm_hwm_kib"] for s in (r["steps"] if r else []) if s["offered"] == rate and "vm_hwm_kib" in s]
        return at[0] / 1024 if at else float("nan")

    span = f"{fmt_rate(common[0])}–{fmt_rate(common[-1])}/s" if common else "none"
    rows = [
        (f"{item} per CPU-second, pooled over the steps both passed at equal offered rates ({span}) and the "
         f"common-rate step", pooled(lb), pooled(col), 0),
        (f"{item} per CPU-second at the common rate, {fmt_rate(col['latency_rate'] if col else 0)}/s", eq(lb), eq(col), 0),
        (f"{item} per CPU-second at each one's highest clean step", sat(lb), sat(col), 0),
        (f"highest rate sustained without errors ({item}/s)", lb and lb["capacity"], col and col["capacity"], 0),
        ("client p50 latency at that common rate (ms)", lat(lb, "p50_ms"), lat(col, "p50_ms"), 2),
        ("client p99 latency at that common rate (ms)", lat(lb, "p99_ms"), lat(col, "p99_ms"), 2),
        ("peak RSS, VmHWM (MiB)", lb and lb["vm_hwm_kib"] / 1024, col and col["vm_hwm_kib"] / 1024, 1),
        (f"bytes written per {item[:-1]} over the pooled steps: exports to the sinks"
         f"{'' if compression == 'none' else ' (compressed)'}, replies, logs",
         written(lb), written(col), 1),
        (f"peak RSS through the same offered load, the sweep up to {names[1]}'s last step at {fmt_rate(top)}/s (MiB)",
         hwm_upto(lb, top), hwm_upto(col, top), 1),
    ]
    lines = [f"| {signal_name}: {item}, exporter compression {compression} | {names[0]} | {names[1]} | {names[0]} / {names[1]} |",
             "|---|---:|---:|---:|"]
    for name, a, b, digits in rows:
        lines.append(f"| {name} | {fmt_num(a, digits)} | {fmt_num(b, digits)} | {fmt_num(ratio(a, b), 2)} |")
    if pt:
        lines.append(f"| pass-through (1 backend): highest clean rate ({item}/s) | {fmt_num(pt['capacity'])} | | |")
        lines.append(f"| routing throughput ÷ pass-through throughput | {fmt_num(ratio(lb and lb['capacity'], pt['capacity']), 2)} | | |")
        lines.append(f"| pass-through {item} per CPU-second at its highest clean step | {fmt_num(sat(pt))} | | |")
        lines.append(f"| routing {item}/CPU-s ÷ pass-through {item}/CPU-s (highest clean steps) "
                     f"| {fmt_num(ratio(sat(lb), sat(pt)), 2)} | | |")
    return lines, pooled(lb), pooled(col)


def step_table(run):
    item = ITEM[run["signal"]]
    lines = [f"**{run['label']}** ({run['backends']} backend{'s' if run['backends'] > 1 else ''}, peak RSS "
             f"{run['vm_hwm_kib'] / 1024:.1f} MiB, highest clean rate {fmt_num(run['capacity'])} {item}/s)", "",
             f"| step | offered/s | conns | client/s | at sinks/s | acked | delivered | lost | errors | balancer "
             f"| its core, all | load side | its core, all | {item}/CPU-s | written B/{item[:-1]} | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    steps = list(run["steps"]) + ([run["latency"]] if run.get("latency") else [])
    for s in steps:
        errs = str(s["errors"]) + (" " + ",".join(f"{k}:{v}" for k, v in s["error_kinds"].items()) if s["errors"] else "")
        if s["sink_refusals"]:
            errs += f" (+{s['sink_refusals']} refused at sinks)"
        mark = "" if s["pass"] or s["kind"] == "latency" else " ✗"
        lines.append(
            f"| {s['kind']}{mark} | {fmt_rate(s['offered'])} | {s['connections']} | {fmt_num(s['client_rate'])} "
            f"| {fmt_num(s['window_rate'])} "
            f"| {s['acked']} | {s['delivered']} | {s['lost']}{' (+' + str(s['extra']) + ')' if s['extra'] else ''} "
            f"| {errs} | {s['lb_util'] * 100:.0f}% | {s['lb_core_busy'] * 100:.0f}% | {s['load_util'] * 100:.0f}% "
            f"| {s['load_core_busy'] * 100:.0f}% | {fmt_num(s['items_per_cpu_s'])} "
            f"| {fmt_num(s['written'] / s['delivered'] if s.get('written') and s['delivered'] else float('nan'), 1)} "
            f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} |")
    return lines


def observations(runs):
    notes = []
    for r in runs:
        for s in r["steps"] + ([r["latency"]] if r.get("latency") else []):
            where = f"{r['label']} at {fmt_rate(s['offered'])}"
            if s["lost"]:
                notes.append(f"- **loss**: {where}: {s['lost']} {ITEM[r['signal']]} acknowledged to the client never "
                             f"reached a sink (acked {s['acked']}, delivered {s['delivered']}).")
            if s["extra"]:
                notes.append(f"- **extra**: {where}: sinks got {s['extra']} more {ITEM[r['signal']]} than were "
                             f"acknowledged (parts of failed requests delivered, or retries).")
            if s["errors"]:
                notes.append(f"- **errors**: {where}: {s['error_kinds']} ({s['failed_items']} items failed).")
            if s["lb_util"] < 0.8 and s["lb_core_busy"] > 0.95 and not s["pass"] and s["kind"] == "sweep":
                notes.append(f"- **contended**: {where}: the balancer used {s['lb_util'] * 100:.0f}% of its core "
                             f"while the core was {s['lb_core_busy'] * 100:.0f}% busy: other work on the machine "
                             f"took the rest.")
            if s["load_util"] > 0.9 and s["lb_util"] < 0.9:
                notes.append(f"- **load-bound**: {where}: the load core was {s['load_util'] * 100:.0f}% busy while "
                             f"the balancer's core was {s['lb_util'] * 100:.0f}%: loadgen and the sinks, not the "
                             f"balancer, limited this step.")
    return notes


def write_report(args, facts, runs, crit, prof, started, path, perf=None):
    env = tools_env()
    L = []
    L.append("# otlp-lb benchmark results")
    L.append("")
    L.append(f"Generated by `make bench` (bench/macro.py) on {started:%Y-%m-%d %H:%M} UTC "
             f"(commit {facts['commit']}{', with uncommitted changes' if facts['dirty'] else ''}).")
    L.append("")
    L.append("## Machine and versions")
    L.append("")
    L.append(f"- {facts['cores']} cores, {facts['model']}, {facts['mem']} RAM, Linux {facts['kernel']}; "
             f"load average at start {' '.join(facts['loadavg'])}, at the end {' '.join(load_average())} (other builds may share the machine: compare "
             f"ratios of peers measured in the same run, not absolute numbers).")
    L.append(f"- Pinning (`taskset`): the balancer under test alone on CPU {args.lb_cpu}; loadgen and the "
             f"{args.sinks} sinks share CPU {args.load_cpu}. otlp-lb's tokio runtime and the Collector's "
             f"GOMAXPROCS both follow the affinity mask, so each balancer runs with one worker thread / P. "
             + (f"Every process the bench starts runs at niceness {NICE[0]}, so that other work on the machine "
                f"takes less of the pinned cores (it still takes some)." if NICE[0] else ""))
    L.append(f"- otlp-lb: release build of this commit ({facts['rustc']}).")
    L.append(f"- Collector: `otelcol-lb` from `make tools`: core {env.get('OTELCOL_VERSION', '?')}, contrib "
             f"{env.get('OTELCOL_CONTRIB_VERSION', '?')} (loadbalancing exporter), from e2e/tools.env.")
    L.append("")
    L.append("## Workload")
    L.append("")
    L.append(f"- `otlp-lb-tools loadgen`, OTLP/gRPC, uncompressed, pre-encoded requests of {args.items_per_request} "
             f"items; traces: {args.spans_per_trace} spans per trace ({args.items_per_request // args.spans_per_trace} "
             f"traces per request, spans spread over 5 services); metrics: 5 services × (a Sum and a Gauge), "
             f"{args.items_per_request} data points per request. Each connection has one request in flight; a "
             f"sweep step at rate R uses ceil(R / {args.rate_per_connection}) connections (at least "
             f"{args.min_connections}, at most {args.connections}; {args.connections} when unlimited), so that "
             f"the client's own round trips do not cap the rate; the latency step uses "
             f"{args.latency_connections}. Fixed seed. "
             f"loadgen's connections start together and pace at the same interval, so at a limited rate requests "
             f"arrive in bursts of up to one per connection: latency at a limited rate includes queueing behind "
             f"the burst, hence fewer connections for the latency step.")
    L.append(f"- Sweep of offered rates {', '.join(fmt_rate(r) for r in args.rate_list)} items/s, "
             f"{args.step_seconds}s each, or long enough to offer {fmt_num(args.step_items)} items where that is "
             f"longer; the sweep stops after the first step that errs, loses data or reaches "
             f"less than {args.pass_fraction:.0%} of its offered rate. After each step the driver waits (≤ "
             f"{args.settle_max:.0f}s) until the sinks hold every acknowledged item.")
    L.append(f"- Latency: {args.latency_seconds}s at half of the Collector's highest clean rate, against both.")
    L.append(f"- Backends: {args.sinks} × `otlp-lb-tools sink --no-ids` (counting receivers); pass-through "
             f"baseline: otlp-lb in front of 1 sink (every request goes whole to it: walked, not split or copied).")
    L.append(f"- Exporter compression: {args.compression} on both balancers (both defaults are gzip at level 6; traces "
             f"also go through otlp-lb at level {args.compare_level})"
             + ("; traces are run again with `compression: none` on both." if args.compare_none and
                args.compression != "none" else "."))
    L.append("")
    L.append("### Definitions")
    L.append("")
    L.append("- *items per CPU-second*: items delivered to the sinks in a step ÷ the balancer's CPU time over "
             "the step, settling included: its process CPU-time clock (all threads, in nanoseconds, not the 10 ms "
             "ticks of /proc/<pid>/stat).")
    L.append("- *pooled items per CPU-second*: over the sweep steps both balancers passed at the same offered rate, "
             "plus the common-rate step: all items delivered ÷ all balancer CPU seconds; the load is the same for "
             "both. The last line of this file is that ratio for traces with the default compression.")
    L.append("- *highest rate sustained without errors*: the largest min(client rate, rate arriving at the sinks "
             "during the step) over the steps with no client error, no refusal at a sink and no loss.")
    L.append("- *balancer* / *load side*: CPU time over wall time during the step of the balancer, and of "
             "loadgen + sinks (100% = one core); *its core, all*: how busy that core was with every process on it "
             "(/proc/stat), ours and the machine's other work.")
    L.append("- *lost*: acknowledged to the client but not at the sinks after settling; (+n): more at the sinks "
             "than acknowledged.")
    L.append("- *written*: bytes the balancer passed to write system calls over the step (/proc/<pid>/io `wchar`) ÷ "
             "items delivered: its exports to the sinks as sent (compressed, with HTTP/2 framing), its replies to "
             "loadgen and any log lines. Equal work on the wire shows as equal bytes per item.")
    L.append("")
    L.append("## Summary")
    L.append("")
    ratio_traces = float("nan")
    for signal_name in args.signal_list:
        rows, lb_eq, col_eq = summary_rows(runs, signal_name, args.compression)
        L.extend(rows)
        L.append("")
        if signal_name == "traces":
            ratio_traces = ratio(lb_eq, col_eq)
    others = sorted({(r["signal"], r["compression"]) for r in runs if r["compression"] != args.compression})
    if others:
        L.append("Without exporter compression on either balancer (the same workload; a check of how much of the "
                 "comparison above is gzip):")
        L.append("")
    for signal_name, compression in others:
        rows, _, _ = summary_rows(runs, signal_name, compression)
        L.extend(rows)
        L.append("")
    for off in [r for r in runs if not r.get("coalesce", True)]:
        L.append("otlp-lb with `sending_queue.coalesce` (the default) against otlp-lb with it off, which sends each "
                 "part of each request alone (as it did before coalescing), in the same run:")
        L.append("")
        rows, _, _ = summary_rows(runs, off["signal"], off["compression"], peer=off,
                                  names=("coalescing on", "coalescing off"))
        L.extend(rows)
        L.append("")
    for other in [r for r in runs if r.get("level") is not None]:
        L.append(f"otlp-lb at its default gzip level (6, the Collector's) against otlp-lb at level {other['level']} "
                 f"(`compression_params: {{level: {other['level']}}}`), in the same run:")
        L.append("")
        rows, _, _ = summary_rows(runs, other["signal"], other["compression"], peer=other,
                                  names=("default level", f"level {other['level']}"))
        L.extend(rows)
        L.append("")
    notes = observations(runs)
    if notes:
        L.append("### Observations")
        L.append("")
        L.extend(notes)
        L.append("")
    # Written by hand: what the figures taught us, with the before/after figures of each change.
    findings = os.path.join(ROOT, "bench", "findings.md")
    if os.path.exists(findings):
        with open(findings) as f:
            L.append(f.read().rstrip())
        L.append("")
    L.append("## Steps")
    L.append("")
    for r in runs:
        L.extend(step_table(r))
        L.append("")
    if crit:
        L.append("## Micro-benchmarks (criterion)")
        L.append("")
        L.append("`cargo bench -p dataplane --bench route --bench codec -- --warm-up-time 1 --measurement-time 3`; "
                 "requests shaped like loadgen's (100 spans / 10 traces over 5 services; 100 data points), 4 "
                 "backends. Mean time per element, 95% interval.")
        L.append("")
        L.append("| benchmark | per | ns per element | interval | ns per 100-item request |")
        L.append("|---|---|---:|---|---:|")
        # What one element of a group is; lookups are per key, not per item (how many a request makes depends on
        # its keys), so only item-wise benchmarks get a per-request figure.
        per_key = {"ring": "lookup", "affinity": "trace key", "response": "message"}
        for c in crit:
            group = c["id"].split("/", 1)[0]
            per = per_key.get(group) or ("data point" if "metrics" in c["id"] else "span")
            whole = f"{c['ns_elem'] * 100:,.0f}" if c["elements"] > 1 and group not in per_key else ""
            L.append(f"| {c['id']} | {per} | {c['ns_elem']:,.1f} | {c['ns_elem_lo']:,.1f}–{c['ns_elem_hi']:,.1f} "
                     f"| {whole} |")
        L.append("")
    profs = [p for p in (prof or []) if p]
    if profs:
        L.append("## Profile")
        L.append("")
        L.append(f"otlp-lb (release build, pinned to one core) under `valgrind --tool=callgrind --instr-atstart=no`: "
                 f"instrumentation is switched on after start-up (so the ring build is excluded) and a 40-request "
                 f"warm-up, with `callgrind_control -i on`, for {args.profile_requests} trace requests (100 spans, 10 "
                 f"per trace) at {args.profile_rate} spans/s over 4 connections to 4 sinks, then off. Instruction "
                 f"counts (Ir) are deterministic for a build and a load, unlike the timings above, but they are not "
                 f"time: `rep stos`/`rep movs` in memset/memcpy count one instruction per iteration and cache "
                 f"misses are free, so memset/memcpy weigh more here than in CPU time.")
        L.append("")
        L.append("| exporter compression | requests | spans | errors | Ir total | Ir per span |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for p in profs:
            total, _ = annotate_rows(p["self"])
            L.append(f"| {p['compression']} | {p['requests']} | {p['spans']} | {p['errors']} | {fmt_num(total)} "
                     f"| {fmt_num(total / p['spans'] if total and p['spans'] else None)} |")
        L.append("")
        for p in profs:
            total, att = attribution(p)
            L.append(f"### Compression {p['compression']}: where the instructions go")
            L.append("")
            L.append("| part (inclusive) | Ir | share |")
            L.append("|---|---:|---:|")
            for label, ir, share in att:
                L.append(f"| {label} | {ir:,} | {share:.1f}% |")
            L.append("")
            _, rows_s = top_functions(p["self"], 25, "sum")
            L.append(f"Top 25 functions by self instructions (`callgrind_annotate --inclusive=no`, inlined copies "
                     f"summed), compression {p['compression']}:")
            L.append("")
            L.append("| # | Ir (self) | share | function |")
            L.append("|---:|---:|---:|---|")
            for i, (ir, share, fn) in enumerate(rows_s, 1):
                L.append(f"| {i} | {ir:,} | {share:.1f}% | `{fn}` |")
            L.append("")
            _, rows_i = top_functions(p["inclusive"], 30, "max")
            L.append(f"Top 30 by inclusive instructions (`--inclusive=yes`), compression {p['compression']}:")
            L.append("")
            L.append("| # | Ir (incl.) | share | function |")
            L.append("|---:|---:|---:|---|")
            for i, (ir, share, fn) in enumerate(rows_i, 1):
                L.append(f"| {i} | {ir:,} | {share:.1f}% | `{fn}` |")
            L.append("")
    if perf:
        L.extend(perf_section(perf))
    L.append("## Configurations")
    L.append("")
    L.append("Generated per run into a temporary directory (ports are picked free on loopback at run time).")
    L.append("")
    seen = set()
    for r in runs:
        key = (r["kind"], r["signal"], r["backends"], r["compression"], r.get("coalesce", True), r.get("level"))
        if key in seen:
            continue
        seen.add(key)
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", r["config"])
        text = re.sub(r"(port: )\d+", r"\1PORT", text)
        L.append(f"{r['label']}:")
        L.append("")
        L.append("```yaml")
        L.append(text.rstrip())
        L.append("```")
        L.append("")
    L.append("Collector defaults that matter here (v0.160 source): the loadbalancing exporter's own "
             "`sending_queue`, `retry_on_failure` and `timeout` are off; each per-backend OTLP exporter keeps the "
             "exporterhelper defaults — `sending_queue` on with 10 consumers, 1000 requests, `wait_for_result: "
             "false` (the receiver acknowledges once a part is queued, before delivery) and `block_on_overflow: "
             "false` (a full queue refuses); no batching (the `pkg.exporterhelper.queueBatchEnabled` gate is "
             "alpha); `retry_on_failure` on (5s initial, 300s max elapsed); `timeout` 5s; gzip compression. "
             "otlp-lb acknowledges only after every backend accepted its part (retrying failed parts), so its "
             "client latency includes delivery and the Collector's does not.")
    L.append("")
    L.append(f"ratio spans/cpu-s otlp-lb/otelcol: {ratio_traces:.2f}")
    text = "\n".join(L) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


# ---------------------------------------------------------------------------------------------------------------


def build(args):
    cmds = [["cargo", "build", "--release", "-p", "dataplane", "--bins"]]
    if not args.skip_criterion:
        cmds.append(["cargo", "bench", "-p", "dataplane", "--bench", "route", "--bench", "codec", "--no-run"])
    for argv in cmds:
        log(" ".join(argv))
        r = subprocess.run(argv, cwd=ROOT, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed")


def target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    return os.path.join(ROOT, "target")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--otelcol", default=os.path.join(os.environ.get("TOOLS_DIR", os.path.expanduser(
        "~/.cache/otlp-lb/tools")), "bin", "otelcol-lb"), help="the Collector binary (make tools)")
    p.add_argument("--otlp-lb", help="otlp-lb binary (default: target/release/otlp-lb)")
    p.add_argument("--tools", help="otlp-lb-tools binary (default: target/release/otlp-lb-tools)")
    p.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    p.add_argument("--signals", default="traces,metrics")
    p.add_argument("--rates", default=DEFAULT_RATES, help="offered items/s, 0 = unlimited")
    p.add_argument("--step-seconds", type=int, default=3)
    p.add_argument("--step-items", type=int, default=40000,
                   help="a sweep step at a low rate lasts long enough to offer at least this many items")
    p.add_argument("--latency-seconds", type=int, default=5)
    p.add_argument("--settle-max", type=float, default=10.0)
    p.add_argument("--pass-fraction", type=float, default=0.95)
    p.add_argument("--connections", type=int, default=256,
                   help="loadgen connections of the unlimited step, and the most of any sweep step")
    p.add_argument("--rate-per-connection", type=int, default=2000,
                   help="a sweep step at rate R uses ceil(R / this) connections (within --min-connections and "
                        "--connections)")
    p.add_argument("--min-connections", type=int, default=4)
    p.add_argument("--latency-connections", type=int, default=8, help="loadgen connections of the latency step")
    p.add_argument("--spans-per-trace", type=int, default=10)
    p.add_argument("--items-per-request", type=int, default=100)
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--compression", choices=["gzip", "none"], default="gzip",
                   help="exporter compression of both balancers (default: both defaults, gzip)")
    p.add_argument("--nice", type=int, default=-20,
                   help="niceness of every process started (negative only as root; 0 = unchanged)")
    p.add_argument("--lb-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-passthrough", action="store_true")
    p.add_argument("--no-compare-coalescing", dest="compare_coalescing", action="store_false",
                   help="skip the traces run of otlp-lb with sending_queue.coalesce off")
    p.add_argument("--compare-level", type=int, default=1,
                   help="also run traces through otlp-lb at this gzip level (0: skip)")
    p.add_argument("--no-compare-none", dest="compare_none", action="store_false",
                   help="skip the traces comparison of both balancers without exporter compression")
    p.add_argument("--skip-criterion", action="store_true")
    p.add_argument("--profile", dest="profile", action="store_true", default=True)
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-requests", type=int, default=600)
    p.add_argument("--profile-rate", type=int, default=3000)
    p.add_argument("--perf", dest="perf", action="store_true", default=True,
                   help="sample otlp-lb with perf at a light load (user and kernel time)")
    p.add_argument("--no-perf", dest="perf", action="store_false")
    p.add_argument("--perf-rate", type=int, default=5000)
    p.add_argument("--perf-seconds", type=int, default=15)
    p.add_argument("--profile-compressions", default="gzip,none",
                   help="exporter compressions to profile otlp-lb with")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    p.add_argument("--json", help="also write the raw measurements here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    a = p.parse_args()
    a.rate_list = [int(float(x)) for x in a.rates.split(",") if x.strip()]
    a.signal_list = [s.strip() for s in a.signals.split(",") if s.strip()]
    a.otlp_lb = a.otlp_lb or os.path.join(target_dir(), "release", "otlp-lb")
    a.tools = a.tools or os.path.join(target_dir(), "release", "otlp-lb-tools")
    return a


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    started = datetime.datetime.now(datetime.timezone.utc)
    if not os.path.exists(args.otelcol):
        sys.exit(f"bench: {args.otelcol} not found: run `make tools` first")
    if not shutil.which("taskset"):
        sys.exit("bench: taskset not found (util-linux)")
    if (os.cpu_count() or 1) < 2:
        log("only one CPU: the balancer and the load share it")
        args.load_cpu = args.lb_cpu
    NICE[0] = args.nice if (args.nice >= 0 or os.geteuid() == 0) else 0
    if not args.no_build:
        build(args)
    workdir = tempfile.mkdtemp(prefix="otlp-lb-bench-")
    log(f"work directory {workdir}")
    facts = machine_facts()
    runs, crit, prof = [], None, None
    try:
        # Run copies, so that a concurrent build cannot swap a binary between two measurements.
        os.makedirs(os.path.join(workdir, "bin"))
        for attr in ("otlp_lb", "tools"):
            copy = os.path.join(workdir, "bin", os.path.basename(getattr(args, attr)))
            shutil.copy2(getattr(args, attr), copy)
            setattr(args, attr, copy)
        sinks = Sinks(args.tools, args.sinks, args.load_cpu, workdir)
        for signal_name in args.signal_list:
            col = run_balancer(args, workdir, sinks, signal_name, "otelcol", args.rate_list)
            runs.append(col)
            runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", args.rate_list,
                                     latency_rate=col["latency_rate"] or None))
            if not args.no_passthrough:
                runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", args.rate_list, backends=1))
            if args.compare_coalescing and signal_name == "traces":
                runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", args.rate_list,
                                         latency_rate=col["latency_rate"] or None, coalesce=False))
            if args.compare_level and args.compression == "gzip" and signal_name == "traces":
                runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", args.rate_list,
                                         latency_rate=col["latency_rate"] or None, level=args.compare_level))
        for signal_name in args.signal_list if args.compare_none and args.compression != "none" else []:
            if signal_name != "traces":
                continue
            col = run_balancer(args, workdir, sinks, signal_name, "otelcol", args.rate_list, compression="none")
            runs.append(col)
            runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", args.rate_list,
                                     latency_rate=col["latency_rate"] or None, compression="none"))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": runs, "facts": facts}, f, indent=1)
        prof = []
        for c in args.profile_compressions.split(",") if args.profile else []:
            try:
                prof.append(profile(args, workdir, sinks, c.strip()))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"profile ({c}) failed: {e}")
        perf = None
        if args.perf:
            try:
                perf = perf_profile(args, workdir, sinks)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"perf profile failed: {e}")
            try:
                flames = flamegraphs(args, workdir, sinks)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"flame graphs failed: {e}")
                flames = []
            if perf is not None:
                perf["flamegraphs"] = flames
        PROCS.stop_all()
        if not args.skip_criterion:
            try:
                crit = criterion(args, workdir)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"criterion failed: {e}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": runs, "criterion": crit, "profile": prof, "perf": perf, "facts": facts}, f,
                          indent=1)
        text = write_report(args, facts, runs, crit, prof, started, args.out, perf)
        print(text)
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130)
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
