#!/usr/bin/env bash
# Installs the official OpenLineage Python client (openlineage-python from PyPI) into a virtualenv
# cached like the Kubernetes binaries, and prints the venv's python. Idempotent: a venv whose
# marker names the pinned version is reused.
set -euo pipefail
log_tag=lineage
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"
version="${OPENLINEAGE_PYTHON_VERSION:-1.54.0}"
venv="$cache_root/openlineage-python-$version"
python_venv "$venv" "openlineage-python==$version"
echo "$venv/bin/python"
