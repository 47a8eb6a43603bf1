#!/usr/bin/env bash
# The root filesystem of the SQL step image, for images/build.sh: Debian's busybox-static (the
# shell and the few tools the entry script uses), psql from Debian's postgresql-client with the
# shared libraries it links (found with ldd, copied at the same paths), and the entry script.
#   images/sluice-sql-step/rootfs.sh <dir>
set -euo pipefail
log_tag=sql-step
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../e2e/lib/tooling.sh
source "$here/../../e2e/lib/tooling.sh"
root="${1:?usage: rootfs.sh <dir>}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# psql itself, not Debian's /usr/bin/psql (a Perl wrapper choosing among installed versions).
psql_bin() { find /usr/lib/postgresql -maxdepth 3 -path '*/bin/psql' 2>/dev/null | sort -V | tail -n 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Only what is missing is installed (an installed package is left at its version).
packages() {
  local missing=() p
  installed busybox-static || missing+=(busybox-static)
  [ -n "$(psql_bin)" ] || missing+=(postgresql-client)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Debian's ${missing[*]}"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# copy_with_libraries <binary> <destination in the image>: the binary and every library ldd
# names for it (and the dynamic loader), each at its own path inside the image.
copy_with_libraries() {
  local binary="$1" dest="$2" lib
  if ldd "$binary" | grep -q 'not found'; then
    echo "rootfs.sh: $binary lacks a library: $(ldd "$binary" | grep 'not found' | tr -s ' \t' ' ')" >&2
    exit 1
  fi
  install -D -m 0755 "$binary" "$root$dest"
  for lib in $(ldd "$binary" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

with_package_lock packages
mkdir -p "$root"/{bin,etc,tmp,sql,usr/bin,usr/local/bin,usr/local/lib/sluice-sql-step}
chmod 1777 "$root/tmp"
install -m 0755 /bin/busybox "$root/bin/busybox"
# One symlink per busybox applet (sh, awk, sed, grep, mktemp, ...), as `busybox --install -s`
# would make inside the image.
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
copy_with_libraries "$(psql_bin)" /usr/bin/psql
install -m 0755 "$here/sql-step.sh" "$root/usr/local/lib/sluice-sql-step/sql-step.sh"
install -m 0644 "$here/sql-step-load.sh" "$here/sql-step-report.sh" "$root/usr/local/lib/sluice-sql-step/"
ln -sfn ../lib/sluice-sql-step/sql-step.sh "$root/usr/local/bin/sql-step"
# libpq looks the user up (for ~/.pgpass); the image's user 10001 has an entry.
printf 'root:x:0:0:root:/root:/bin/sh\nsluice:x:10001:10001:sluice:/tmp:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nsluice:x:10001:\n' >"$root/etc/group"
log "root filesystem in $root ($(du -sh "$root" | cut -f1))"
