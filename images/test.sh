#!/usr/bin/env bash
# Tests of the container images (make image-tests), run with podman and runc as a kubelet would run them:
# user 65532, read-only root filesystem, every capability dropped, no new privileges.
#
#   images/test.sh [TEST...]   all, or some of: data_plane_static data_plane_run operator otelcol pause
#
#   otlp-lb            the archive's config and labels, the files in the image (no shell), --version, --validate
#                      of every config/examples file (and a bad one), then a run: /readyz with two sinks as
#                      backends, one named by the image's /etc/hosts, one by DNS; traces through the write-ahead log
#                      on a mounted volume, every span delivered once, a clean exit on SIGTERM
#   otlp-lb-operator   the same static checks, --version, `crd` equal to crds/, a clear error without a cluster
#   otelcol-lb, pause  (the end-to-end test images) --version / -v, a run: the Collector receives traces into a
#                      mounted volume; pause stays up and exits 0 on SIGTERM
#
# Needs podman, skopeo, runc, dnsmasq, curl and python3, and the images (make images e2e-images). Without
# them the tests are skipped, except under CI=true, where that is a failure. Every container, process and
# directory the tests start or make is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/images
export CONTAINERS_CONF=$ROOT/images/containers.conf
TOOLS=$OUT/otlp-lb-tools
NAME=otlp-lb-image-test-$$

fail() { echo "image-tests: FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

missing=()
for tool in podman skopeo runc dnsmasq curl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  [[ ${CI:-} == true ]] && fail "missing ${missing[*]} (apt-get install podman skopeo runc dnsmasq-base curl python3)"
  echo "image-tests: SKIP: missing ${missing[*]} (apt-get install podman skopeo runc dnsmasq-base curl python3)"
  exit 0
fi
for set in product e2e; do
  [[ -s $OUT/$set.refs ]] || fail "no images listed in $OUT/$set.refs: run make images e2e-images"
done
mapfile -t PRODUCT <"$OUT/product.refs"
mapfile -t E2E <"$OUT/e2e.refs"
LB=${PRODUCT[0]} OPERATOR=${PRODUCT[1]} OTELCOL=${E2E[0]} PAUSE=${E2E[1]}
for ref in "${PRODUCT[@]}" "${E2E[@]}"; do
  podman image exists "$ref" || fail "$ref is not in the podman store: build it with podman (make images e2e-images)"
done

# ---------------------------------------------------------------- clean-up
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local c pid
  for c in $(podman ps -a --filter "name=^$NAME-" --format '{{.Names}}'); do
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A container as the chart and the operator run one.
RUN=(podman run --runtime runc --user 65532:65532 --read-only --cap-drop all --security-opt no-new-privileges)
# once ARG...: a one-off container without a network, bounded in time (and named, so the clean-up finds it).
once() { timeout 120 "${RUN[@]}" --rm --name "$NAME-$RANDOM$RANDOM" --network none "$@"; }

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_http URL SECONDS: until URL answers 200.
wait_http() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -sf --max-time 5 -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# ---------------------------------------------------------------- what is in each image
# check_image REF ENTRYPOINT FILE...: archive config (user, entrypoint, labels) and exactly these files.
check_image() {
  local ref=$1 entrypoint=$2 name archive config files expected
  shift 2
  name=${ref##*/}
  name=${name%%:*}
  archive=$OUT/$name.oci.tar
  [[ -s $archive ]] || fail "$archive is missing"
  # The name an import (ctr images import, kind load image-archive) gives the image.
  local named
  named=$(tar -xOf "$archive" index.json | json 'd["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]')
  [[ $named == "$ref" ]] || fail "$archive names its image $named, not $ref"
  config=$(skopeo inspect --config "oci-archive:$archive")
  [[ $(json 'd["config"]["User"]' <<<"$config") == 65532:65532 ]] || fail "$name does not run as 65532:65532"
  [[ $(json '" ".join(d["config"]["Entrypoint"])' <<<"$config") == "$entrypoint" ]] ||
    fail "$name: entrypoint is not $entrypoint"
  podman create --name "$NAME-files" "$ref" >/dev/null
  files=$(podman export "$NAME-files" | tar -t | grep -v '/$' | sort | tr '\n' ' ')
  podman rm "$NAME-files" >/dev/null
  expected=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  [[ $files == "$expected" ]] || fail "$name holds [$files], expected [$expected]"
  if podman run --rm --runtime runc --entrypoint /bin/sh "$ref" -c true >/dev/null 2>&1; then
    fail "$name has a shell"
  fi
  ok "$name: archive names $ref; user 65532, entrypoint $entrypoint, files: $expected(no shell)"
}

# check_labels REF: the OCI labels name the chart's appVersion, this commit and the source.
check_labels() {
  local ref=$1 name config version source head
  name=${ref##*/}
  name=${name%%:*}
  config=$(skopeo inspect --config "oci-archive:$OUT/$name.oci.tar")
  version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ROOT/charts/otlp-lb/Chart.yaml")
  source=$(sed -n '/^sources:/{n;s/^ *- *//p}' "$ROOT/charts/otlp-lb/Chart.yaml")
  head=$(git -C "$ROOT" rev-parse HEAD)
  [[ $ref == *:$version ]] || fail "$ref is not tagged with the chart's appVersion $version"
  label() { json "d['config']['Labels']['org.opencontainers.image.$1']" <<<"$config"; }
  [[ $(label version) == "$version" ]] || fail "$name: version label $(label version), chart says $version"
  [[ $(label revision) == "$head" || $(label revision) == "$head-dirty" ]] ||
    fail "$name: revision label $(label revision) is not HEAD ($head)"
  [[ $(label source) == "$source" ]] || fail "$name: source label $(label source), chart says $source"
  ok "$name: tagged $version, labels version $version, revision $(label revision), source $source"
}

# ---------------------------------------------------------------- otlp-lb
test_data_plane_static() {
  local f out rc=0
  check_image "$LB" /otlp-lb etc/group etc/hosts etc/passwd etc/ssl/certs/ca-certificates.crt otlp-lb
  check_labels "$LB"
  out=$(once "$LB" --version)
  [[ $out == "otlp-lb ${LB##*:}" ]] || fail "otlp-lb --version printed '$out'"
  ok "otlp-lb --version: $out"
  for f in "$ROOT"/config/examples/*.yaml; do
    out=$(once -v "$f:/etc/otlp-lb/config.yaml:ro" "$LB" \
      --config /etc/otlp-lb/config.yaml --validate 2>&1) || fail "otlp-lb --validate $f: $out"
    [[ $out == *"/etc/otlp-lb/config.yaml: valid"* ]] || fail "otlp-lb --validate $f printed: $out"
    ok "otlp-lb --validate config/examples/${f##*/}"
  done
  printf 'loadbalancing:\n  resolver:\n    static: {hostnames: [a:4317]}\n  routing_kye: traceID\n' >"$WORK/bad.yaml"
  out=$(once -v "$WORK/bad.yaml:/etc/otlp-lb/config.yaml:ro" "$LB" 2>&1) || rc=$?
  [[ $rc == 2 && $out == *routing_kye* ]] || fail "a misspelt key gave exit $rc: $out"
  ok "otlp-lb with a misspelt key exits 2 naming it"
}

test_data_plane_run() {
  local grpc http metrics s1 a1 s2 a2 wal report spans pool state code
  read -r grpc http metrics s1 a1 s2 a2 <<<"$(free_ports 7)"
  "$TOOLS" sink --grpc "127.0.0.1:$s1" --admin "127.0.0.1:$a1" --name one >"$WORK/sink1.log" 2>&1 &
  PIDS+=($!)
  "$TOOLS" sink --grpc "127.0.0.1:$s2" --admin "127.0.0.1:$a2" --name two >"$WORK/sink2.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$a1/healthz" 10 && wait_http "http://127.0.0.1:$a2/healthz" 10 ||
    fail "the sinks did not start: $(cat "$WORK"/sink*.log)"
  # A DNS server naming the second sink, as a cluster's DNS names a Service, and answering NXDOMAIN for every
  # other name (localhost too, so that only the image's /etc/hosts can name the first).
  dns=127.53.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
  dnsmasq --keep-in-foreground --conf-file=/dev/null --listen-address="$dns" --bind-interfaces --port 53 \
    --no-resolv --no-hosts --user=root --pid-file= --address=/sinks.otlp-lb.test/127.0.0.1 --address='/#/' \
    --log-queries --log-facility=- >"$WORK/dns.log" 2>&1 &
  PIDS+=($!)
  echo "nameserver $dns" >"$WORK/resolv.conf"
  # The write-ahead log's volume belongs to the user the image runs as, as a pod's fsGroup makes it.
  wal=$WORK/wal
  mkdir -m 0700 "$wal"
  chown 65532:65532 "$wal"
  cat >"$WORK/lb.yaml" <<EOF
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$grpc}
      http: {endpoint: 127.0.0.1:$http}
loadbalancing:
  routing_key: traceID
  protocol:
    otlp: {timeout: 5s, tls: {insecure: true}}
  sending_queue: {ack: queued, storage: /var/lib/otlp-lb}
  resolver:
    static: {hostnames: [localhost:$s1, sinks.otlp-lb.test:$s2]}
telemetry:
  metrics: {address: 127.0.0.1:$metrics}
EOF
  # Host network, listening on loopback only; --no-hosts leaves the image's own /etc/hosts to name localhost.
  "${RUN[@]}" -d --name "$NAME-lb" --network host --no-hosts -v "$WORK/resolv.conf:/etc/resolv.conf:ro" \
    -v "$WORK/lb.yaml:/etc/otlp-lb/config.yaml:ro" -v "$wal:/var/lib/otlp-lb" "$LB" >/dev/null
  wait_http "http://127.0.0.1:$metrics/readyz" 30 || fail "otlp-lb never ready: $(podman logs "$NAME-lb" 2>&1 | tail -20)"
  ok "otlp-lb ready (/readyz 200) as 65532 on a read-only root"
  pool=$(curl -sf --max-time 5 "http://127.0.0.1:$metrics/debug/pool")
  timeout 120 "$TOOLS" loadgen --endpoint "127.0.0.1:$grpc" --traces 500 --spans-per-trace 5 --quiet --report-json \
    >"$WORK/loadgen.json" || fail "loadgen: $(cat "$WORK/loadgen.json")"
  [[ $(json 'd["sent_items"]' <"$WORK/loadgen.json") == 2500 && $(json 'd["failed_items"]' <"$WORK/loadgen.json") == 0 ]] ||
    fail "not every span was acknowledged: $(cat "$WORK/loadgen.json")"
  # Acknowledged once in the log; delivered from it in the background.
  for ((i = 0; i < 100; i++)); do
    spans=0
    for a in "$a1" "$a2"; do
      report=$(curl -sf --max-time 5 "http://127.0.0.1:$a/report")
      [[ $(json 'd["traces"]["duplicate_spans"]' <<<"$report") == 0 ]] || fail "duplicate spans: $report"
      spans=$((spans + $(json 'd["traces"]["spans"]' <<<"$report")))
    done
    ((spans >= 2500)) && break
    sleep 0.1
  done
  [[ $spans == 2500 ]] || fail "the sinks received $spans of 2500 spans"
  for a in "$a1" "$a2"; do
    (($(curl -sf --max-time 5 "http://127.0.0.1:$a/report" | json 'd["traces"]["spans"]') > 0)) ||
      fail "a backend received nothing (pool: $pool)"
  done
  [[ -n $(find "$wal" -type f -user 65532) ]] || fail "no write-ahead log written to the volume: $(ls -lR "$wal")"
  ok "2500 spans acknowledged through the write-ahead log on the volume ($(find "$wal" -type f | wc -l) files," \
    "owner 65532), delivered once each to both sinks (named by /etc/hosts and by DNS)"
  podman stop -t 30 "$NAME-lb" >/dev/null
  state=$(podman inspect --format '{{.State.ExitCode}}' "$NAME-lb")
  [[ $state == 0 ]] || fail "otlp-lb exited $state on SIGTERM: $(podman logs "$NAME-lb" 2>&1 | tail -20)"
  podman rm "$NAME-lb" >/dev/null
  ok "otlp-lb drains and exits 0 on SIGTERM"
}

# ---------------------------------------------------------------- otlp-lb-operator
test_operator() {
  local out rc=0
  check_image "$OPERATOR" "/otlp-lb-operator" etc/group etc/hosts etc/passwd otlp-lb-operator
  check_labels "$OPERATOR"
  out=$(once "$OPERATOR" --version)
  [[ $out == "otlp-lb-operator ${OPERATOR##*:}" ]] || fail "otlp-lb-operator --version printed '$out'"
  ok "otlp-lb-operator --version: $out"
  once "$OPERATOR" crd >"$WORK/crd.yaml"
  cmp -s "$WORK/crd.yaml" "$ROOT/crds/loadbalancedcollector.yaml" || fail "the image's CRD differs from crds/"
  ok "otlp-lb-operator crd equals crds/loadbalancedcollector.yaml"
  out=$(once "$OPERATOR" run --leader-elect=false 2>&1) || rc=$?
  [[ $rc != 0 && $rc != 124 && $out == *config* ]] || fail "the operator without a cluster: exit $rc: $out"
  ok "otlp-lb-operator without a cluster exits $rc: $(tail -n 1 <<<"$out" | cut -c1-120)"
}

# ---------------------------------------------------------------- test images
test_otelcol() {
  local grpc health out spans
  check_image "$OTELCOL" /otelcol-lb etc/group etc/hosts etc/passwd otelcol-lb
  out=$(once "$OTELCOL" --version)
  [[ $out == *"${OTELCOL##*:}"* ]] || fail "otelcol-lb --version printed '$out'"
  ok "otelcol-lb --version: $out"
  read -r grpc health <<<"$(free_ports 2)"
  mkdir -m 0700 "$WORK/otelcol"
  chown 65532:65532 "$WORK/otelcol"
  cat >"$WORK/otelcol.yaml" <<EOF
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$grpc}
exporters:
  file: {path: /out/traces.jsonl}
extensions:
  health_check: {endpoint: 127.0.0.1:$health}
service:
  extensions: [health_check]
  telemetry: {metrics: {level: none}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
EOF
  once -v "$WORK/otelcol.yaml:/etc/otelcol.yaml:ro" "$OTELCOL" \
    validate --config=/etc/otelcol.yaml >/dev/null 2>&1 || fail "otelcol-lb validate rejected its config"
  "${RUN[@]}" -d --name "$NAME-otelcol" --network host \
    -v "$WORK/otelcol.yaml:/etc/otelcol.yaml:ro" -v "$WORK/otelcol:/out" "$OTELCOL" --config=/etc/otelcol.yaml >/dev/null
  wait_http "http://127.0.0.1:$health/" 30 || fail "otelcol-lb never healthy: $(podman logs "$NAME-otelcol" 2>&1 | tail -20)"
  timeout 120 "$TOOLS" loadgen --endpoint "127.0.0.1:$grpc" --traces 100 --spans-per-trace 5 --quiet --report-json \
    >"$WORK/loadgen.json" || fail "loadgen to otelcol-lb: $(cat "$WORK/loadgen.json")"
  for ((i = 0; i < 50; i++)); do
    spans=$(python3 - "$WORK/otelcol/traces.jsonl" <<'EOF'
import json, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except FileNotFoundError:
    lines = []
print(sum(len(s["spans"]) for l in lines if l.strip() for r in json.loads(l)["resourceSpans"] for s in r["scopeSpans"]))
EOF
    )
    ((spans >= 500)) && break
    sleep 0.2
  done
  [[ $spans == 500 ]] || fail "otelcol-lb wrote $spans of 500 spans"
  podman rm -f -t 10 "$NAME-otelcol" >/dev/null
  ok "otelcol-lb as 65532 on a read-only root: healthy, 500 spans written to the mounted volume"
}

test_pause() {
  local out state
  check_image "$PAUSE" /pause pause
  out=$(once "$PAUSE" -v)
  [[ $out == "pause.c v${PAUSE##*:}" ]] || fail "pause -v printed '$out'"
  ok "pause -v: $out"
  "${RUN[@]}" -d --name "$NAME-pause" --network none "$PAUSE" >/dev/null
  sleep 1
  [[ $(podman inspect --format '{{.State.Running}}' "$NAME-pause") == true ]] || fail "pause did not stay up"
  podman stop -t 10 "$NAME-pause" >/dev/null
  state=$(podman inspect --format '{{.State.ExitCode}}' "$NAME-pause")
  [[ $state == 0 ]] || fail "pause exited $state on SIGTERM"
  podman rm "$NAME-pause" >/dev/null
  ok "pause stays up and exits 0 on SIGTERM"
}

# ---------------------------------------------------------------- sizes
print_sizes() {
  local ref name
  echo "image sizes (uncompressed in the store / archive):"
  for ref in "${PRODUCT[@]}" "${E2E[@]}"; do
    name=${ref##*/}
    name=${name%%:*}
    printf '  %-48s %6s MB / %6s MB\n' "$ref" \
      "$(podman image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.1f", $1 / 1e6}')" \
      "$(stat -c %s "$OUT/$name.oci.tar" | awk '{printf "%.1f", $1 / 1e6}')"
  done
}

TESTS=(data_plane_static data_plane_run operator otelcol pause)
for t in "${@:-${TESTS[@]}}"; do
  [[ " ${TESTS[*]} " == *" $t "* ]] || fail "unknown test '$t'; known: ${TESTS[*]}"
  "test_$t"
done
print_sizes
echo "image-tests: all passed"
