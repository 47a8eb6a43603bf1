# Shared by the scripts that write one generated file (sourced, not run):
# charts/sluice/hack/render-install.sh and manifests/argocd/render-cm.sh. Bash; the caller sets
# `set -euo pipefail` and defines `render`, which prints the file.

# write_or_check <out> <stale message> [--check]: writes what `render` prints to <out>; with
# --check, exits 1 (showing the diff and the message) when <out> is not that.
write_or_check() {
  local out="$1" stale="$2" tmp
  case "${3:-}" in
    --check)
      tmp="$(mktemp)"
      render >"$tmp"
      if ! diff -u "$out" "$tmp" >&2; then
        rm -f "$tmp"
        echo "$stale; run: make chart" >&2
        exit 1
      fi
      rm -f "$tmp"
      ;;
    "")
      render >"$out.tmp"
      mv "$out.tmp" "$out"
      echo "wrote $out" >&2
      ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
  esac
}
