#!/usr/bin/env bash
# Installs the official OpenLineage Python client (openlineage-python from PyPI) into a virtualenv
# cached like the Kubernetes binaries, and prints the venv's python. Idempotent: a venv whose
# marker names the pinned version is reused.
set -euo pipefail
VERSION="${OPENLINEAGE_PYTHON_VERSION:-1.54.0}"
CACHE="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}"
VENV="$CACHE/openlineage-python-$VERSION"
if [[ ! -f "$VENV/.installed" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openlineage-python==$VERSION" >&2
  touch "$VENV/.installed"
fi
echo "$VENV/bin/python"
