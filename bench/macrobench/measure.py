"""What the driver reads from /proc: a process's CPU time, bytes written and peak memory; how busy each core
was; and the machine's facts for the report.
"""

import os
import platform
import subprocess
import time

from .procs import ROOT


CLK_TCK = os.sysconf("SC_CLK_TCK")


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
