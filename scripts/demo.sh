#!/usr/bin/env bash
# make demo: otlp-lb in front of three local sinks, a burst of traces, then a fourth sink added at run time and
# the rebalance shown. No Kubernetes needed; everything runs on loopback and is stopped on exit.
# On a terminal it waits for Enter before adding the sink and before stopping, so that the status page can be
# watched live; without one (CI, a pipe) it runs straight through.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/debug}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BASE=${DEMO_PORT_BASE:-24300}
LB_GRPC=$((BASE + 17)) LB_HTTP=$((BASE + 18)) LB_TELEMETRY=$((BASE + 88))

start_sink() { # index
  local i=$1
  "$BIN/otlp-lb-tools" sink --grpc "127.0.0.1:$((BASE + 40 + i))" --admin "127.0.0.1:$((BASE + 60 + i))" --name "sink-$i" \
    >/dev/null 2>"$WORK/sink-$i.log" &
  PIDS+=($!)
}

wait_ok() { # url
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "not ready: $1" >&2; return 1
}

write_config() { # number of sinks
  local hosts=""
  for i in $(seq 0 $(($1 - 1))); do hosts+="${hosts:+, }127.0.0.1:$((BASE + 40 + i))"; done
  cat >"$WORK/otlp-lb.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$LB_GRPC}
      http: {endpoint: 127.0.0.1:$LB_HTTP}
loadbalancing:
  routing_key: traceID
  protocol:
    otlp: {timeout: 5s, compression: gzip, tls: {insecure: true}}
  resolver:
    static: {hostnames: [$hosts]}
telemetry:
  metrics: {address: 127.0.0.1:$LB_TELEMETRY}
YAML
}

report() { # number of sinks
  python3 - "$1" "$BASE" <<'PY'
import json, sys, urllib.request
n, base = int(sys.argv[1]), int(sys.argv[2])
reports = [json.load(urllib.request.urlopen(f"http://127.0.0.1:{base + 60 + i}/report?traces=1")) for i in range(n)]
homes = {}
for i, r in enumerate(reports):
    for t in r["trace_ids"]:
        homes.setdefault(t, set()).add(i)
spans = sum(r["traces"]["spans"] for r in reports)
print(f"  {'backend':<8} {'spans':>8} {'traces':>7} {'share':>7}")
for i, r in enumerate(reports):
    s = r["traces"]["spans"]
    print(f"  sink-{i:<3} {s:>8} {r['traces']['distinct_trace_ids']:>7} {100 * s / max(spans, 1):>6.1f}%")
split = sum(1 for h in homes.values() if len(h) > 1)
dups = sum(r["traces"]["duplicate_spans"] for r in reports)
print(f"  total spans {spans}, traces {len(homes)}, traces split across backends {split}, duplicate spans {dups}")
PY
}

load() { # traces
  "$BIN/otlp-lb-tools" loadgen --endpoint "127.0.0.1:$LB_GRPC" --traces "$1" --spans-per-trace 10 --rate 20000 \
    --connections 4 --report-json >"$WORK/load.json"
  python3 - "$WORK/load.json" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
errors = r["errors"] or 0
print(f"  loadgen: sent {r['sent_items']} spans in {r['traces']} traces at {r['items_per_s']:.0f} spans/s, errors {errors}, p99 {r['p99_ms']} ms")
PY
}

pool() {
  curl -fsS "http://127.0.0.1:$LB_TELEMETRY/debug/pool" | python3 -c '
import json, sys
p = json.load(sys.stdin)
print("  /debug/pool: version", p["version"], "|", ", ".join("%s %.1f%%" % (b["address"], 100 * b["share"]) for b in p["backends"]))'
}

interactive() { [ -t 0 ] && [ -t 1 ]; }

pause() { # prompt
  if interactive; then
    read -r -p "$1" _ || true
  fi
}

[ -x "$BIN/otlp-lb" ] && [ -x "$BIN/otlp-lb-tools" ] || { echo "build first: cargo build -p dataplane --bins" >&2; exit 1; }

echo "== 1. three sinks behind otlp-lb (traceID routing)"
for i in 0 1 2; do start_sink "$i"; done
for i in 0 1 2; do wait_ok "http://127.0.0.1:$((BASE + 60 + i))/healthz"; done
write_config 3
"$BIN/otlp-lb" --config "$WORK/otlp-lb.yaml" 2>"$WORK/otlp-lb.log" &
PIDS+=($!)
LB_PID=$!
wait_ok "http://127.0.0.1:$LB_TELEMETRY/readyz"
echo "  status page: http://127.0.0.1:$LB_TELEMETRY/ (live: backends, shares, pool changes, rates)"
pool
load 3000
report 3
pause "  open the status page, then press Enter to add a fourth sink "

echo
echo "== 2. a fourth sink joins: the pool is reloaded in place (SIGHUP)"
start_sink 3
wait_ok "http://127.0.0.1:$((BASE + 63))/healthz"
for i in 0 1 2; do curl -fsS -X POST "http://127.0.0.1:$((BASE + 60 + i))/reset" >/dev/null; done
write_config 4
kill -HUP "$LB_PID"
for _ in $(seq 1 100); do
  grep -q "backend pool changed.*version=2" "$WORK/otlp-lb.log" && break
  sleep 0.05
done
echo "  $(grep 'backend pool changed' "$WORK/otlp-lb.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed 's/.*backend pool changed/backend pool changed/')"
pool
load 3000
report 4
echo
if interactive; then
  # A light, steady load keeps the page's rates moving while it is watched.
  "$BIN/otlp-lb-tools" loadgen --endpoint "127.0.0.1:$LB_GRPC" --rate 500 --duration 1h --connections 1 --quiet \
    >/dev/null 2>&1 &
  PIDS+=($!)
  echo "Status page: http://127.0.0.1:$LB_TELEMETRY/ (500 spans/s keep it moving); metrics at /metrics."
  pause "Press Enter to stop everything. "
  echo "Demo done; everything stopped."
else
  echo "Status page: http://127.0.0.1:$LB_TELEMETRY/ and metrics at /metrics (while running). Demo done; everything stopped."
fi
