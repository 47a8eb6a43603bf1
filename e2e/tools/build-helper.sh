#!/usr/bin/env bash
# Builds a Go helper of e2e/tools/<name>/ (its own go.mod and go.sum, modules from the Go module
# proxy) into a cache outside the repository, keyed by a hash of its sources:
#   ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/<name>-<hash>/<name>
# A binary built from the same sources is reused. Prints the binary's path; logs to stderr.
#
#   build-helper.sh dashcheck
set -euo pipefail

name="${1:?usage: $0 NAME (a folder of e2e/tools)}"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$name"
[ -f "$src/go.mod" ] || { echo "no Go module in $src" >&2; exit 2; }
command -v go >/dev/null || { echo "go is required to build $name" >&2; exit 1; }

hash="$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort \
  | xargs sha256sum | sha256sum | cut -c1-16)"
out="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/$name-$hash"
if [ -x "$out/$name" ]; then
  echo "$out/$name"
  exit 0
fi

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$out"
start=$SECONDS
log "building $name ($hash)"
(
  cd "$src"
  GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/$name.tmp.$$" .
)
mv "$out/$name.tmp.$$" "$out/$name"
log "built $name in $((SECONDS - start))s"
echo "$out/$name"
