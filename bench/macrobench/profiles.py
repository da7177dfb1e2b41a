"""Where otlp-lb spends its time: the criterion micro-benchmarks, callgrind instruction counts, perf samples
(kernel included) and flame graphs, and the reading of their outputs.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time

from .balancers import start_otlp_lb
from .fmt import fmt_rate
from .measure import cpu_seconds
from .procs import PROCS, ROOT, log
from .workload import loadgen, settle


def criterion(args, workdir):
    home = os.path.join(workdir, "criterion")
    env = dict(os.environ, CRITERION_HOME=home)
    argv = ["cargo", "bench", "-p", "dataplane", "--bench", "route", "--bench", "codec", "--",
            "--warm-up-time", "1", "--measurement-time", "3", "--noplot"]
    log("criterion: " + " ".join(argv))
    # On the balancer's core, with the same priority as the balancers: micro-benchmarks are as noisy as the rest.
    with open(os.path.join(workdir, "criterion.log"), "wb") as out:
        p = PROCS.start_pinned("cargo bench", args.lb_cpu, argv, nice=args.nice, cwd=ROOT, env=env, stdout=out,
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
        rec = PROCS.start("perf", ["perf", "record", *perf_args, "-p", str(bal.pid)], nice=args.nice,
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


def clean_symbol(fn):
    """Drops the file part (a build path) that callgrind_annotate prints before the function."""
    fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", fn)
    if ":" in fn:
        head, tail = fn.split(":", 1)
        if "/" in head or head.startswith("???") or head.endswith((".rs", ".c", ".h", ".S", ".s")):
            fn = tail
    fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
    return fn if len(fn) <= 150 else fn[:147] + "..."
