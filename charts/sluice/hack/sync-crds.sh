#!/usr/bin/env bash
# Generates the chart's CRD templates (templates/crds/<name>.yaml) from the repository's crds/,
# which `make crds` generates from the Rust types. Each template is the CRD verbatim, wrapped in
# `if .Values.crds.install`, with the chart's labels and the `helm.sh/resource-policy: keep`
# annotation added to metadata. Helm's own crds/ folder is not used: Helm installs those once and
# never upgrades them.
#
#   sync-crds.sh           rewrite the templates
#   sync-crds.sh --check   exit 1 (and show the diff) if they are not what this script writes
set -euo pipefail

chart="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${SLUICE_CRDS_DIR:-$chart/../../crds}"
out="$chart/templates/crds"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# Prints the template of one CRD file. The file must be one document shaped as `sluice-operator
# crd` writes it: apiVersion, kind, metadata with only a name, then spec.
render() {
  local file="$1" body
  body="$(sed '1{/^---$/d}' "$file")"
  if grep -qx -- '---' <<<"$body"; then
    echo "$file: more than one YAML document" >&2; return 1
  fi
  local -a head
  mapfile -t head < <(head -n 5 <<<"$body")
  if [[ "${head[0]}" != "apiVersion: apiextensions.k8s.io/v1" || "${head[1]}" != "kind: CustomResourceDefinition" \
    || "${head[2]}" != "metadata:" || "${head[3]}" != "  name: "* || "${head[4]}" != "spec:" ]]; then
    echo "$file: unexpected layout (want apiVersion, kind, metadata.name, spec); update $0" >&2; return 1
  fi
  cat <<TEMPLATE
{{- if .Values.crds.install }}
# Generated from crds/$(basename "$file") by charts/sluice/hack/sync-crds.sh (make chart); do not edit.
${head[0]}
${head[1]}
metadata:
${head[3]}
  annotations:
    # helm upgrade applies changes; helm uninstall keeps the CRD and so the users' objects.
    helm.sh/resource-policy: keep
    {{- with .Values.crds.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "sluice.labels" . | nindent 4 }}
TEMPLATE
  # Everything from `spec:` on, verbatim; a literal `{{` would start a template action.
  tail -n +5 <<<"$body" | sed 's/{{/{{ "{{" }}/g'
  echo '{{- end }}'
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
shopt -s nullglob
files=("$src"/*.yaml)
[ ${#files[@]} -gt 0 ] || { echo "no CRDs in $src; run make crds" >&2; exit 1; }
for file in "${files[@]}"; do
  render "$file" >"$tmp/$(basename "$file")"
done

if [ "$check" = 1 ]; then
  if ! diff -ru "$out" "$tmp" >&2; then
    echo "charts/sluice/templates/crds is out of date with crds/; run: make chart" >&2
    exit 1
  fi
  exit 0
fi
mkdir -p "$out"
rm -f "$out"/*.yaml
cp "$tmp"/*.yaml "$out"/
echo "wrote ${#files[@]} CRD templates to $out" >&2
