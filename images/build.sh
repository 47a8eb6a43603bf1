#!/usr/bin/env bash
# Builds container images without Docker and, when a real node is up, imports them into its
# containerd:
#
#   images/build.sh <name>...
#
# Each image is a folder images/<name>/ with
#   rootfs.sh   `rootfs.sh <dir>` fills an empty <dir> with the image's root filesystem
#   config.env  sourced by bash: ENTRYPOINT=(...), CMD=(...), USER=uid:gid, ENV=(K=V ...),
#               WORKDIR=/path; each optional
# and becomes localhost/<name>:dev, one layer, as a docker-archive in
# ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice}/images/<name>-<hash>.tar (the hash covers the root
# filesystem's files, owners and modes, and config.env: an unchanged image is not rebuilt). The
# OCI layout is made by Debian's umoci, the archive by Debian's skopeo (both installed when
# missing). Pods use it with `imagePullPolicy: IfNotPresent` (nothing can be pulled).
#
# Import: into the containerd of the cluster at SLUICE_CLUSTER_DIR when it runs a real node (its
# env file names the socket), or always with SLUICE_IMAGE_IMPORT=1. Prints each archive's path.
set -euo pipefail
log_tag=images
images_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../e2e/lib/tooling.sh
source "$images_dir/../e2e/lib/tooling.sh"
here="$sluice_root/e2e/cluster"
# shellcheck source=../e2e/cluster/common.sh
source "$here/common.sh"

[ "$#" -gt 0 ] || { echo "usage: $0 <name>... (folders of $images_dir)" >&2; exit 2; }
store="$cache_root/images"
mkdir -p "$store"

# The config.env of image <name>, as umoci config flags, one per line.
config_flags() {
  (
    unset ENTRYPOINT CMD USER ENV WORKDIR
    # shellcheck disable=SC1090
    source "$images_dir/$1/config.env"
    local a
    for a in ${ENTRYPOINT+"${ENTRYPOINT[@]}"}; do echo "--config.entrypoint=$a"; done
    for a in ${CMD+"${CMD[@]}"}; do echo "--config.cmd=$a"; done
    for a in ${ENV+"${ENV[@]}"}; do echo "--config.env=$a"; done
    [ -z "${USER:-}" ] || echo "--config.user=$USER"
    [ -z "${WORKDIR:-}" ] || echo "--config.workingdir=$WORKDIR"
  )
}

# archive <name> <rootfs> <out>: the OCI image (umoci) and the docker-archive (skopeo).
archive() {
  local name="$1" rootfs="$2" out="$3" oci flags=()
  oci="$(dirname "$rootfs")/oci"
  mapfile -t flags < <(config_flags "$name")
  umoci init --layout "$oci"
  umoci new --image "$oci:dev"
  umoci insert --image "$oci:dev" "$rootfs" /
  umoci config --image "$oci:dev" --os linux --architecture amd64 "${flags[@]}"
  skopeo --insecure-policy copy --quiet "oci:$oci:dev" "docker-archive:$out.tmp:localhost/$name:dev"
  mv "$out.tmp" "$out"
}

# build <name>: prints the archive's path, building it unless an identical one exists.
build() {
  local name="$1" tmp key out start=$SECONDS
  [ -x "$images_dir/$name/rootfs.sh" ] && [ -f "$images_dir/$name/config.env" ] ||
    { log "no image $name: $images_dir/$name needs rootfs.sh (executable) and config.env"; exit 1; }
  tmp="$(mktemp -d "$store/.$name.XXXXXX")"
  mkdir "$tmp/rootfs"
  "$images_dir/$name/rootfs.sh" "$tmp/rootfs" >&2
  key="$({ tar --sort=name --mtime=@0 --numeric-owner -C "$tmp/rootfs" -cf - . | sha256sum
    sha256sum <"$images_dir/$name/config.env"; } | sha256sum | cut -c1-16)"
  out="$store/$name-$key.tar"
  if [ -s "$out" ]; then
    log "cached localhost/$name:dev ($out)"
  else
    archive "$name" "$tmp/rootfs" "$out" >&2
    log "built localhost/$name:dev in $((SECONDS - start))s ($(du -h "$out" | cut -f1))"
  fi
  rm -rf "$tmp"
  echo "$out"
}

# import <archive>: into the real node's containerd, in the CRI's namespace.
import() {
  local start=$SECONDS
  local out
  # ctr repeats containerd's deprecation warnings (cgroup v1) on stderr: shown only on failure.
  out="$(node_ctr images import "$1" 2>&1)" || { log "ctr images import $1 failed: $out"; exit 1; }
  log "imported $(basename "$1") into $containerd_sock in $((SECONDS - start))s"
}

wants_import() {
  [ "${SLUICE_IMAGE_IMPORT:-}" = 1 ] || { [ -f "$cluster_dir/env" ] && grep -q '^SLUICE_REAL_NODE=1$' "$cluster_dir/env"; }
}

apt_install umoci skopeo
for name in "$@"; do
  out="$(build "$name")"
  if wants_import; then
    [ -S "$containerd_sock" ] || { log "no containerd at $containerd_sock (is the real node up?)"; exit 1; }
    import "$out"
  fi
  echo "$out"
done
