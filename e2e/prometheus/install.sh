#!/usr/bin/env bash
# Puts Debian's `prometheus` package (prometheus and promtool) in a cache outside the repository,
# without installing it system-wide: `apt-get download` and `dpkg-deb -x` into
# ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/tools/prometheus-<version>/, then prints the directory
# holding the two binaries. Idempotent (a cache whose promtool reports the pinned version is
# reused) and safe to run from parallel tests (one lock).
set -euo pipefail
log_tag=prometheus
# shellcheck source=../lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tooling.sh"
cache="$cache_root/tools"
dest="$cache/prometheus-$PROMETHEUS_VERSION"
bin="$dest/usr/bin"

cached() { [ -x "$bin/promtool" ] && "$bin/promtool" --version 2>&1 | grep -q "version $PROMETHEUS_VERSION+"; }

# The Debian version of the package for the pinned upstream version (any Debian revision, so a
# point release of the distribution does not break the download).
candidate() { apt-cache madison prometheus 2>/dev/null | awk '{print $3}' | grep -m1 "^$PROMETHEUS_VERSION+" || true; }

install_package() {
  local start=$SECONDS version tmp
  version="$(candidate)"
  if [ -z "$version" ]; then
    log "no prometheus $PROMETHEUS_VERSION in the apt index; apt-get update"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; else sudo -n apt-get update -qq >&2; fi
    version="$(candidate)"
  fi
  [ -n "$version" ] || { log "apt offers no prometheus $PROMETHEUS_VERSION (see apt-cache madison prometheus)"; exit 1; }
  tmp="$(mktemp -d "$cache/.prometheus.XXXXXX")"
  (cd "$tmp" && apt-get download -qq "prometheus=$version" >&2)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  rm -rf "$tmp"
  log "installed prometheus $version in $((SECONDS - start))s"
}

prepare() { cached || install_package; }
locked "$cache/.prometheus.lock" prepare
cached || { log "$bin/promtool does not report version $PROMETHEUS_VERSION"; exit 1; }
echo "$bin"
