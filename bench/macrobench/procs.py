"""Child processes (each stopped on the way out, optionally pinned to a core and raised in priority), free
loopback ports, HTTP readiness, and where the repository and its build live.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


# The repository: this package is bench/macrobench/.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Procs:
    """Every child process, so that all of them are stopped on the way out."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, nice=0, **kw):
        """Starts `argv`; with a niceness `nice` (0: unchanged), in a session of its own at that niceness."""
        # With a raised priority, each child gets a session (so its own scheduler autogroup) whose niceness is
        # raised too: with autogroups, niceness only orders processes within a group, and the machine's other
        # work sits in other groups.
        p = subprocess.Popen(argv, start_new_session=bool(nice), **kw)
        p.bench_name = name
        self.procs.append(p)
        if nice:
            try:
                with open(f"/proc/{p.pid}/autogroup", "w") as f:
                    f.write(str(nice))
            except OSError:
                pass
        return p

    def start_pinned(self, name, cpu, argv, nice=0, **kw):
        """Starts `argv` pinned to `cpu` (None: anywhere) and, when `nice` is set, at that niceness."""
        prefix = ["nice", "-n", str(nice)] if nice else []
        pinned = prefix + (["taskset", "-c", str(cpu)] if cpu is not None else []) + argv
        return self.start(name, pinned, nice=nice, **kw)

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


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


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


def target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    return os.path.join(ROOT, "target")


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
