#!/usr/bin/env bash
# Installs checkov (PyPI) into a virtualenv cached like the Kubernetes binaries,
# ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/checkov-<version>, and prints the path of its
# `checkov`. Idempotent: a venv whose marker names the pinned version is reused.
set -euo pipefail
log_tag=tools
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"
venv="$cache_root/checkov-$CHECKOV_VERSION"
# Wheels only: checkov and its 95 dependencies all ship wheels for this Python (none is built
# from an sdist), so a later pin that would compile one fails here instead of slowing CI.
python_venv "$venv" "checkov==$CHECKOV_VERSION" --only-binary=:all:
echo "$venv/bin/checkov"
