"""Fixtures: three counting sinks and an otlp-lb in front of them, as child processes on loopback."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("OTLP_LB_BIN_DIR", ROOT / "target" / "debug"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {seconds}s:\n{log.read_text()}")


class Stack:
    """otlp-lb plus its sinks; `reports()` reads every sink's counts."""

    def __init__(self, workdir: Path, sinks: int = 3):
        self.procs = []
        self.sink_admin = []
        backends = []
        for i in range(sinks):
            grpc, admin = free_port(), free_port()
            log = workdir / f"sink-{i}.log"
            p = subprocess.Popen(
                [BIN / "otlp-lb-tools", "sink", "--grpc", f"127.0.0.1:{grpc}", "--admin", f"127.0.0.1:{admin}", "--name", f"sink-{i}"],
                stdout=subprocess.DEVNULL, stderr=log.open("w"),
            )
            self.procs.append(p)
            wait_http(f"http://127.0.0.1:{admin}/healthz", p, log)
            self.sink_admin.append(f"http://127.0.0.1:{admin}")
            backends.append(f'"127.0.0.1:{grpc}"')
        self.grpc, self.http, self.telemetry = free_port(), free_port(), free_port()
        config = workdir / "otlp-lb.yaml"
        config.write_text(
            "receivers:\n  otlp:\n    protocols:\n"
            f"      grpc: {{endpoint: 127.0.0.1:{self.grpc}}}\n"
            f"      http: {{endpoint: 127.0.0.1:{self.http}}}\n"
            "loadbalancing:\n  protocol:\n    otlp: {timeout: 5s, tls: {insecure: true}}\n"
            f"  resolver:\n    static: {{hostnames: [{', '.join(backends)}]}}\n"
            f"telemetry:\n  metrics: {{address: 127.0.0.1:{self.telemetry}}}\n"
        )
        self.log = workdir / "otlp-lb.log"
        lb = subprocess.Popen([BIN / "otlp-lb", "--config", config], stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.procs.append(lb)
        wait_http(f"http://127.0.0.1:{self.telemetry}/readyz", lb, self.log)

    def reports(self):
        return [get_json(f"{a}/report?traces=1") for a in self.sink_admin]

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def stack():
    missing = [b for b in ("otlp-lb", "otlp-lb-tools") if not (BIN / b).exists()]
    if missing:
        pytest.fail(f"build the binaries first (cargo build -p dataplane --bins): missing {missing} in {BIN}")
    with tempfile.TemporaryDirectory() as d:
        s = Stack(Path(d))
        try:
            yield s
        finally:
            s.stop()
