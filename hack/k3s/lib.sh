#!/usr/bin/env bash
# Shared by the k3s scripts: the k3s version, the dry-run plan printer and the file writers, and
# the air-gap bundle checks. Sourced, not run.
#
# Plan lines (what --dry-run prints, and the tests read):
#   run: CMD ARG...            a command, shell-quoted
#   install: SRC -> DEST (mode M)
#   write: DEST (mode M)       followed by the content, each line prefixed "  | "

# Errors inside $(...) stop the script too, as they do outside it.
shopt -s inherit_errexit
# shellcheck source=../versions.env
source "$(dirname "${BASH_SOURCE[0]}")/../versions.env"
# k3s releases follow Kubernetes: v1.36.3 ships as v1.36.3+k3s1.
K3S_VERSION=${K3S_VERSION:-$K8S_VERSION+k3s1}
readonly K3S_IMAGES_DIR=/var/lib/rancher/k3s/agent/images
readonly K3S_CONFIG_DIR=/etc/rancher/k3s
dry_run=false
# Everything is written under $root; "" is the machine itself. Services are started only there.
root=

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "$*"; exit 1; }

run() {
  if [ "$dry_run" = true ]; then
    printf 'run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# install_file SRC DEST MODE: DEST is a path on the target machine.
install_file() {
  if [ "$dry_run" = true ]; then
    printf 'install: %s -> %s (mode %s)\n' "$1" "$2" "$3"
  else
    install -D -m "$3" "$1" "$root$2"
  fi
}

# write_file DEST MODE < content
write_file() {
  local content
  content=$(cat)
  if [ "$dry_run" = true ]; then
    printf 'write: %s (mode %s)\n' "$1" "$2"
    printf '%s\n' "$content" | sed 's/^/  | /'
  else
    install -d -m 0755 "$(dirname "$root$1")"
    printf '%s\n' "$content" >"$root$1.tmp"
    chmod "$2" "$root$1.tmp"
    mv -f "$root$1.tmp" "$root$1"
  fi
}

# The air-gap bundle the user supplies (nothing is downloaded): the k3s binary, its image tarball
# and k3s's install.sh, all of the same release.
bundle_images() {
  local bundle=$1 images=()
  [ -d "$bundle" ] || die "no bundle directory: $bundle"
  [ -f "$bundle/k3s" ] || die "the bundle has no k3s binary: $bundle/k3s"
  [ -f "$bundle/install.sh" ] || die "the bundle has no k3s install.sh: $bundle/install.sh"
  shopt -s nullglob
  images=("$bundle"/k3s-airgap-images-*.tar.zst "$bundle"/k3s-airgap-images-*.tar.gz "$bundle"/k3s-airgap-images-*.tar)
  shopt -u nullglob
  [ "${#images[@]}" -gt 0 ] || die "the bundle has no k3s-airgap-images-<arch>.tar[.zst|.gz]: $bundle"
  printf '%s\n' "${images[@]}"
}

# Places the binary and the images where k3s looks for them (air-gap install).
install_bundle() {
  local bundle=$1 images image
  images=$(bundle_images "$bundle")
  install_file "$bundle/k3s" /usr/local/bin/k3s 0755
  while IFS= read -r image; do
    install_file "$image" "$K3S_IMAGES_DIR/${image##*/}" 0644
  done <<<"$images"
}

# registries.yaml sending every pull to one private mirror (HOST:PORT), optionally with its CA.
render_registries() {
  local mirror=$1 ca=$2 upstream
  [[ $mirror =~ ^[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] || die "--registry-mirror wants HOST[:PORT], got: $mirror"
  echo "# Every image pull goes to the private mirror $mirror; k3s never reaches a public registry."
  echo "mirrors:"
  for upstream in docker.io ghcr.io quay.io registry.k8s.io; do
    printf '  "%s":\n    endpoint:\n      - "https://%s"\n' "$upstream" "$mirror"
  done
  if [ -n "$ca" ]; then
    printf 'configs:\n  "%s":\n    tls:\n      ca_file: "%s"\n' "$mirror" "$K3S_CONFIG_DIR/registry-ca.pem"
  fi
}

# Installs the registries.yaml for MIRROR (and its CA file) when a mirror was given.
install_registries() {
  local mirror=$1 ca=$2
  [ -n "$mirror" ] || return 0
  if [ -n "$ca" ]; then
    [ -f "$ca" ] || die "no registry CA file: $ca"
    install_file "$ca" "$K3S_CONFIG_DIR/registry-ca.pem" 0644
  fi
  render_registries "$mirror" "$ca" | write_file "$K3S_CONFIG_DIR/registries.yaml" 0600
}

# Runs k3s's own install.sh without any download, as the server or an agent.
run_k3s_installer() {
  local bundle=$1
  shift
  if [ -n "$root" ]; then
    log "--root $root: files placed; k3s's install.sh (systemd unit, service start) skipped"
    return 0
  fi
  run env INSTALL_K3S_SKIP_DOWNLOAD=true "INSTALL_K3S_VERSION=$K3S_VERSION" "$@" sh "$bundle/install.sh"
}
