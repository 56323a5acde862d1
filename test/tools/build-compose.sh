#!/usr/bin/env bash
# Builds `compose-config`, a small program on compose-go (github.com/compose-spec/compose-go/v2) that
# does what `docker compose config --format json` does, without a Docker daemon or the docker CLI:
# load the compose file(s), validate them against the Compose Specification schema, interpolate,
# resolve paths, normalize, check consistency, print the project as JSON.
#
# Why compose-go and not Debian's docker-compose (v1, Python, end-of-life): compose-go is the library
# Docker Compose v2+ itself loads files with, so a file it accepts is one `docker compose up` accepts,
# and its normalized output is the model Compose runs. v2.16.2 is the version Docker Compose v5.7.0
# and v5.7.1 ship; v2.17.0 (Compose v5.7.2) needs Go >= 1.26.11, newer than the Go 1.26 the project's
# other tools build with (GOTOOLCHAIN=local, as build-k8s.sh: no toolchain download).
#
#   ${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}/compose-go-<ver>/compose-config
#
# Prints that path on stdout (last line); progress goes to stderr. A binary already built with this
# recipe is reused at once. Concurrent callers (jest workers, .ci/run) are serialised with flock.
# Needs: go >= 1.24 on PATH, access to the Go module proxy (cold build only: about 30 s on 2 cores).
#
# Usage of the binary: compose-config [-f FILE]... (default: compose.yaml in the current directory)
set -euo pipefail

COMPOSE_GO_VERSION="v2.16.2"
# Bump when main.go below changes: a cached binary of another revision is rebuilt.
BUILD_REV="1"

TOOLS_DIR="${API_PROXY_TOOLS_DIR:-$HOME/.cache/api-proxy-tools}"
OUT_DIR="$TOOLS_DIR/compose-go-$COMPOSE_GO_VERSION"
BIN="$OUT_DIR/compose-config"

NAME=compose
RESULT="$BIN"
ready() { [[ -x "$BIN" && "$(cat "$OUT_DIR/.build-rev" 2>/dev/null)" == "$BUILD_REV" ]]; }
# shellcheck source=lib/cached-build.sh
source "$(dirname "$0")/lib/cached-build.sh"
cached_build_begin

cat >"$WORK/main.go" <<'EOF'
// compose-config prints a compose project as `docker compose config --format json` does: the same
// compose-go calls and options as Docker Compose's loader (pkg/compose/loader.go) and its `config`
// command (cmd/compose/config.go), minus what needs a daemon or a registry (image digests) and
// remote (git, OCI) includes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

type files []string

func (f *files) String() string     { return fmt.Sprint(*f) }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var paths files
	flag.Var(&paths, "f", "compose file (repeatable; default: compose.yaml, as docker compose)")
	flag.Parse()
	if err := run(paths); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(paths []string) error {
	ctx := context.Background()
	options, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(""),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithDefaultProfiles(),
		cli.WithName(""),
		// `docker compose config` defaults:
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithDiscardEnvFile,
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(ctx)
	if err != nil {
		return err
	}
	if project, err = project.WithServicesEnvironmentResolved(true); err != nil {
		return err
	}
	if err = project.CheckContainerNameUnicity(); err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
EOF
cat >"$WORK/go.mod" <<EOF
module apiproxy.local/compose-config

go 1.24

require github.com/compose-spec/compose-go/v2 $COMPOSE_GO_VERSION
EOF

log "compose-go $COMPOSE_GO_VERSION: resolving modules ($(go version))"
# `go get` of the one package used (not `go mod tidy`, which would also pull the newest version of
# modules only its dependencies' tests import): every version comes from compose-go's go.mod.
(cd "$WORK" && go get "github.com/compose-spec/compose-go/v2/cli@$COMPOSE_GO_VERSION" >&2)
log "compiling compose-config"
(cd "$WORK" && go build -trimpath -ldflags "-s -w" -o "$OUT_DIR/.compose-config.partial" . >&2)
mv -f "$OUT_DIR/.compose-config.partial" "$BIN"
echo "$BUILD_REV" >"$OUT_DIR/.build-rev"
log "built in $((SECONDS - START))s -> $BIN"
echo "$BIN"
