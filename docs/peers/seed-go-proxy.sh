#!/bin/sh
# The seed Go proxy (TerrySiu98/api-proxy) as a bench peer. Build it from its
# own checkout (`go build -o api-proxy`) and set SEED_PROXY_BIN to the binary.
# It listens on :5000 (not configurable) and logs several lines per request
# to ./api-proxy.log, so it runs in a directory of its own, emptied at each
# start, with a config written from the bench's environment.
set -e
: "${SEED_PROXY_BIN:?set SEED_PROXY_BIN to the seed binary}"
dir="${TMPDIR:-/tmp}/api-proxy-bench-seed"
rm -rf "$dir"
mkdir -p "$dir"
redirects="\"${BENCH_MODEL_REDIRECT%%=*}\":\"${BENCH_MODEL_REDIRECT#*=}\""
cat > "$dir/config.json" <<JSON
{"api":{"url":"$BENCH_UPSTREAM_URL/v1/chat/completions","key":"sk-bench-upstream"},
 "allowed_keys":["$BENCH_CLIENT_KEY"], "model_redirects":{$redirects}}
JSON
cd "$dir"
exec env CONFIG_PATH="$dir/config.json" "$SEED_PROXY_BIN"
