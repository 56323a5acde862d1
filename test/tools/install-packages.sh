#!/usr/bin/env bash
# Installs the Debian packages whose programs the tests start for real (test/support/real/):
#   redis-server  shared rate limits          squid, tinyproxy  egress proxies
#   python3       urllib as a client          openssl           test CAs and certificates
# Only what is missing is installed (a warm run costs no apt call). Needs root and Debian's apt.
#
# Package maintainer scripts would start the services (redis on 6379, squid on 3128, tinyproxy
# on 8888). The tests start their own instances on free ports, so nothing may be left running:
# a policy-rc.d that refuses every start is in place during the install, and whatever a package
# started anyway is stopped afterwards. Exits non-zero, naming the package, on any failure.
set -euo pipefail

log() { echo "[install-packages] $*" >&2; }

# package -> the program the tests run from it
declare -A PROGRAM=(
  [redis-server]=redis-server
  [squid]=squid
  [tinyproxy]=tinyproxy
  [python3]=python3
  [openssl]=openssl
)
# squid and tinyproxy live in /usr/sbin, which a non-root PATH may lack.
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing=()
for pkg in redis-server squid tinyproxy python3 openssl; do
  have "${PROGRAM[$pkg]}" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  log "all present: redis-server squid tinyproxy python3 openssl"
  exit 0
fi

[[ "$(id -u)" == 0 ]] || { log "need root to apt-get install ${missing[*]}"; exit 1; }
command -v apt-get >/dev/null || { log "apt-get not found: install ${missing[*]} by hand"; exit 1; }

# No service may start during the install (exit 101 = "action forbidden", see invoke-rc.d(8)).
# A policy-rc.d that was already there is left as it was.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 0755 "$POLICY"
  own_policy=1
fi
cleanup() { if ((own_policy)); then rm -f "$POLICY"; fi; }
trap cleanup EXIT

start=$SECONDS
log "apt-get install ${missing[*]}"
apt-get update -qq || { log "apt-get update failed"; exit 1; }
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/api-proxy-apt.log 2>&1; then
  tail -30 /tmp/api-proxy-apt.log >&2
  log "apt-get install ${missing[*]} failed (log: /tmp/api-proxy-apt.log)"
  exit 1
fi
for pkg in "${missing[@]}"; do
  have "${PROGRAM[$pkg]}" || { log "$pkg installed but ${PROGRAM[$pkg]} is not on PATH"; exit 1; }
done

# Belt and braces: a daemon started despite policy-rc.d (a package calling its init script
# directly) is stopped through its init script, then its default port is checked. Only the
# packages installed now are touched: a developer's own redis on 6379 is left alone.
declare -A PORT=([redis-server]=6379 [squid]=3128 [tinyproxy]=8888)
for pkg in "${missing[@]}"; do
  [[ -n "${PORT[$pkg]:-}" ]] || continue
  [[ -x "/etc/init.d/$pkg" ]] && "/etc/init.d/$pkg" stop >/dev/null 2>&1 || true
  if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Hltn "sport = :${PORT[$pkg]}" 2>/dev/null)" ]]; then
    log "something still listens on ${PORT[$pkg]} (the default port of $pkg) after the install"
    exit 1
  fi
done
log "installed ${missing[*]} in $((SECONDS - start))s"
