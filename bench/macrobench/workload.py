"""The load and its measurement: loadgen runs, one measured step at an offered rate, the sweep of rates, a
balancer's whole run (warm-up, sweep, latency step), and otlp-lb with `peers:` against without, alternated.
"""

import json
import os
import select
import subprocess
import time

from .balancers import PeerSet, start_otelcol, start_otlp_lb
from .fmt import ITEM, fmt_rate
from .measure import core_busy, cpu_seconds, cpu_ticks, vm_hwm_kib, written_bytes
from .procs import PROCS, log


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
    p = PROCS.start_pinned("loadgen", args.load_cpu, argv, nice=args.nice, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
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
                 coalesce=True, level=None, peers=None):
    """One balancer's run. `peers` ("off" or "on", with the round: `("on", 2)`) marks a run of the peers
    comparison; with "on" a second otlp-lb replica, peered with the measured one and idle, runs on the load core."""
    compression = compression or args.compression
    label = f"{kind}-{signal_name}" + ("-passthrough" if backends == 1 else "") + \
        ("" if compression == args.compression else f"-{compression}") + ("" if coalesce else "-no-coalescing") + \
        ("" if level is None else f"-level-{level}") + ("" if peers is None else f"-peers-{peers[0]}-{peers[1]}")
    log(f"{label}: start ({backends} backend{'s' if backends > 1 else ''}, exporter compression {compression})")
    partner = None
    if kind == "otelcol":
        bal = start_otelcol(args, workdir, label, signal_name, sinks.addresses(backends), compression)
    elif peers is not None and peers[0] == "on":
        tier = PeerSet(workdir)
        partner = start_otlp_lb(args, workdir, f"{label}-partner", sinks.addresses(backends), compression=compression,
                                peers=tier.block(1), cpu=args.load_cpu)
        bal = start_otlp_lb(args, workdir, label, sinks.addresses(backends), compression=compression,
                            peers=tier.block(0))
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
        run = {"label": label, "kind": kind, "signal": signal_name, "backends": backends, "steps": steps,
               "compression": compression, "coalesce": coalesce, "level": level,
               "capacity": cap, "latency": lat, "latency_rate": latency_rate, "vm_hwm_kib": hwm,
               "config": bal.config_text}
        if peers is not None:
            run["peers"], run["round"] = peers
        if partner is not None:
            if not partner.alive():
                raise RuntimeError(f"{partner.label} exited with {partner.proc.returncode}")
            run["partner_cpu_s"], run["partner_vm_hwm_kib"] = cpu_seconds(partner.pid), vm_hwm_kib(partner.pid)
            # The measured replica runs the peer exchange, and the partner answered it (its table, pulled at start).
            run["peer_pulled"] = bal.metric_sum("otlp_lb_peer_held_capacity") > 0 and \
                bal.metric_sum("otlp_lb_peer_unanswered_total") == 0
        return run
    finally:
        PROCS.stop(bal.proc, grace=25)
        if partner is not None:
            PROCS.stop(partner.proc, grace=25)


def compare_peers(args, workdir, sinks, signal_name, rates, latency_rate, rounds):
    """otlp-lb with `peers:` (two replicas, the load to one) against otlp-lb without, `rounds` pairs alternated
    off, on, on, off, ... so that a drift of the machine's other load weighs on both alike."""
    runs = []
    for i in range(rounds):
        for state in (("off", "on") if i % 2 == 0 else ("on", "off")):
            runs.append(run_balancer(args, workdir, sinks, signal_name, "otlp-lb", rates, latency_rate=latency_rate,
                                     peers=(state, i + 1)))
    return runs
