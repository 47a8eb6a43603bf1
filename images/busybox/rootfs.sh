#!/usr/bin/env bash
# A busybox image for the real-node tests: Debian's busybox-static (unpacked into the cache, not
# installed), its applets as symlinks in /bin, a passwd with root and nobody, a /tmp.
set -euo pipefail
log_tag=busybox
# shellcheck source=../../e2e/lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/lib/tooling.sh"
dir="$1"
deb="$(deb_unpack busybox-static)"
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp"
chmod 1777 "$dir/tmp"
install -m 0755 "$deb/bin/busybox" "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
