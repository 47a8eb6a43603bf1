#!/usr/bin/env bash
# The operator image with the Dockerfile's contents, without Docker: the release binary at
# /usr/local/bin/sluice-operator, the shared libraries it links (glibc, libgcc: what the
# Dockerfile's distroless/cc base provides), CA certificates, a passwd naming the nonroot user
# (65532) and a /tmp. `cargo build --release` first (a no-op when the binary is current), into
# ${CARGO_TARGET_DIR:-target}.
set -euo pipefail
log_tag=sluice-operator
# shellcheck source=../../e2e/lib/tooling.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/lib/tooling.sh"
dir="$1"
target="${CARGO_TARGET_DIR:-$sluice_root/target}"
case "$target" in /*) ;; *) target="$sluice_root/$target" ;; esac
(cd "$sluice_root" && "${CARGO:-cargo}" build --release --locked -q -p sluice-operator)
binary="$target/release/sluice-operator"

mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp"
chmod 1777 "$dir/tmp"
install -m 0755 "$binary" "$dir/usr/local/bin/sluice-operator"
# Every library the dynamic loader resolves for the binary, and the loader itself, at the same
# paths (ldd prints "name => path (address)" or "path (address)").
for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$dir$(dirname "$lib")"
  cp -L "$lib" "$dir$lib"
done
apt_install ca-certificates
cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
