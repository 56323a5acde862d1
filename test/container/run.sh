#!/usr/bin/env bash
# Container end-to-end: builds the project's Dockerfile unchanged and runs the image.
#
#   1. test/tools/build-base-image.sh   stand-in for docker.io/library/node:24-bookworm-slim (cached)
#   2. buildah bud --pull=never --isolation chroot (vfs storage) -t api-proxy:test .
#   3. image config: USER 10001:10001, CMD ["node","--max-semi-space-size=8","dist/main.js"], no ENTRYPOINT, EXPOSE 5000,
#      CONFIG_PATH/PORT/NODE_ENV, no HEALTHCHECK
#   4. buildah run the image with its default config: /health answers
#   5. buildah run with a config (mounted) pointing at a fake upstream on the host (chroot isolation
#      shares the host network): /health, /health/ready, a proxied chat completion carrying the
#      upstream key, 401 without a client key, Prometheus /metrics, the process runs as uid 10001
#   6. SIGTERM: readiness turns 503 while draining, then node exits 0
#   7. WORKERS=2: a primary and two workers, all uid 10001, drained together on SIGTERM
#   8. compose.yaml as compose-go normalizes it: the example upstream and the gateway started with
#      the services' own command, environment and mounts in one private network namespace (service
#      names mapped to loopback); a chat completion and a streamed one answered by the upstream
#      through the gateway with the README's key; both stop on SIGTERM
#   9. its real-upstream variant uncommented: the key files under /run/secrets, unreadable as root
#      0400, then read once owned by uid 10001; the client key from its secret is accepted; an
#      edit of the mounted config on the host applies without a restart
#
# `podman run` does not work in this sandbox; buildah run with chroot isolation does.
# Prints timings; exits non-zero on the first failed check. Ends with "N passed, 0 failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
export PATH="$REPO/node_modules/.bin:$PATH" # Node 24 for the fake upstream (any node works)

IMAGE="${API_PROXY_TEST_IMAGE:-localhost/api-proxy:test}"
BUILDAH=(buildah --storage-driver vfs)
t0=$SECONDS
passed=0
failed=0
ctrs=()
pids=()
WORK="$(mktemp -d /tmp/api-proxy-container.XXXXXX)"

log() { echo "[container +$((SECONDS - t0))s] $*" >&2; }
pass() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL $*"; }
check() { # description, command...
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

cleanup() {
  local pid ctr live
  # Only the background jobs still running: a recorded pid that has exited may belong to another
  # process by now (this machine is shared).
  live="$(jobs -p)"
  for pid in "${pids[@]}"; do grep -qx "$pid" <<<"$live" && kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ctr in "${ctrs[@]}"; do "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; done
  # (|| true: under set -e a failed diagnostic would end the cleanup before $WORK is removed)
  if ((failed)) && [[ -f "$WORK/gateway.log" ]]; then echo "--- gateway log (tail)"; grep -v "\"msg\":\"request\"" "$WORK/gateway.log" | tail -15; curl -s "http://127.0.0.1:${gw_port:-0}/health/ready" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_http() { # url, seconds -> 0 when it answers 200
  local url="$1" deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" == 200 ]] && return 0
    sleep 0.2
  done
  return 1
}

# All node processes of a `buildah run` (its descendants), one per line: "pid ppid".
# (node 24 names its main thread "MainThread", so match the command line, not comm)
node_processes() {
  ps -eo pid=,ppid=,args= | awk -v root="$1" '
    { parent[$1] = $2; isnode[$1] = ($3 ~ /(^|\/)node$/) }
    END {
      for (pid in isnode) {
        if (!isnode[pid]) continue
        for (p = parent[pid]; p != "" && p > 1; p = parent[p]) if (p == root) { print pid, parent[pid]; break }
      }
    }'
}

# The node process of a single-process `buildah run`.
gateway_pid() {
  node_processes "$1" | awk 'NR == 1 { print $1 }'
}

need=()
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2) # brings up loopback in the compose section's network namespace
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

# --------------------------------------------------------------------------------------------
log "base image"
tb=$SECONDS
bash test/tools/build-base-image.sh
base_s=$((SECONDS - tb))

log "buildah bud -t $IMAGE ."
tb=$SECONDS
"${BUILDAH[@]}" bud --pull=never --isolation chroot --layers=false -q -t "$IMAGE" . >"$WORK/bud.log" 2>&1 \
  || { tail -40 "$WORK/bud.log"; exit 1; }
build_s=$((SECONDS - tb))
log "built in ${build_s}s"
# The previous api-proxy:test is now a dangling image (312 MB in vfs): drop those.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true

echo "image config"
"${BUILDAH[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json"
q() { node -e 'const i = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(JSON.stringify(eval(process.argv[2]) ?? null))' "$WORK/inspect.json" "$1"; }
check "USER is 10001:10001" test "$(q 'i.OCIv1.config.User')" == '"10001:10001"'
check 'CMD is ["node","--max-semi-space-size=8","dist/main.js"]' test "$(q 'i.OCIv1.config.Cmd')" == '["node","--max-semi-space-size=8","dist/main.js"]'
check "no ENTRYPOINT (node is the process, no shell or npm)" test "$(q 'i.OCIv1.config.Entrypoint ?? []')" == '[]'
check "EXPOSE 5000" test "$(q 'Object.keys(i.OCIv1.config.ExposedPorts ?? {})')" == '["5000/tcp"]'
envs="$(q 'i.OCIv1.config.Env')"
check "ENV CONFIG_PATH=/app/config/config.json" grep -q '"CONFIG_PATH=/app/config/config.json"' <<<"$envs"
check "ENV PORT=5000" grep -q '"PORT=5000"' <<<"$envs"
check "ENV NODE_ENV=production" grep -q '"NODE_ENV=production"' <<<"$envs"
check "no HEALTHCHECK" test "$(q 'i.Docker.config?.Healthcheck')" == "null"
echo "image size: $("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")"

# --------------------------------------------------------------------------------------------
echo "default config (nothing mounted)"
ctr="$("${BUILDAH[@]}" from --pull=never "$IMAGE")"; ctrs+=("$ctr")
check "runs as uid 10001 by default (image USER)" test "$("${BUILDAH[@]}" run --isolation chroot "$ctr" -- id -u)" == 10001
check "dist/ and node_modules/ are not writable by the runtime user" \
  "${BUILDAH[@]}" run --isolation chroot "$ctr" -- sh -c '! test -w /app/dist && ! test -w /app/node_modules'
check "no devDependencies in the image (typescript, jest)" \
  "${BUILDAH[@]}" run --isolation chroot "$ctr" -- sh -c '! test -e /app/node_modules/typescript && ! test -e /app/node_modules/jest'
port0="$(free_port)"
"${BUILDAH[@]}" run --isolation chroot --env PORT="$port0" "$ctr" -- node dist/main.js >"$WORK/default.log" 2>&1 &
pids+=("$!")
ts=$SECONDS
if wait_http "http://127.0.0.1:$port0/health" 60; then
  pass "/health answers with the image's default config ($((SECONDS - ts))s to healthy)"
else
  fail "/health with the default config"; tail -20 "$WORK/default.log"
fi

# --------------------------------------------------------------------------------------------
echo "gateway with a mounted config, against a fake upstream on the host"
up_port="$(free_port)"
gw_port="$(free_port)"
cat >"$WORK/upstream.mjs" <<'EOF'
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
const port = Number(process.argv[2]);
createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    // What the upstream received, kept here: the gateway redacts its key from what it answers.
    appendFileSync(process.argv[3], `${req.headers.authorization ?? ''}\n`);
    let model = null;
    try { model = JSON.parse(body).model; } catch {}
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: 'chatcmpl-fake', object: 'chat.completion', created: 0, model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello from the fake upstream' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      echo: { method: req.method, path: req.url, authorization: req.headers.authorization ?? null },
    }));
  });
}).listen(port, '127.0.0.1');
EOF
node "$WORK/upstream.mjs" "$up_port" "$WORK/upstream-auth.log" &
pids+=("$!")

# The key is mounted at /run/...: the config names it through /var/run (a symlink to /run in the
# image, as in Kubernetes pods). buildah would resolve a /var/run mount target on the HOST.
mkdir -p "$WORK/config" "$WORK/secrets"
echo "sk-FAKE-upstream-key" >"$WORK/secrets/api-key"
chmod 0644 "$WORK/secrets/api-key"
cat >"$WORK/config/config.json" <<EOF
{
  "upstreams": { "default": { "url": "http://127.0.0.1:$up_port/v1", "api_key_file": "/var/run/secrets/api-proxy/upstreams/default/api-key" } },
  "client_keys": [ { "id": "container-test", "key": "sk-client-FAKE-container-test" } ],
  "model_redirects": { "gpt-4": "gpt-4o" },
  "shutdown": { "drain_delay_ms": 1500, "timeout_ms": 5000 },
  "kubernetes": { "enabled": false }
}
EOF
chmod -R a+rX "$WORK"

ctr="$("${BUILDAH[@]}" from --pull=never "$IMAGE")"; ctrs+=("$ctr")
"${BUILDAH[@]}" run --isolation chroot --user 10001 --env PORT="$gw_port" \
  -v "$WORK/config:/app/config:ro" -v "$WORK/secrets:/run/secrets/api-proxy/upstreams/default:ro" \
  "$ctr" -- node dist/main.js >"$WORK/gateway.log" 2>&1 &
run_pid=$!
pids+=("$run_pid")
ts=$SECONDS
base="http://127.0.0.1:$gw_port"
if wait_http "$base/health" 60; then
  pass "/health 200 ($((SECONDS - ts))s to healthy)"
else
  fail "/health"; tail -30 "$WORK/gateway.log"; echo "$passed passed, $failed failed"; exit 1
fi
check '/health body is {"status":"healthy",...}' grep -q '"status":"healthy"' <<<"$(curl -s "$base/health")"
check "/health/ready 200" wait_http "$base/health/ready" 20

# The chart's `helm test` pod runs its command in this image: run that exact command (rendered by
# helm) inside a container, against this gateway instead of the Service.
helm3="$(HELM_SKIP_V4=1 bash test/tools/build-helm.sh 2>/dev/null | head -n1)"
"$helm3" template t charts/api-proxy --show-only templates/tests/test-health.yaml >"$WORK/test-pod.yaml"
mapfile -d '' -t test_cmd < <(node --input-type=module -e '
  import { readFileSync } from "node:fs"; import { parse } from "yaml";
  const cmd = parse(readFileSync(process.argv[1], "utf8")).spec.containers[0].command;
  cmd[cmd.length - 1] = process.argv[2];
  process.stdout.write(cmd.map((part) => part + "\0").join(""));' "$WORK/test-pod.yaml" "$base/health")
ctr_t="$("${BUILDAH[@]}" from --pull=never "$IMAGE")"; ctrs+=("$ctr_t")
check "the chart's helm-test command passes in the image (${test_cmd[0]} ${test_cmd[1]} -e ... ${test_cmd[-1]})" \
  "${BUILDAH[@]}" run --isolation chroot "$ctr_t" -- "${test_cmd[@]}"

node_pid="$(gateway_pid "$run_pid")"
uid="$(awk '/^Uid:/ { print $2 }' "/proc/${node_pid:-0}/status" 2>/dev/null || echo '?')"
check "the gateway process runs as uid 10001 (host view: $uid)" test "$uid" == 10001

resp="$(curl -s -D "$WORK/chat-headers.txt" -w '\n%{http_code}' "$base/v1/chat/completions" \
  -H 'Authorization: Bearer sk-client-FAKE-container-test' -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}')"
code="$(tail -n1 <<<"$resp")"; body="$(sed '$d' <<<"$resp")"
check "proxied chat completion: 200" test "$code" == 200
check "proxied to <url>/chat/completions" grep -q '"path":"/v1/chat/completions"' <<<"$body"
check "upstream got the upstream key from the mounted file, not the client key" \
  test "$(tail -n1 "$WORK/upstream-auth.log")" == "Bearer sk-FAKE-upstream-key"
check "the key the upstream echoed back reaches the client redacted" \
  grep -qE '"authorization":"Bearer \[redacted\]\**"' <<<"$body"
check "model_redirects applied (gpt-4 -> gpt-4o): the upstream answered for gpt-4o" grep -qi '^x-apiproxy-upstream-model: gpt-4o' "$WORK/chat-headers.txt"
check "... and the client sees the model it asked for (answer_model: requested)" grep -q '"model":"gpt-4"' <<<"$body"
check "no client key: 401" test "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")" == 401
check "wrong client key: 401" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$base/v1/models")" == 401
check "/metrics in Prometheus text when asked" \
  grep -q '^apiproxy_requests_total' <<<"$(curl -s -H 'Accept: text/plain' "$base/metrics")"

echo "SIGTERM"
if [[ -n "$node_pid" ]]; then
  ts=$SECONDS
  kill -TERM "$node_pid"
  sleep 0.3
  check "readiness 503 while draining" test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/health/ready")" == 503
  check "still serving /health while draining" test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/health")" == 200
  rc=0; wait "$run_pid" || rc=$?
  check "node exited 0 after the drain ($((SECONDS - ts))s)" test "$rc" == 0
else
  fail "could not find the gateway's node process"
fi

echo "WORKERS=2"
ctr_c="$("${BUILDAH[@]}" from --pull=never "$IMAGE")"; ctrs+=("$ctr_c")
"${BUILDAH[@]}" run --isolation chroot --user 10001 --env PORT="$gw_port" --env WORKERS=2 \
  -v "$WORK/config:/app/config:ro" -v "$WORK/secrets:/run/secrets/api-proxy/upstreams/default:ro" \
  "$ctr_c" -- node dist/main.js >"$WORK/cluster.log" 2>&1 &
run_c=$!
pids+=("$run_c")
check "cluster: /health/ready 200" wait_http "$base/health/ready" 60
both_workers() { for _ in $(seq 1 100); do grep -q '"workers":2' <<<"$(curl -s "$base/metrics")" && return 0; sleep 0.2; done; return 1; }
check "cluster: /metrics counts 2 workers (both started)" both_workers
code="$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/chat/completions" \
  -H 'Authorization: Bearer sk-client-FAKE-container-test' -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}')"
check "cluster: proxied chat completion: 200" test "$code" == 200
mapfile -t cluster_procs < <(node_processes "$run_c")
check "cluster: three node processes (primary + 2 workers)" test "${#cluster_procs[@]}" == 3
primary=""
for line in "${cluster_procs[@]}"; do
  read -r pid ppid <<<"$line"
  grep -q "^$ppid " < <(printf '%s\n' "${cluster_procs[@]}") || primary="$pid"
done
uids="$(for line in "${cluster_procs[@]}"; do awk '/^Uid:/ { print $2 }' "/proc/${line%% *}/status"; done | sort -u | tr '\n' ' ')"
check "cluster: every process runs as uid 10001 ($uids)" test "$uids" == "10001 "
if [[ -n "$primary" ]]; then
  kill -TERM "$primary"
  rc=0; wait "$run_c" || rc=$?
  check "cluster: SIGTERM to the primary drains both workers and exits 0" test "$rc" == 0
  check "cluster: both workers logged 'stopped'" test "$(grep -c '"worker":[01],"msg":"stopped"' "$WORK/cluster.log")" == 2
  left=""; for line in "${cluster_procs[@]}"; do [[ -e "/proc/${line%% *}" ]] && left+="${line%% *} "; done
  check "cluster: none of the three processes is left ($left)" test -z "$left"
else
  fail "cluster: could not find the primary"
fi

# --------------------------------------------------------------------------------------------
echo "compose.yaml: the gateway and the example upstream, as compose starts them"
tc=$SECONDS
# Each service starts from compose-go's normalized project (its command, environment, bind mounts
# and secrets: test/container/compose.ts), not from a copy of them. Compose puts the services on a
# network where each is reachable by its name; here they share one private network namespace, so
# the file's own ports are free whatever runs on the host, and a mounted /etc/hosts maps every
# service name to loopback (buildah 1.28's `run` has no --add-host; --no-hosts stops it from also
# mounting its own generated /etc/hosts, which would win over ours in a random order).
compose_ts=(node test/container/compose.ts)
image_cmd="$(q 'i.OCIv1.config.Cmd')"
unshare --net sleep infinity &
netns_pid=$!
pids+=("$netns_pid")
in_net() { nsenter --net="/proc/$netns_pid/ns/net" "$@"; }
sleep 0.1
in_net ip link set lo up
"${compose_ts[@]}" normalize compose.yaml >"$WORK/compose.json"
cq() { node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(eval(process.argv[2]))' "$WORK/compose.json" "$1"; }
{ echo "127.0.0.1 localhost"; cq 'Object.keys(p.services).map((s) => "127.0.0.1 " + s).join("\n")'; } >"$WORK/hosts"
# In the namespace the gateway's container port is reached directly (compose publishes it as is).
compose_base="http://127.0.0.1:$(cq 'p.services.gateway.ports[0].target')"

started_pid=""
start_service() { # compose file, service, log file, hosts file -> started_pid (its `buildah run`)
  local ctr args
  ctr="$("${BUILDAH[@]}" from --pull=never "$IMAGE")"; ctrs+=("$ctr")
  mapfile -d '' -t args < <("${compose_ts[@]}" buildah-run "$1" "$2" "$ctr" "$image_cmd")
  ((${#args[@]})) || { echo "no buildah run arguments for $2 of $1" >&2; return 1; }
  in_net "${BUILDAH[@]}" run --isolation chroot --no-hosts -v "$4:/etc/hosts:ro" "${args[@]}" >"$3" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
stop_service() { # buildah run pid, seconds -> 0 when its node exits 0 within them after SIGTERM
  local node_pid rc=0 deadline=$((SECONDS + $2))
  node_pid="$(gateway_pid "$1")"
  [[ -n "$node_pid" ]] || return 1
  kill -TERM "$node_pid"
  while kill -0 "$1" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -0 "$1" 2>/dev/null && return 1
  wait "$1" || rc=$?
  return "$rc"
}
ncurl() { in_net curl -s --max-time 10 "$@"; }
chat() { # key, body -> response body, then the status on the last line
  ncurl -w '\n%{http_code}' "$compose_base/v1/chat/completions" \
    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$2"
}

start_service compose.yaml upstream "$WORK/compose-upstream.log" "$WORK/hosts"; up_run=$started_pid
start_service compose.yaml gateway "$WORK/compose-gateway.log" "$WORK/hosts"; gw_run=$started_pid
ts=$SECONDS
if in_net bash -c "$(declare -f wait_http); wait_http '$compose_base/health/ready' 60"; then
  pass "compose gateway ready ($((SECONDS - ts))s)"
else
  fail "compose gateway ready"; tail -20 "$WORK/compose-gateway.log" "$WORK/compose-upstream.log"
fi
check "the example upstream listens on 0.0.0.0:8080 (the port its service sets)" \
  grep -q 'example upstream listening on 0.0.0.0:8080' "$WORK/compose-upstream.log"
resp="$(chat demo-key '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}')"
check "chat completion with the README's key demo-key: 200" test "$(tail -n1 <<<"$resp")" == 200
check "answered by the upstream service by name, after the redirect gpt-4 -> example-model-v2" \
  grep -q '"content":"Hello from example-model-v2! You said: hi"' <<<"$(sed '$d' <<<"$resp")"
ncurl -N -D "$WORK/stream.head" -o "$WORK/stream.body" "$compose_base/v1/chat/completions" \
  -H 'Authorization: Bearer demo-key' -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"stream please"}]}' || true
check "streamed chat completion: 200 text/event-stream" \
  grep -qiE '^content-type: text/event-stream' <<<"$(grep -q '^HTTP/1.1 200' "$WORK/stream.head" && cat "$WORK/stream.head")"
streamed="$(node -e '
  const events = require("fs").readFileSync(process.argv[1], "utf8").split("\n\n").filter((e) => e.startsWith("data: "));
  const done = events.pop() === "data: [DONE]";
  const text = events.map((e) => JSON.parse(e.slice(6)).choices[0].delta.content ?? "").join("");
  console.log(`${done} ${text}`);' "$WORK/stream.body" 2>&1)"
check "the streamed deltas spell the echo and end with [DONE] ($streamed)" \
  test "$streamed" == "true Hello from example-model-v2! You said: stream please"
check "no client key: 401" test "$(tail -n1 <<<"$(chat '' '{"model":"gpt-4"}')")" == 401
timed_stop() { # description, buildah run pid
  local ts=$SECONDS
  if stop_service "$2" 10; then pass "$1 ($((SECONDS - ts))s)"; else fail "$1"; fi
}
timed_stop "gateway: SIGTERM -> exit 0 within compose's default 10 s stop grace period" "$gw_run"
timed_stop "example upstream: SIGTERM -> exit 0 within 10 s (its own handler: node as PID 1 has no default action)" "$up_run"

echo "compose.yaml, real-upstream variant (uncommented), keys from ./secrets"
variant="$WORK/variant"
mkdir -p "$variant/secrets"
"${compose_ts[@]}" real-upstream compose.yaml >"$variant/compose.yaml"
cp -r config "$variant/config"
printf 'sk-FAKE-openai-key\n' >"$variant/secrets/openai_api_key"
printf 'sk-client-FAKE-compose\n' >"$variant/secrets/client_key"
chmod 0400 "$variant"/secrets/*
chmod -R a+rX "$variant/config"
# Nothing leaves the namespace: api.openai.com is pinned to loopback, where nothing listens, so a
# request that passes the gateway fails at once as upstream_unreachable (instead of a DNS wait).
{ cat "$WORK/hosts"; echo "127.0.0.1 api.openai.com"; } >"$WORK/hosts-variant"

start_service "$variant/compose.yaml" gateway "$WORK/variant-root.log" "$WORK/hosts-variant"; v_run=$started_pid
unreadable() { for _ in $(seq 1 150); do grep -q 'openai_api_key: EACCES' "$WORK/variant-root.log" && return 0; sleep 0.2; done; return 1; }
check "key files as created (root, 0400): the gateway (uid 10001) cannot read them and says so" unreadable
check "... and is not ready" test "$(ncurl -o /dev/null -w '%{http_code}' "$compose_base/health/ready")" == 503
kill -TERM "$(gateway_pid "$v_run")" 2>/dev/null || true
wait "$v_run" 2>/dev/null || true

chown 10001:10001 "$variant"/secrets/*
start_service "$variant/compose.yaml" gateway "$WORK/variant.log" "$WORK/hosts-variant"; v_run=$started_pid
if in_net bash -c "$(declare -f wait_http); wait_http '$compose_base/health/ready' 60"; then
  pass "keys owned by uid 10001 (0400, as the README says): ready with config/openai.yaml"
else
  fail "variant ready"; tail -20 "$WORK/variant.log"
fi
resp="$(chat sk-client-FAKE-compose '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}')"
check "the client key from the client_key secret passes; OpenAI is out of reach here: 502 upstream_unreachable" \
  test "$(tail -n1 <<<"$resp") $(grep -o '"code":"[a-z_]*"' <<<"$resp")" == '502 "code":"upstream_unreachable"'
check "demo-key is not a key of the variant: 401" test "$(tail -n1 <<<"$(chat demo-key '{"model":"gpt-4o"}')")" == 401
# ./config is mounted as a directory, so an edit on the host that replaces the file (sed -i, most
# editors: write, then rename) reaches the gateway: a new redirect's alias is then the gateway's own.
alias_status() { ncurl -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-client-FAKE-compose' "$compose_base/v1/models/gpt-4"; }
check "before the edit, GET /v1/models/gpt-4 goes to OpenAI (502 here)" test "$(alias_status)" == 502
sed -i 's/^model_redirects: {}.*/model_redirects: { "gpt-4": "gpt-4o" }/' "$variant/config/openai.yaml"
reloaded() { for _ in $(seq 1 50); do [[ "$(alias_status)" == 200 ]] && return 0; sleep 0.1; done; return 1; }
check "config/openai.yaml edited on the host (sed -i): within 5 s the gateway answers the new alias gpt-4 (200)" reloaded
timed_stop "variant gateway: SIGTERM -> exit 0" "$v_run"
compose_s=$((SECONDS - tc))

total_s=$((SECONDS - t0))
echo
echo "timings: base image ${base_s}s, image build ${build_s}s, compose ${compose_s}s, total ${total_s}s"
echo "container: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
