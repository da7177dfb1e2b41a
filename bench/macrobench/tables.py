"""The report's tables: one balancer against another, otlp-lb with `peers:` against without, each run's steps,
what went wrong in a step, and the perf profile.
"""

from .fmt import ITEM, fmt_num, fmt_rate, ratio
from .profiles import PERF_HZ


def pick(runs, kind, signal_name, backends=4, compression=None, coalesce=True, level=None):
    for r in runs:
        if r["kind"] == kind and r["signal"] == signal_name and r["backends"] == backends and \
                (compression is None or r.get("compression") == compression) and r.get("coalesce", True) == coalesce \
                and r.get("level") == level and r.get("peers") is None:
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


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def peers_rows(runs):
    """otlp-lb with `peers:` against without, over the alternated runs of the comparison: per offered rate that
    every one of them passed, and at the common rate, items per CPU-second pooled over the runs of each side.
    Returns (lines, pooled on/off ratio)."""
    on = [r for r in runs if r.get("peers") == "on"]
    off = [r for r in runs if r.get("peers") == "off"]
    if not on or not off:
        return [], float("nan")
    item = ITEM[on[0]["signal"]]
    passed = [{s["offered"] for s in r["steps"] if s["pass"] and s["offered"] > 0} for r in on + off]
    common = sorted(set.intersection(*passed))

    def at(r, rate):
        return [s for s in r["steps"] if s["offered"] == rate]

    def lat(r):
        return [r["latency"]] if r.get("latency") else []

    def pooled(steps):
        cpu = sum(s["lb_cpu_s"] for s in steps)
        return sum(s["delivered"] for s in steps) / cpu if cpu > 0 else float("nan")

    def mean(xs):
        xs = [x for x in xs if x == x]
        return sum(xs) / len(xs) if xs else float("nan")

    def every(r):
        return [s for rate in common for s in at(r, rate)] + lat(r)

    rows = [(f"{item} per CPU-second at {fmt_rate(rate)}/s", pooled([s for r in off for s in at(r, rate)]),
             pooled([s for r in on for s in at(r, rate)]), 0) for rate in common]
    rate = on[0]["latency_rate"]
    if rate:
        rows.append((f"{item} per CPU-second at the common rate, {fmt_rate(rate)}/s",
                     pooled([s for r in off for s in lat(r)]), pooled([s for r in on for s in lat(r)]), 0))
    all_off, all_on = pooled([s for r in off for s in every(r)]), pooled([s for r in on for s in every(r)])
    rows += [
        (f"{item} per CPU-second, pooled over all of the above", all_off, all_on, 0),
        (f"CPU µs per {item[:-1]}, pooled", 1e6 / all_off if all_off else float("nan"),
         1e6 / all_on if all_on else float("nan"), 3),
        ("client p50 latency at the common rate (ms), mean", mean([s["p50_ms"] for r in off for s in lat(r)]),
         mean([s["p50_ms"] for r in on for s in lat(r)]), 2),
        ("client p99 latency at the common rate (ms), mean", mean([s["p99_ms"] for r in off for s in lat(r)]),
         mean([s["p99_ms"] for r in on for s in lat(r)]), 2),
        ("peak RSS, VmHWM (MiB), mean", mean([r["vm_hwm_kib"] / 1024 for r in off]),
         mean([r["vm_hwm_kib"] / 1024 for r in on]), 1),
    ]
    lines = [f"| {on[0]['signal']}: {item}, {plural(len(off), 'run')} without `peers:` and {len(on)} with, "
             f"alternated | peers off | peers on | on / off |", "|---|---:|---:|---:|"]
    for name, a, b, digits in rows:
        lines.append(f"| {name} | {fmt_num(a, digits)} | {fmt_num(b, digits)} | {fmt_num(ratio(b, a), 3)} |")
    rounds = sorted({r["round"] for r in on} & {r["round"] for r in off})
    per_round = []
    for n in rounds:
        a = pooled([s for r in off if r["round"] == n for s in every(r)])
        b = pooled([s for r in on if r["round"] == n for s in every(r)])
        per_round.append(f"{fmt_num(ratio(b, a), 3)}")
    partner = [r for r in on if "partner_cpu_s" in r]
    lines += ["", f"On / off of each round alone (the same steps, pooled): {', '.join(per_round)}."]
    if partner:
        answered = sum(1 for r in partner if r.get("peer_pulled"))
        lines.append(f"The idle replica (peered, no load) used {mean([r['partner_cpu_s'] for r in partner]):.2f} "
                     f"CPU-s over a whole run and peaked at "
                     f"{mean([r['partner_vm_hwm_kib'] / 1024 for r in partner]):.1f} MiB. In {answered} of "
                     f"{plural(len(partner), 'run')} with `peers:` the measured replica ran the peer exchange and all "
                     f"its peer requests were answered (`otlp_lb_peer_held_capacity` > 0, "
                     f"`otlp_lb_peer_unanswered_total` 0: it pulled the other's table at start).")
    return lines, ratio(all_on, all_off)


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
