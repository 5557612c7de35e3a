#!/usr/bin/env bash
# Installs a k3s agent from a user-supplied air-gap bundle (nothing is downloaded) and joins it to a
# server: binary, image tarball, config.yaml with the SecAI node label and the not-compliant taint
# (nothing is scheduled there before the SecAI agent reports the node compliant), optionally a
# registries.yaml for a private mirror, then the bundle's install.sh as an agent. Nodes built from
# node-image/ have all of this in the image and need only /etc/secai/node.env.
#
# Usage: install-agent.sh --bundle DIR --server https://IP:6443 --token-file FILE
#                         [--node-label KEY=VALUE]... [--registry-mirror HOST:PORT [--registry-ca FILE]]
#                         [--root DIR] [--dry-run]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bundle='' server='' token_file='' mirror='' ca=''
labels=(secai.io/node=true)
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift ;;
    --server) server=$2; shift ;;
    --token-file) token_file=$2; shift ;;
    --node-label) labels+=("$2"); shift ;;
    --registry-mirror) mirror=$2; shift ;;
    --registry-ca) ca=$2; shift ;;
    --root) root=$2; shift ;;
    --dry-run) dry_run=true ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
if [ -z "$bundle" ] || [ -z "$server" ] || [ -z "$token_file" ]; then
  die "usage: install-agent.sh --bundle DIR --server https://IP:6443 --token-file FILE [--dry-run]"
fi
server_pattern='^https://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$'
[[ $server =~ $server_pattern ]] || die "--server wants https://HOST:PORT, got: $server"
[ -f "$token_file" ] || die "no token file: $token_file"
[ "$dry_run" = true ] || [ -n "$root" ] || [ "$(id -u)" = 0 ] || die "must run as root (or with --dry-run or --root)"
for label in "${labels[@]}"; do
  [[ $label =~ ^([a-z0-9.-]+/)?[A-Za-z0-9._-]+=[A-Za-z0-9._-]*$ ]] || die "invalid --node-label: $label"
done

install_bundle "$bundle"
install_file "$token_file" "$K3S_CONFIG_DIR/agent-token" 0600
{
  echo "# k3s agent of a SecAI lab cluster (hack/k3s/install-agent.sh)."
  printf 'server: "%s"\n' "$server"
  printf 'token-file: "%s"\n' "$K3S_CONFIG_DIR/agent-token"
  echo "node-label:"
  for label in "${labels[@]}"; do printf '  - "%s"\n' "$label"; done
  echo "node-taint:"
  echo '  - "secai.io/not-compliant:NoSchedule"'
} | write_file "$K3S_CONFIG_DIR/config.yaml" 0600
install_registries "$mirror" "$ca"
run_k3s_installer "$bundle" INSTALL_K3S_EXEC=agent "K3S_URL=$server" "K3S_TOKEN_FILE=$K3S_CONFIG_DIR/agent-token"
