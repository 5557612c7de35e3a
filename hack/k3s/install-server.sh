#!/usr/bin/env bash
# Installs a k3s server from a user-supplied air-gap bundle (nothing is downloaded): the binary to
# /usr/local/bin, the image tarball to /var/lib/rancher/k3s/agent/images/, config.yaml (Traefik off,
# secrets encrypted at rest, kubeconfig readable by root only) and optionally registries.yaml for a
# private mirror, then runs the bundle's install.sh with INSTALL_K3S_SKIP_DOWNLOAD=true.
#
# Usage: install-server.sh --bundle DIR [--registry-mirror HOST:PORT [--registry-ca FILE]]
#                          [--node-ip IP] [--root DIR] [--dry-run]
#   --root DIR  place the files under DIR and start nothing (for inspection and tests)
#   --dry-run   print the plan and change nothing
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bundle='' mirror='' ca='' node_ip=''
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift ;;
    --registry-mirror) mirror=$2; shift ;;
    --registry-ca) ca=$2; shift ;;
    --node-ip) node_ip=$2; shift ;;
    --root) root=$2; shift ;;
    --dry-run) dry_run=true ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[ -n "$bundle" ] || die "usage: install-server.sh --bundle DIR [--registry-mirror HOST:PORT] [--dry-run]"
[ "$dry_run" = true ] || [ -n "$root" ] || [ "$(id -u)" = 0 ] || die "must run as root (or with --dry-run or --root)"
[ -z "$node_ip" ] || [[ $node_ip =~ ^[0-9A-Fa-f:.]+$ ]] || die "--node-ip wants an IP address, got: $node_ip"

install_bundle "$bundle"
{
  echo "# k3s server of a SecAI lab cluster (hack/k3s/install-server.sh)."
  echo 'write-kubeconfig-mode: "0600"'
  echo "disable:"
  echo "  - traefik"
  echo "secrets-encryption: true"
  [ -z "$node_ip" ] || printf 'node-ip: "%s"\n' "$node_ip"
} | write_file "$K3S_CONFIG_DIR/config.yaml" 0600
install_registries "$mirror" "$ca"
run_k3s_installer "$bundle" INSTALL_K3S_EXEC=server

if [ -z "$root" ]; then
  run /usr/local/bin/k3s kubectl wait --for=condition=Ready node --all --timeout=180s
  log "server ready; agents join with K3S_URL=https://<this node's IP>:6443 and the token in /var/lib/rancher/k3s/server/agent-token"
fi
