#!/usr/bin/env bash
# The pause image: one static binary, compiled from pause.c with the system's C compiler.
set -euo pipefail
dir="$1"
cc="${CC:-cc}"
command -v "$cc" >/dev/null || { echo "a C compiler ($cc) is needed for the pause image" >&2; exit 1; }
"$cc" -static -O2 -s -o "$dir/pause" "$(dirname "${BASH_SOURCE[0]}")/pause.c"
