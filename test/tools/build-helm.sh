#!/usr/bin/env bash
# Builds helm v3 and helm v4 from source with the Go toolchain (the Go module
# proxy is the only way to get them here) into a cache outside the repo:
#   ${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/helm-v3.22.0/helm
#   ${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/helm-v4.3.1/helm
# A binary already present (and runnable) is reused. Prints the two paths.
# Set HELM_SKIP_V4=1 to build only v3. Cold build on 2 cores: v3 ~2.5 min, v4 ~3 min (both build
# fine with Go 1.26); a rebuild with a warm Go cache takes seconds.
set -euo pipefail

TOOLS_DIR="${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}"
HELM3_VERSION="v3.22.0"
HELM4_VERSION="v4.3.1"

build() { # $1 major (v3|v4), $2 version
  local major="$1" ver="$2" dir="$TOOLS_DIR/helm-$2" mod="helm.sh/helm/$1"
  # A binary built by this script reports the exact version (set with -X below).
  if [[ -x "$dir/helm" ]] && [[ "$("$dir/helm" version --template '{{.Version}}' 2>/dev/null)" == "$ver" ]]; then
    echo "reuse $dir/helm ($ver)" >&2
    return 0
  fi
  mkdir -p "$dir"
  local start=$SECONDS
  echo "building $mod/cmd/helm@$ver into $dir ..." >&2
  # As helm's Makefile: version stamp, and (v3) the default Kubernetes version for `helm template`
  # and lint, derived from the client-go it is built with (v3 otherwise falls back to v1.20.0;
  # v4 reads it from the Go build info by itself).
  local ldflags="-s -w -X $mod/internal/version.version=$ver -X $mod/internal/version.gitTreeState=clean"
  if [[ "$major" == v3 ]]; then
    local gomod cg k8s_major k8s_minor
    gomod="$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    cg="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")" # v0.MINOR.PATCH
    k8s_major=$(( $(cut -d. -f1 <<<"${cg#v}") + 1 ))
    k8s_minor=$(cut -d. -f2 <<<"$cg")
    ldflags+=" -X $mod/pkg/lint/rules.k8sVersionMajor=$k8s_major -X $mod/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
    ldflags+=" -X $mod/pkg/chartutil.k8sVersionMajor=$k8s_major -X $mod/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  fi
  # CGO off: a static binary, no C toolchain needed.
  CGO_ENABLED=0 GOBIN="$dir" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "$mod/cmd/helm@$ver"
  echo "built $dir/helm in $((SECONDS - start))s" >&2
}

command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }

build v3 "$HELM3_VERSION"
echo "$TOOLS_DIR/helm-$HELM3_VERSION/helm"
if [[ "${HELM_SKIP_V4:-0}" != 1 ]]; then
  build v4 "$HELM4_VERSION"
  echo "$TOOLS_DIR/helm-$HELM4_VERSION/helm"
fi
