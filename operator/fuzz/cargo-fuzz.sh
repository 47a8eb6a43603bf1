#!/usr/bin/env bash
# Installs cargo-fuzz (pinned) from crates.io into the Sluice tool cache, once, and prints the
# directory that holds the `cargo-fuzz` binary (for PATH). `make fuzz` calls this; the fuzz
# targets themselves build with the nightly toolchain (`rustup toolchain install nightly`).
#
#   SLUICE_K8S_CACHE   cache root (default $HOME/.cache/sluice), shared with e2e/cluster/build.sh
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
root="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/cargo-fuzz-$CARGO_FUZZ_VERSION"
bin="$root/bin"

if [[ ! -x "$bin/cargo-fuzz" ]]; then
  mkdir -p "$root"
  # One install at a time; a second caller waits, then finds the binary.
  exec 9>"$root/.lock"
  flock 9
  if [[ ! -x "$bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root" >&2
    # Built with the stable toolchain; its own target dir, thrown away after.
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    CARGO_TARGET_DIR="$work" cargo +stable install --quiet --locked --root "$root" \
      --version "$CARGO_FUZZ_VERSION" cargo-fuzz >&2
  fi
fi
"$bin/cargo-fuzz" --version >&2
echo "$bin"
