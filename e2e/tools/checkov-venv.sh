#!/usr/bin/env bash
# Installs checkov (PyPI) into a virtualenv cached like the Kubernetes binaries,
# ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/checkov-<version>, and prints the path of its
# `checkov`. Idempotent: a venv whose marker names the pinned version is reused.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}"
venv="$cache/checkov-$CHECKOV_VERSION"
if [[ ! -f "$venv/.installed" ]]; then
  start=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # Wheels only: checkov and its 95 dependencies all ship wheels for this Python (none is built
  # from an sdist), so a later pin that would compile one fails here instead of slowing CI.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "checkov==$CHECKOV_VERSION" >&2
  touch "$venv/.installed"
  echo "[tools] installed checkov $CHECKOV_VERSION in $((SECONDS - start))s" >&2
fi
echo "$venv/bin/checkov"
