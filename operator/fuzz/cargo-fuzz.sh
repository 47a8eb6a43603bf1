#!/usr/bin/env bash
# Installs cargo-fuzz (pinned in e2e/tools/versions.env) from crates.io into the Sluice tool
# cache, once, and prints the directory that holds the `cargo-fuzz` binary (for PATH). `make fuzz`
# calls this; the fuzz targets themselves build with the nightly toolchain (`rustup toolchain
# install nightly`).
#
#   SLUICE_K8S_CACHE   cache root (default $HOME/.cache/sluice), shared with e2e/cluster/build.sh
set -euo pipefail
log_tag=fuzz
# shellcheck source=../../e2e/lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/lib/tooling.sh"

root="$cache_root/tools/cargo-fuzz-$CARGO_FUZZ_VERSION"
bin="$root/bin"

# Built with the stable toolchain in a target dir of its own, thrown away after.
install_cargo_fuzz() {
  [[ -x "$bin/cargo-fuzz" ]] && return
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root"
  local target
  target="$(mktemp -d)"
  CARGO_TARGET_DIR="$target" cargo +stable install --quiet --locked --root "$root" \
    --version "$CARGO_FUZZ_VERSION" cargo-fuzz >&2
  rm -rf "$target"
}

# One install at a time; a second caller waits, then finds the binary.
[[ -x "$bin/cargo-fuzz" ]] || locked "$root/.lock" install_cargo_fuzz
"$bin/cargo-fuzz" --version >&2
echo "$bin"
