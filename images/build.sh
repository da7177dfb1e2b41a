#!/usr/bin/env bash
# Build the container images, without a daemon (podman) or with Docker.
#
#   images/build.sh          otlp-lb and otlp-lb-operator (make images)
#   images/build.sh --e2e    the end-to-end test images: otelcol-lb and pause (make e2e-images)
#
# Each image is one static binary on an empty base (FROM scratch), built from the repository's own
# Dockerfiles. Output in target/images/: one archive per image, <name>.oci.tar (with Docker, <name>.docker.tar
# from `docker save`), and the image in the engine's local store.
#
#   CONTAINER_ENGINE   podman (default) or docker
#   IMAGE_REGISTRY     where the product images are named (default ghcr.io/otlp-lb), e.g. localhost:5000/otlp-lb
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/images
CHART=$ROOT/charts/otlp-lb/Chart.yaml
ENGINE=${CONTAINER_ENGINE:-podman}
REGISTRY=${IMAGE_REGISTRY:-ghcr.io/otlp-lb}
ARCHIVE=oci.tar
[[ $ENGINE == docker ]] && ARCHIVE=docker.tar
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/otlp-lb/tools}
# The test images are local only, and named so.
E2E_REGISTRY=localhost/otlp-lb-e2e

die() { echo "images: error: $*" >&2; exit 1; }
note() { echo "images: $*"; }

case ${1:-} in
  "") SET=product ;;
  --e2e) SET=e2e ;;
  *) die "usage: images/build.sh [--e2e]" ;;
esac
case $ENGINE in
  podman | docker)
    command -v "$ENGINE" >/dev/null || die "$ENGINE not found (apt-get install podman, or CONTAINER_ENGINE=docker)"
    ;;
  *) die "CONTAINER_ENGINE must be podman or docker, not '$ENGINE'" ;;
esac

# The chart's appVersion tags the images; the operator names the data plane image after its own crate version.
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$CHART")
CRATE_VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
[[ -n $VERSION ]] || die "no appVersion in $CHART"
[[ $VERSION == "$CRATE_VERSION" ]] ||
  die "the chart's appVersion ($VERSION) differs from the workspace version ($CRATE_VERSION)," \
    "which the operator names its data plane image with"
SOURCE=$(sed -n '/^sources:/{n;s/^ *- *//p}' "$CHART")
[[ -n $SOURCE ]] || die "no sources entry in $CHART"
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $REVISION != unknown && -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  REVISION+=-dirty
fi

# stage NAME FILE...: a fresh build context target/images/context/NAME holding FILEs (and etc/ when given).
stage() {
  local ctx=$OUT/context/$1
  shift
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a "$@" "$ctx/"
}

# build NAME REF CONTAINERFILE [--label ...]: build, tag and write its archive, target/images/NAME.oci.tar
# (podman's OCI archive) or NAME.docker.tar (`docker save`).
build() {
  local name=$1 ref=$2 file=$3 archive=$OUT/$1.$ARCHIVE id old
  shift 3
  old=$("$ENGINE" image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
  "$ENGINE" build --quiet --file "$file" --tag "$ref" "$@" "$OUT/context/$name" >/dev/null
  id="$ref $("$ENGINE" image inspect --format '{{.Id}}' "$ref")"
  # The image this one replaces, unless another name or image still uses it.
  if [[ -n $old && $id != *" $old" ]]; then
    "$ENGINE" image rm "$old" >/dev/null 2>&1 || true
  fi
  # An unchanged image of the same name keeps its archive (which names it).
  if [[ -f $archive && "$(cat "$archive.id" 2>/dev/null)" == "$id" ]]; then
    return
  fi
  rm -f "$archive" "$archive.id"
  if [[ $ENGINE == podman ]]; then
    podman save --quiet --format oci-archive --output "$archive.tmp" "$ref"
  else
    docker save --output "$archive.tmp" "$ref"
  fi
  mv "$archive.tmp" "$archive"
  echo "$id" >"$archive.id"
}

# The static binaries: glibc linked statically (+crt-static), so no libc in the image and glibc's allocator and
# resolver (/etc/hosts, then DNS) in the process. A target dir of their own keeps them cached.
build_product() {
  local triple bins
  triple=$(uname -m)-unknown-linux-gnu
  bins=$ROOT/target/image-build/$triple/image
  note "cargo build --profile image --target $triple (static)"
  env "CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C target-feature=+crt-static" \
    CARGO_TARGET_DIR="$ROOT/target/image-build" \
    cargo build --locked --profile image --target "$triple" \
    -p dataplane --bin otlp-lb --bin otlp-lb-tools -p operator --bin otlp-lb-operator
  # Labels given here rather than by ARGs in the Dockerfiles: a changed build argument does not invalidate
  # buildah's cached LABEL step.
  local args=(--label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.revision=$REVISION"
    --label "org.opencontainers.image.source=$SOURCE")
  stage otlp-lb "$bins/otlp-lb" "$ROOT/images/rootfs/etc"
  mkdir -p "$OUT/context/otlp-lb/etc/ssl/certs"
  cp "$(ca_bundle)" "$OUT/context/otlp-lb/etc/ssl/certs/ca-certificates.crt"
  build otlp-lb "$REGISTRY/otlp-lb:$VERSION" "$ROOT/dataplane/Dockerfile" "${args[@]}"
  stage otlp-lb-operator "$bins/otlp-lb-operator" "$ROOT/images/rootfs/etc"
  build otlp-lb-operator "$REGISTRY/otlp-lb-operator:$VERSION" "$ROOT/operator/Dockerfile" "${args[@]}"
  # The load generator and sink the image tests drive the data plane with.
  cp "$bins/otlp-lb-tools" "$OUT/otlp-lb-tools"
  REFS=("$REGISTRY/otlp-lb:$VERSION" "$REGISTRY/otlp-lb-operator:$VERSION")
}

# The system's CA bundle: the roots the data plane verifies backends with when tls.ca_file is not given.
ca_bundle() {
  local f
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    [[ -s $f ]] && { echo "$f"; return; }
  done
  die "no CA bundle found (apt-get install ca-certificates)"
}

build_e2e() {
  # shellcheck source=../e2e/tools.env
  source "$ROOT/e2e/tools.env"
  # pause.c and its tag from the pinned Kubernetes module (the one `make tools` builds the control plane from).
  local go=go dir tag
  command -v go >/dev/null || go=/usr/local/go/bin/go
  dir=$(GOMODCACHE=${TOOLS_GOMODCACHE:-$TOOLS_DIR/go/pkg/mod} GOFLAGS=-modcacherw GOTOOLCHAIN=local \
    "$go" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -r $dir/build/pause/linux/pause.c ]] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$KUBERNETES_VERSION"
  tag=$(sed -n 's/^TAG ?= *//p' "$dir/build/pause/Makefile")
  [[ -n $tag ]] || die "no TAG in $dir/build/pause/Makefile"
  stage pause "$dir/build/pause/linux/pause.c"
  ${CC:-cc} -Os -s -Wall -Werror -static "-DVERSION=v$tag" -o "$OUT/context/pause/pause" "$OUT/context/pause/pause.c"
  build pause "$E2E_REGISTRY/pause:$tag" "$ROOT/images/pause.Containerfile" --label "org.opencontainers.image.version=$tag"

  local otelcol=$TOOLS_DIR/bin/otelcol-lb otelcol_version=${OTELCOL_CONTRIB_VERSION#v}
  [[ -x $otelcol ]] || die "$otelcol is missing: run 'make tools'"
  stage otelcol-lb "$otelcol" "$ROOT/images/rootfs/etc"
  build otelcol-lb "$E2E_REGISTRY/otelcol-lb:$otelcol_version" "$ROOT/images/otelcol-lb.Containerfile" \
    --label "org.opencontainers.image.version=$otelcol_version"
  REFS=("$E2E_REGISTRY/otelcol-lb:$otelcol_version" "$E2E_REGISTRY/pause:$tag")
}

mkdir -p "$OUT"
start=$SECONDS
"build_$SET"
# The names the tests and the end-to-end node look the images up by.
printf '%s\n' "${REFS[@]}" >"$OUT/$SET.refs"
for ref in "${REFS[@]}"; do
  name=${ref##*/}
  name=${name%%:*}
  size=$("$ENGINE" image inspect --format '{{.Size}}' "$ref")
  printf 'images: %-48s %5s MB  %s\n' "$ref" "$(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1e6}')" \
    "target/images/$name.$ARCHIVE"
done
note "done in $((SECONDS - start))s"
