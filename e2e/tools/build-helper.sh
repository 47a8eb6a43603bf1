#!/usr/bin/env bash
# Builds a Go helper of e2e/tools/<name>/ (its own go.mod and go.sum, modules from the Go module
# proxy) into a cache outside the repository, keyed by a hash of its sources:
#   ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/<name>-<hash>/<name>
# A binary built from the same sources is reused. Prints the binary's path; logs to stderr.
#
#   build-helper.sh dashcheck
set -euo pipefail
log_tag=build
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"

name="${1:?usage: $0 NAME (a folder of e2e/tools)}"
src="$sluice_root/e2e/tools/$name"
[ -f "$src/go.mod" ] || { echo "no Go module in $src" >&2; exit 2; }
go_env "$name"

hash="$(source_hash "$src")"
out="$cache_root/tools/$name-$hash"
if [ ! -x "$out/$name" ]; then
  mkdir -p "$out"
  (cd "$src" && timed "$name ($hash)" go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/$name.tmp.$$" .)
  mv "$out/$name.tmp.$$" "$out/$name"
fi
echo "$out/$name"
