#!/usr/bin/env bash
# Installs or upgrades the SecAI Fleet chart on a k3s (or k3d) cluster, with values-k3s.yaml for
# k3s's containerd paths. Uses the helm built by hack/install-tools.sh when there is one.
#
# Usage: helm-install.sh [--chart DIR] [--kubeconfig FILE] [--namespace NS] [--release NAME]
#                        [--values FILE]... [--dry-run]
#   defaults: charts/secai-fleet, /etc/rancher/k3s/k3s.yaml, secai-system, secai-fleet
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=lib.sh
source "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)

chart=$repo/charts/secai-fleet
kubeconfig=/etc/rancher/k3s/k3s.yaml
namespace=secai-system
release=secai-fleet
values=("$here/values-k3s.yaml")
while [ $# -gt 0 ]; do
  case "$1" in
    --chart) chart=$2; shift ;;
    --kubeconfig) kubeconfig=$2; shift ;;
    --namespace) namespace=$2; shift ;;
    --release) release=$2; shift ;;
    --values) values+=("$2"); shift ;;
    --dry-run) dry_run=true ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[[ $namespace =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "invalid --namespace: $namespace"
[[ $release =~ ^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$ ]] || die "invalid --release: $release"
for file in "${values[@]}"; do [ -f "$file" ] || die "no values file: $file"; done

helm=${TEST_ASSET_HELM:-$repo/hack/bin/helm}
[ -x "$helm" ] || helm=helm
if [ "$dry_run" != true ]; then
  [ -f "$chart/Chart.yaml" ] || die "no chart at $chart"
  [ -r "$kubeconfig" ] || die "cannot read the kubeconfig $kubeconfig"
fi

args=(upgrade --install "$release" "$chart" --namespace "$namespace" --create-namespace --kubeconfig "$kubeconfig")
for file in "${values[@]}"; do args+=(--values "$file"); done
run "$helm" "${args[@]}" --wait --timeout 5m
