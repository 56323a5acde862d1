# Sourced by build-jaeger.sh, build-k8s.sh and build-compose.sh: what a cached Go build needs around
# its own recipe. The caller sets NAME, OUT_DIR (in the cache), RESULT (the path it prints on stdout)
# and BUILD_REV, and defines `ready` (true when OUT_DIR holds current output of this revision).
# Progress goes to stderr; the last line on stdout is RESULT.

log() { printf '[build-%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*" >&2; }

# Prints RESULT and exits when the cache is current. Otherwise waits for the build lock (concurrent
# callers, e.g. jest workers, build once: the second finds the finished output and returns), then
# makes WORK, a scratch directory removed on exit, and sets Go up for static, reproducible builds
# with the local toolchain (no toolchain download).
cached_build_begin() {
  if ready; then echo "$RESULT"; exit 0; fi
  command -v go >/dev/null 2>&1 || { log "go is not on PATH (needed to build $NAME)"; exit 1; }
  mkdir -p "$OUT_DIR"
  exec 9>"$OUT_DIR/.lock" # fd 9 stays open, and the lock held, until the script exits
  if command -v flock >/dev/null 2>&1; then
    log "waiting for build lock $OUT_DIR/.lock"
    flock 9
  fi
  if ready; then echo "$RESULT"; exit 0; fi
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/api-proxy-build-$NAME.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  export CGO_ENABLED=0
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOWORK=off
  START=$SECONDS
}
