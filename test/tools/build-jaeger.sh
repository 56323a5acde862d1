#!/usr/bin/env bash
# Builds Jaeger v2 (an OpenTelemetry-collector distribution: OTLP in, query API out) from the Go
# module proxy, once, into a cache directory OUTSIDE the repo, and prints the binary's path on
# stdout (last line):
#
#   ${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/jaeger-<ver>/jaeger
#
# A binary already there (with this recipe's revision) is reused at once. Progress goes to stderr,
# so callers can use `bin=$(test/tools/build-jaeger.sh)`. Concurrent callers are serialised with
# flock; the second one finds the finished binary and returns.
#
# Needs: go >= 1.26 on PATH, access to the Go module proxy (cold build only).
set -euo pipefail

JAEGER_VERSION="v1.75.0" # github.com/jaegertracing/jaeger; cmd/jaeger is the v2 binary
# Bump when the build recipe changes: a cached binary with another revision is rebuilt.
BUILD_REV="1"

TOOLS_DIR="${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}"
OUT_DIR="$TOOLS_DIR/jaeger-$JAEGER_VERSION"
BIN="$OUT_DIR/jaeger"

NAME=jaeger
RESULT="$BIN"
ready() { [[ -x "$BIN" && "$(cat "$OUT_DIR/.build-rev" 2>/dev/null)" == "$BUILD_REV" ]]; }
# shellcheck source=lib/cached-build.sh
source "$(dirname "$0")/lib/cached-build.sh"
cached_build_begin

PKG="github.com/jaegertracing/jaeger/cmd/jaeger"

log "building $PKG@$JAEGER_VERSION into $OUT_DIR with $(go version) (about 3 min cold on 2 cores)"
# A throwaway module: `go get -tool` pins jaeger and its whole dependency graph in its go.mod.
# go get lists every module it adds (several hundred lines): kept in a log shown only on failure.
(cd "$WORK" && go mod init apiproxy.local/jaeger >/dev/null 2>&1 && go get -tool "$PKG@$JAEGER_VERSION" >"$WORK/get.log" 2>&1) \
  || { tail -30 "$WORK/get.log" >&2; log "go get $PKG@$JAEGER_VERSION failed"; exit 1; }
log "modules resolved in $((SECONDS - START))s; compiling"
# Stamp the version as jaeger's own Makefile does, so `jaeger version` and the query API's
# build info report it (otherwise they say v0.0.0).
VPKG="github.com/jaegertracing/jaeger/internal/version"
LDFLAGS="-s -w -X $VPKG.latestVersion=$JAEGER_VERSION -X $VPKG.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
(cd "$WORK" && go build -trimpath -ldflags "$LDFLAGS" -o "$OUT_DIR/.jaeger.partial" "$PKG" >&2)
# Replaced atomically, so a test still running an older binary is not disturbed.
mv -f "$OUT_DIR/.jaeger.partial" "$BIN"
echo "$BUILD_REV" >"$OUT_DIR/.build-rev"
ready || { log "build finished but $BIN is missing"; exit 1; }
log "built in $((SECONDS - START))s -> $BIN"
echo "$BIN"
