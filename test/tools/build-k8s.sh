#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy, once, into a cache
# directory OUTSIDE the repo, and prints that directory on stdout (last line).
#
#   ${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/k8s-<ver>-etcd-<ver>/{kube-apiserver,etcd}
#
# When both binaries are already there it prints the path and exits at once.
# Progress goes to stderr, so callers can use `dir=$(test/tools/build-k8s.sh)`.
# Concurrent callers (e.g. two jest workers) are serialised with flock; the
# second one finds the finished binaries and returns.
#
# Needs: go >= 1.26 on PATH, access to the Go module proxy (cold build only).
set -euo pipefail

K8S_VERSION="v1.37.2"    # k8s.io/kubernetes; staging modules are v0.37.2
ETCD_VERSION="v3.7.3"    # go.etcd.io/etcd/server/v3
# Bump when the build recipe changes (flags, patches): cached binaries with
# another revision are rebuilt.
BUILD_REV="2"

TOOLS_DIR="${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}"
OUT_DIR="$TOOLS_DIR/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

NAME=k8s
RESULT="$OUT_DIR"
ready() { [[ -x "$OUT_DIR/kube-apiserver" && -x "$OUT_DIR/etcd" && "$(cat "$OUT_DIR/.build-rev" 2>/dev/null)" == "$BUILD_REV" ]]; }
# shellcheck source=lib/cached-build.sh
source "$(dirname "$0")/lib/cached-build.sh"
cached_build_begin

# Binaries from an older recipe are rebuilt and replaced atomically (mv
# within $OUT_DIR), so a test still running the old ones is not disturbed.
fresh() { [[ -x "$OUT_DIR/$1" && "$(cat "$OUT_DIR/.build-rev" 2>/dev/null)" == "$BUILD_REV" ]]; }

LDFLAGS="-s -w"

build_etcd() {
  if fresh etcd; then log "etcd already built"; return; fi
  local d="$WORK/etcd"
  mkdir -p "$d"
  cat >"$d/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  cat >"$d/go.mod" <<EOF
module apiproxy.local/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  log "etcd $ETCD_VERSION: resolving modules"
  (cd "$d" && go mod tidy >&2)
  log "etcd $ETCD_VERSION: compiling"
  (cd "$d" && go build -trimpath -ldflags "$LDFLAGS" -o "$OUT_DIR/.etcd.partial" . >&2)
  mv -f "$OUT_DIR/.etcd.partial" "$OUT_DIR/etcd"
  log "etcd built in $((SECONDS - START))s -> $OUT_DIR/etcd"
}

build_kube_apiserver() {
  if fresh kube-apiserver; then log "kube-apiserver already built"; return; fi
  local d="$WORK/kas"
  local minor="v0.${K8S_VERSION#v1.}"   # v1.37.2 -> v0.37.2
  mkdir -p "$d"
  log "kube-apiserver $K8S_VERSION: downloading k8s.io/kubernetes go.mod"
  local modfile
  modfile="$(cd "$d" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$modfile" ]] || { log "could not find go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  # Every staging module (`k8s.io/x => ./staging/src/k8s.io/x`) must be
  # replaced by its published v0.Y.Z, because k8s.io/kubernetes requires
  # them as v0.0.0 and its own replace directives do not apply to us.
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$modfile")"
  [[ -n "$staging" ]] || { log "no staging modules found in $modfile"; exit 1; }
  {
    echo "module apiproxy.local/kube-apiserver"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $minor"; done
    echo ")"
  } >"$d/go.mod"
  log "kube-apiserver: $(echo "$staging" | wc -l) staging modules replaced with $minor"
  log "kube-apiserver $K8S_VERSION: resolving modules (go get)"
  (cd "$d" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >&2)
  # Stamp the version as the release build does, so /version reports
  # v1.37.2 instead of v0.0.0-master (clients such as helm check it).
  local major="${K8S_VERSION#v}"; major="${major%%.*}"
  local minor_num="${K8S_VERSION#v*.}"; minor_num="${minor_num%%.*}"
  local vpkg="k8s.io/component-base/version"
  local kas_ldflags="$LDFLAGS -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor_num"
  kas_ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "kube-apiserver $K8S_VERSION: compiling (several minutes on 2 cores)"
  (cd "$d" && go build -trimpath -ldflags "$kas_ldflags" -o "$OUT_DIR/.kube-apiserver.partial" \
    k8s.io/kubernetes/cmd/kube-apiserver >&2)
  mv -f "$OUT_DIR/.kube-apiserver.partial" "$OUT_DIR/kube-apiserver"
  log "kube-apiserver built in $((SECONDS - START))s -> $OUT_DIR/kube-apiserver"
}

log "building into $OUT_DIR with $(go version)"
build_etcd
build_kube_apiserver
echo "$BUILD_REV" >"$OUT_DIR/.build-rev"
ready || { log "build finished but binaries are missing"; exit 1; }
log "done in $((SECONDS - START))s"
echo "$OUT_DIR"
