"""`make bench`'s command line: the settings, the build, and the order of the runs.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from . import __doc__ as PACKAGE_DOC
from .balancers import Sinks
from .measure import machine_facts
from .procs import PROCS, ROOT, log, on_sigterm, target_dir
from .profiles import criterion, flamegraphs, perf_profile, profile
from .report import write_report
from .workload import compare_peers, run_balancer


DEFAULT_RATES = "5000,10000,20000,40000,80000,160000,320000,0"


def build(args):
    cmds = [["cargo", "build", "--release", "-p", "dataplane", "--bins"]]
    if not args.skip_criterion:
        cmds.append(["cargo", "bench", "-p", "dataplane", "--bench", "route", "--bench", "codec", "--no-run"])
    for argv in cmds:
        log(" ".join(argv))
        r = subprocess.run(argv, cwd=ROOT, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed")


def parse_args():
    """The settings of a run: the options, with the rate and signal lists parsed, binaries found and the niceness
    this user may set."""
    p = argparse.ArgumentParser(description=PACKAGE_DOC.split("\n\n")[0])
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
                   help="niceness of every process started (negative only as root, else 0; 0 = unchanged)")
    p.add_argument("--lb-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-passthrough", action="store_true")
    p.add_argument("--no-compare-coalescing", dest="compare_coalescing", action="store_false",
                   help="skip the traces run of otlp-lb with sending_queue.coalesce off")
    p.add_argument("--compare-level", type=int, default=1,
                   help="also run traces through otlp-lb at this gzip level (0: skip)")
    p.add_argument("--no-compare-peers", dest="compare_peers", action="store_false",
                   help="skip the traces runs of otlp-lb with `peers:` (two replicas) against without")
    p.add_argument("--peers-rounds", type=int, default=2,
                   help="pairs of peers runs, alternated off, on, on, off, ... (default 2)")
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
    if a.nice < 0 and os.geteuid() != 0:
        a.nice = 0
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
        sinks = Sinks(args, workdir)
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
            if args.compare_peers and args.peers_rounds > 0 and signal_name == "traces":
                runs += compare_peers(args, workdir, sinks, signal_name, args.rate_list, col["latency_rate"] or None,
                                      args.peers_rounds)
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
