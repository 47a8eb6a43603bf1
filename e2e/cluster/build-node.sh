# The real node's binaries, for build.sh (sourced, not run; uses $bin, $work and the helpers of
# e2e/lib/tooling.sh): containerd with its runc shim and ctr, runc, and Debian's CNI plugins.
# The kubelet is built by build.sh's build_kubernetes, with the rest of k8s.io/kubernetes.

# build_go_commands <name> <module> <version> <ldflags> <package...>: several commands of one
# module, each into $bin/<last path element>, from one throwaway module in $work/<name>.
build_go_commands() {
  local name="$1" module="$2" version="$3" ldflags="$4" pkg missing=0; shift 4
  for pkg in "$@"; do have "${pkg##*/}" "$version" || missing=1; done
  if [ "$missing" = 0 ]; then
    log "cached $name $version"
    return
  fi
  mkdir -p "$work/$name"
  (
    cd "$work/$name"
    printf 'module sluice.dev/tools/%s\n\ngo 1.26.0\n\nrequire %s %s\n' "$name" "$module" "$version" >go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for pkg in "$@"; do printf '\t_ "%s"\n' "$pkg"; done
      printf ')\n'
    } >tools.go
    go mod tidy >/dev/null
    for pkg in "$@"; do
      timed "${pkg##*/} $version" go build -trimpath -tags "${GO_TAGS:-}" -ldflags "-s -w $ldflags" \
        -o "$bin/${pkg##*/}" "$pkg"
      mark "${pkg##*/}" "$version"
    done
  )
}

# containerd 2.x, its runc shim (containerd-shim-runc-v2) and ctr (used to import images), static.
build_containerd() {
  local m=github.com/containerd/containerd/v2
  build_go_commands containerd "$m" "$CONTAINERD_VERSION" \
    "-X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=$m" \
    "$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr"
}

# runc with seccomp support (the kubelet's RuntimeDefault profile needs it): cgo against
# Debian's libseccomp-dev, linked to the libseccomp2 shared library.
build_runc() {
  have runc "$RUNC_VERSION" && { log "cached runc $RUNC_VERSION"; return; }
  apt_install libseccomp-dev
  CGO_ENABLED=1 GO_TAGS=seccomp build_go_commands runc github.com/opencontainers/runc \
    "$RUNC_VERSION" "-X main.version=${RUNC_VERSION#v}" github.com/opencontainers/runc
}

# Debian's containernetworking-plugins, unpacked (not installed) into the cache: the plugins are
# static binaries. $bin/cni is a symlink to the folder with bridge, host-local, loopback, portmap.
install_cni_plugins() {
  local dest
  dest="$(deb_unpack containernetworking-plugins)"
  ln -sfn "$dest/usr/lib/cni" "$bin/cni"
  log "CNI plugins: $(readlink "$bin/cni")"
}
