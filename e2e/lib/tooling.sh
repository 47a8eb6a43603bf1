# Shared by every script that builds or installs a tool into Sluice's cache outside the
# repository (sourced, not run): e2e/cluster/build.sh and common.sh, e2e/tools/build.sh,
# build-helper.sh and checkov-venv.sh, e2e/lineage/venv.sh, e2e/prometheus/install.sh and
# operator/fuzz/cargo-fuzz.sh. Bash; the caller sets `set -euo pipefail`, and may set `log_tag`
# (default: the script's name) before sourcing.

sluice_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../cluster/versions.env
source "$sluice_root/e2e/cluster/versions.env"
# shellcheck source=../tools/versions.env
source "$sluice_root/e2e/tools/versions.env"

# The cache root: ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}. Never inside the repository.
cache_root="${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}"

log() { printf '[%s %s] %s\n' "${log_tag:-$(basename "$0" .sh)}" "$(date +%H:%M:%S)" "$*" >&2; }

# use_dirs <bin> <work>: where have/mark/build_go_module put binaries and throwaway modules.
use_dirs() {
  bin="$1"
  work="$2"
  mkdir -p "$bin" "$work"
}

# go_env <what>: exits unless go is on PATH; static binaries without VCS stamps.
go_env() {
  command -v go >/dev/null || { echo "go is required to build $1" >&2; exit 1; }
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
  export CGO_ENABLED=0
}

# have <name> <version>: the cached binary $bin/<name> was built at <version>.
have() { [ -x "$bin/$1" ] && [ -f "$bin/.$1.version" ] && [ "$(cat "$bin/.$1.version")" = "$2" ]; }
mark() { echo "$2" >"$bin/.$1.version"; }

# timed <name> <command...>: runs the command, logging how long it took.
timed() {
  local name="$1"; shift
  local start=$SECONDS
  log "building $name"
  "$@"
  log "built $name in $((SECONDS - start))s"
}

# locked <lock file> <command...>: runs the command holding an exclusive lock, so that tests
# started side by side do not build the same tool twice into the same place.
locked() {
  local file="$1" fd; shift
  mkdir -p "$(dirname "$file")"
  exec {fd}>"$file"
  flock "$fd"
  "$@"
  exec {fd}>&-
}

# source_hash <dir>: 16 hex digits over a Go program's sources (*.go, go.mod, go.sum).
source_hash() {
  (cd "$1" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -c1-16)
}

# build_go_module <name> <module> <version> <package>: a tool whose module builds with plain
# `go build` from a throwaway module in $work/<name> (no local replaces in the way), into $bin.
build_go_module() {
  local name="$1" module="$2" version="$3" pkg="$4"
  if have "$name" "$version"; then
    log "cached $name $version"
    return
  fi
  mkdir -p "$work/$name"
  (
    cd "$work/$name"
    printf 'module sluice.dev/tools/%s\n\ngo 1.26.0\n\nrequire %s %s\n' "$name" "$module" "$version" >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    go mod tidy >/dev/null
    timed "$name $version" go build -trimpath -ldflags "-s -w" -o "$bin/$name" "$pkg"
  )
  mark "$name" "$version"
}

# python_venv <dir> <requirement> [pip options...]: a virtualenv at <dir> with <requirement>
# installed, made once (a marker file says it is complete).
python_venv() {
  local venv="$1" requirement="$2"; shift 2
  [[ -f "$venv/.installed" ]] && return
  local start=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" "$requirement" >&2
  touch "$venv/.installed"
  log "installed $requirement in $((SECONDS - start))s"
}

# apt_install <package...>: installs the Debian packages that are not installed yet (as root, or
# through `sudo -n`), running `apt-get update` first when the index does not offer them.
# Package installs on this machine run one at a time, across every script and test process:
# dpkg takes one at a time (a second apt-get fails at once on its lock), and a check of whether
# a package is there (a binary found under /usr/lib) must not see one that another process has
# half unpacked (its libraries not yet there). with_package_lock <command...> runs the command
# (a function of the caller's, in a subshell) holding the machine's package lock.
package_lock_file="${SLUICE_PACKAGE_LOCK:-/tmp/sluice-packages.lock}"
with_package_lock() { (flock 9 && "$@") 9>>"$package_lock_file"; }

# apt_install <package...>: installs the packages not installed yet (under the package lock).
apt_install() { with_package_lock apt_install_unlocked "$@"; }

apt_install_unlocked() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  local start=$SECONDS
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >&2
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
  log "installed ${missing[*]} in $((SECONDS - start))s"
}

# deb_unpack <package>: Debian's <package> (the version apt offers) unpacked, not installed, into
# $cache_root/tools/deb/<package>-<version>/ (`apt-get download`, `dpkg-deb -x`); prints that
# folder. For packages of static binaries or plain files, so nothing system-wide changes.
deb_unpack() {
  local pkg="$1" tools="$cache_root/tools/deb" version dest
  version="$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')"
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; else sudo -n apt-get update -qq >&2; fi
    version="$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')"
  fi
  dest="$tools/$pkg-${version//[:+~]/_}"
  if [ ! -f "$dest/.unpacked" ]; then
    local tmp start=$SECONDS
    mkdir -p "$tools"
    tmp="$(mktemp -d "$tools/.$pkg.XXXXXX")"
    (cd "$tmp" && apt-get download -qq "$pkg=$version" >&2)
    dpkg-deb -x "$tmp/${pkg}_"*.deb "$tmp/root"
    touch "$tmp/root/.unpacked"
    rm -rf "$dest"
    mv "$tmp/root" "$dest"
    rm -rf "$tmp"
    log "unpacked $pkg $version in $((SECONDS - start))s"
  fi
  echo "$dest"
}
