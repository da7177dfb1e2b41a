"""The chart's Grafana dashboard and alerting rules against a real Prometheus (Debian's prometheus and promtool):
promtool checks and unit-tests the rules; a Prometheus on loopback scrapes otlp-lb under load (a backend ejected,
refusals, the pool grown and shrunk, a small affinity table) and the operator, loads the rules, and every
expression of the dashboard and of the rules returns data."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, free_port, wait_http

FILES = ROOT / "charts" / "otlp-lb" / "files"
ALERTS = FILES / "alerts.yaml"
DASHBOARD = FILES / "dashboard.json"
ALERT_TESTS = Path(__file__).parent / "monitoring" / "alerts_test.yaml"
MIN_SCHEMA_VERSION = 39
# The labels a ServiceMonitor on a LoadBalancedCollector's load-balancer Service gives its pods' series.
LBC = {"namespace": "otlp-lb-test", "service": "traces-lb", "pod": "traces-lb-0"}
VARIABLES = {"$namespace": LBC["namespace"], "$loadbalancedcollector": LBC["service"], "$__rate_interval": "20s"}
# Alerts the scenario below brings about, so their whole expression returns data.
FIRED_BY_SCENARIO = {"OtlpLbBackendEjected", "OtlpLbRefusing", "OtlpLbAffinityTableFull"}
WAIT = 30  # seconds, for any one condition


def tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found: install Debian's prometheus package (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def alert_rules() -> list:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list:
    """(where, expr) of every panel target and query variable of the dashboard."""
    d = json.loads(DASHBOARD.read_text())
    out = [(f"panel {p['title']!r}", t["expr"]) for p in d["panels"] for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']}", v["query"]["query"]))
    return out


def metric_names(expr: str) -> set:
    """Metric names an expression selects (outside quoted strings)."""
    return set(re.findall(r"\b((?:otelcol|otlp_lb)_[a-z0-9_]+)", re.sub(r'"[^"]*"', '""', expr)))


def substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    label_values = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr)
    return label_values.group(1) if label_values else expr


def signal_of(expr: str) -> str:
    """An alert's expression without its final threshold: the series it compares."""
    m = re.fullmatch(r"(.*\S)\s*(?:==|!=|>=|<=|>|<)\s*[0-9.]+\s*", expr, re.S)
    assert m, f"an alert expression ends with a comparison to a number: {expr}"
    return m.group(1)


# --- without a running Prometheus ---


def test_promtool_checks_the_rules():
    out = subprocess.run([tool("promtool"), "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_fire_and_hold_every_alert():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"no test where {rule['alert']} fires"
        assert any(not c.get("exp_alerts") for c in mine), f"no test where {rule['alert']} does not fire"
        assert rule["annotations"].get("runbook"), f"{rule['alert']} has no runbook"
    out = subprocess.run([tool("promtool"), "test", "rules", ALERT_TESTS], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_schema_and_variables():
    d = json.loads(DASHBOARD.read_text())
    assert d["schemaVersion"] >= MIN_SCHEMA_VERSION
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    lbc = variables["loadbalancedcollector"]
    assert lbc["type"] == "query" and lbc["query"]["query"].endswith(", service)"), lbc
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            operator = all(n.startswith("otlp_lb_operator_") for n in metric_names(t["expr"]))
            if not operator:
                assert '$namespace", service="$loadbalancedcollector"' in t["expr"], (p["title"], t["expr"])


def test_the_chart_renders_the_files():
    helm = Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache" / "otlp-lb" / "tools")) / "bin" / "helm"
    if not helm.exists():
        helm = Path(tool("helm"))
    args = [helm, "template", "otlp-lb", ROOT / "charts" / "otlp-lb", "--set", "grafanaDashboard.enabled=true",
            "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.for.OtlpLbBackendEjected=30m"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] in ("ConfigMap", "PrometheusRule")}
    dashboard = docs["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["otlp-lb.json"]) == json.loads(DASHBOARD.read_text())
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    groups[0]["rules"][0]["for"] = "30m"
    assert groups[0]["rules"][0]["alert"] == "OtlpLbBackendEjected"
    assert docs["PrometheusRule"]["spec"]["groups"] == groups


# --- against Prometheus scraping otlp-lb and the operator ---


class Live:
    """Sinks, otlp-lb (static pool, read again when its file changes), the operator and Prometheus."""

    def __init__(self, work: Path):
        self.work = work
        self.procs = []
        self.sinks = [self.start_sink(i) for i in range(4)]
        self.telemetry = free_port()
        self.grpc = free_port()
        self.config = work / "otlp-lb.yaml"
        self.write_pool([0, 1, 2])
        self.lb = self.spawn("otlp-lb", [BIN / "otlp-lb", "--config", self.config])
        wait_http(f"http://127.0.0.1:{self.telemetry}/readyz", self.lb, work / "otlp-lb.log")
        self.operator_port = free_port()
        self.start_operator()
        self.prom_port = free_port()
        self.start_prometheus()

    def spawn(self, name: str, args: list, **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(self.work / f"{name}.log").open("w"), **kw)
        self.procs.append(p)
        return p

    def start_sink(self, i: int) -> dict:
        grpc, admin = free_port(), free_port()
        args = [BIN / "otlp-lb-tools", "sink", "--grpc", f"127.0.0.1:{grpc}", "--admin", f"127.0.0.1:{admin}"]
        p = self.spawn(f"sink-{i}", args + ["--name", f"sink-{i}", "--no-ids"])
        wait_http(f"http://127.0.0.1:{admin}/healthz", p, self.work / f"sink-{i}.log")
        return {"grpc": f"127.0.0.1:{grpc}", "admin": f"http://127.0.0.1:{admin}"}

    def write_pool(self, members: list) -> None:
        hosts = ", ".join(f'"{self.sinks[i]["grpc"]}"' for i in members)
        text = (
            f"receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:{self.grpc}}}\n"
            "loadbalancing:\n  protocol:\n    otlp: {timeout: 5s, tls: {insecure: true}}\n"
            f"  resolver:\n    static: {{hostnames: [{hosts}]}}\n"
            # A small affinity table: the load fills it, so it rotates early.
            "routing: {affinity_max_traces: 320}\n"
            f"telemetry:\n  metrics: {{address: 127.0.0.1:{self.telemetry}}}\n"
        )
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)

    def start_operator(self) -> None:
        # No API server listens on the kubeconfig's port: the operator serves /metrics and retries its watches.
        kubeconfig = self.work / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]\nusers: [{name: u, user: {}}]\n"
        )
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        args = [BIN / "otlp-lb-operator", "run", "--leader-elect=false"]
        p = self.spawn("operator", args + ["--metrics-address", f"127.0.0.1:{self.operator_port}"], env=env)
        wait_http(f"http://127.0.0.1:{self.operator_port}/metrics", p, self.work / "operator.log")

    def start_prometheus(self) -> None:
        operator = {"namespace": "otlp-lb-system", "pod": "otlp-lb-operator-0"}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": LBC["service"], "static_configs": [{"targets": [f"127.0.0.1:{self.telemetry}"], "labels": LBC}]},
                {"job_name": "otlp-lb-operator",
                 "static_configs": [{"targets": [f"127.0.0.1:{self.operator_port}"], "labels": operator}]},
            ],
        }
        path = self.work / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        args = [tool("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={self.work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}"]
        p = self.spawn("prometheus", args)
        wait_http(f"http://127.0.0.1:{self.prom_port}/-/ready", p, self.work / "prometheus.log", seconds=60)

    def load(self, signal: str, seconds: int) -> subprocess.Popen:
        args = [BIN / "otlp-lb-tools", "loadgen", "--endpoint", f"127.0.0.1:{self.grpc}", "--signal", signal,
                "--rate", "1500", "--connections", "2", "--duration", f"{seconds}s", "--quiet"]
        return self.spawn(f"loadgen-{signal}", args)

    def sink_mode(self, i: int, reply: str) -> None:
        body = json.dumps({"reply": reply}).encode()
        req = urllib.request.Request(f"{self.sinks[i]['admin']}/mode", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()

    def metrics(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()

    def query(self, expr: str) -> list:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{expr}: {e.read().decode()}") from e
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def api(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}/api/v1/{path}", timeout=10) as r:
            return json.loads(r.read())["data"]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def until(what: str, check, seconds: float = WAIT):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds}s: {what}")


def metric_value(text: str, line_prefix: str) -> float:
    """The sum of the samples whose lines start with `line_prefix`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix))


@pytest.fixture(scope="module")
def live():
    tool("prometheus")
    missing = [b for b in ("otlp-lb", "otlp-lb-tools", "otlp-lb-operator") if not (BIN / b).exists()]
    if missing:
        pytest.fail(f"build the binaries first (cargo build --workspace --bins): missing {missing} in {BIN}")
    with tempfile.TemporaryDirectory() as d:
        s = Live(Path(d))
        try:
            scenario(s)
            yield s
        finally:
            s.stop()


def scenario(s: Live) -> None:
    """Load on every signal; a backend ejected, refusals, the pool grown to four and shrunk to three."""
    lb = s.telemetry
    loads = [s.load(signal, 60) for signal in ("traces", "metrics", "logs")]
    until("accepted spans", lambda: metric_value(s.metrics(lb), "otelcol_receiver_accepted_spans") > 0)
    s.sink_mode(1, "unavailable")
    until("an ejection", lambda: metric_value(s.metrics(lb), "otlp_lb_backend_ejections_total{") > 0)
    # Every backend failing: once all are ejected, otlp-lb refuses; the two readmitted by their probes end it.
    for i in (0, 2):
        s.sink_mode(i, "unavailable")
    until("refused items", lambda: metric_value(s.metrics(lb), "otelcol_receiver_refused_") > 0)
    for i in (0, 2):
        s.sink_mode(i, "ok")
    updates = 'otelcol_loadbalancer_num_backend_updates{resolver="static"}'
    s.write_pool([0, 1, 2, 3])
    until("a pool of four", lambda: metric_value(s.metrics(lb), "otelcol_loadbalancer_num_backends{") == 4)
    s.write_pool([0, 1, 3])
    until("three pool changes", lambda: metric_value(s.metrics(lb), updates) >= 3)
    until("early rotations", lambda: metric_value(s.metrics(lb), "otlp_lb_affinity_early_rotations") > 0)
    # Prometheus has scraped the last change and evaluated the rules on it.
    until("the last pool change scraped", lambda: s.query("otelcol_loadbalancer_num_backend_updates >= 3"))
    until("the rules evaluated", lambda: s.query('ALERTS{alertname="OtlpLbRefusing"}'))
    assert all(p.poll() is None for p in loads), "the load runs throughout"


def test_every_dashboard_expression_returns_data(live):
    empty = [(where, substitute(e)) for where, e in dashboard_exprs() if not live.query(substitute(e))]
    assert not empty, f"no data for {empty}"


def test_every_alert_expression_returns_data(live):
    rules = {g["name"]: g for g in live.api("rules")["groups"]}
    for rule in alert_rules():
        loaded = [r for g in rules.values() for r in g["rules"] if r["name"] == rule["alert"]]
        assert loaded and loaded[0]["health"] == "ok", (rule["alert"], loaded)
        assert live.query(signal_of(rule["expr"])), f"{rule['alert']}: no series for {signal_of(rule['expr'])}"
        fired = live.query(rule["expr"])
        if rule["alert"] in FIRED_BY_SCENARIO:
            assert fired, f"{rule['alert']} does not hold: {rule['expr']}"
    states = {a["labels"]["alertname"]: a["state"] for a in live.api("alerts")["alerts"]}
    assert states.get("OtlpLbRefusing") == "firing", states
    assert states.get("OtlpLbAffinityTableFull") == "firing", states
    assert states.get("OtlpLbBackendEjected") == "pending", states
    assert "OtlpLbPoolEmpty" not in states and "OtlpLbRingNotFollowingEndpointSlices" not in states, states


def test_every_metric_name_exists_in_metrics(live):
    exposed = set()
    for port in (live.telemetry, live.operator_port):
        for line in live.metrics(port).splitlines():
            if line and not line.startswith("#"):
                exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    referenced = {n for _, e in dashboard_exprs() for n in metric_names(e)}
    referenced |= {n for r in alert_rules() for n in metric_names(r["expr"])}
    assert referenced - exposed == set(), f"not in /metrics: {sorted(referenced - exposed)}"
    assert len(referenced) > 20
