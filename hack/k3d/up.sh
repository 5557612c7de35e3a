#!/usr/bin/env bash
# Creates the k3d development cluster of cluster.yaml (Docker required), imports locally built
# images into it, writes its kubeconfig to .lab/k3d-kubeconfig and installs the chart with the k3s
# values. `down` deletes the cluster.
#
# Usage: up.sh [--image IMAGE]... [--dry-run]
#        up.sh down [--dry-run]
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=../k3s/lib.sh
source "$here/../k3s/lib.sh"
repo=$(cd "$here/../.." && pwd)
readonly CLUSTER=secai
kubeconfig=$repo/.lab/k3d-kubeconfig

action=up
images=()
while [ $# -gt 0 ]; do
  case "$1" in
    down) action=down ;;
    --image) images+=("$2"); shift ;;
    --dry-run) dry_run=true ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done

# The image in cluster.yaml must be the k3s release the project pins.
expected="rancher/k3s:${K3S_VERSION/+/-}"
grep -qx "image: $expected" "$here/cluster.yaml" || die "hack/k3d/cluster.yaml does not use $expected"

if [ "$action" = down ]; then
  run k3d cluster delete "$CLUSTER"
  exit 0
fi
run k3d cluster create --config "$here/cluster.yaml"
[ "${#images[@]}" -eq 0 ] || run k3d image import --cluster "$CLUSTER" "${images[@]}"
run mkdir -p "$repo/.lab"
run k3d kubeconfig write "$CLUSTER" --output "$kubeconfig"
dry_flag=()
[ "$dry_run" != true ] || dry_flag=(--dry-run)
"$here/../k3s/helm-install.sh" --kubeconfig "$kubeconfig" ${dry_flag[@]+"${dry_flag[@]}"}
