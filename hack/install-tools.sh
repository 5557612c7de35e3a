#!/usr/bin/env bash
# Builds the third-party tools the project tests against from the Go module proxy, caches each
# binary outside the repository keyed by tool, version and build inputs, and links them into
# hack/bin/. A cached binary is reused; a binary named by TEST_ASSET_<TOOL> is used as is.
#
#   hack/install-tools.sh                 # every tool
#   hack/install-tools.sh etcd helm       # only these
#
# Tools: kube-apiserver kubectl etcd etcdctl helm cosign registry oras
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache_root=${SECAI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/tools}
bin_dir="$here/bin"
mkdir -p "$bin_dir" "$cache_root"

all_tools=(kube-apiserver kubectl etcd etcdctl helm cosign registry oras)

# The environment variable that names a user-supplied binary for a tool (envtest's names).
override_var() {
  local upper=${1^^}
  echo "TEST_ASSET_${upper//-/_}"
}

module_of() {
  case $1 in
    kube-apiserver|kubectl) echo kube ;;
    etcd|etcdctl) echo etcd ;;
    helm) echo helm ;;
    cosign) echo cosign ;;
    registry) echo registry ;;
    oras) echo oras ;;
    *) echo "unknown tool: $1" >&2; return 2 ;;
  esac
}

version_of() {
  case $(module_of "$1") in
    kube) echo "$K8S_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    cosign) echo "$COSIGN_VERSION" ;;
    registry) echo "$REGISTRY_VERSION" ;;
    oras) echo "$ORAS_VERSION" ;;
  esac
}

package_of() {
  case $1 in
    kube-apiserver|kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    etcdctl) echo go.etcd.io/etcd/etcdctl/v3 ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    cosign) echo github.com/sigstore/cosign/v3/cmd/cosign ;;
    registry) echo github.com/distribution/distribution/v3/cmd/registry ;;
    oras) echo oras.land/oras/cmd/oras ;;
  esac
}

# Version stamps: without them kube-apiserver reports v0.0.0-master (helm then refuses charts with
# kubeVersion) and helm assumes Kubernetes 1.20 when linting and templating.
ldflags_of() {
  local v minor
  v=$(version_of "$1")
  case $(module_of "$1") in
    kube)
      minor=${v#v1.}; minor=${minor%%.*}
      echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1" \
        "-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
        "-X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1" \
        "-X k8s.io/client-go/pkg/version.gitMinor=$minor" ;;
    helm)
      minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$v" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" ;;
    cosign)
      echo "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$v" ;;
    *) echo "-s -w" ;;
  esac
}

cache_key_of() {
  local mod
  mod=$(module_of "$1")
  { cat "$here/tools/$mod/go.mod" "$here/tools/$mod/go.sum"; ldflags_of "$1"; go version; } \
    | sha256sum | cut -c1-16
}

install_tool() {
  local tool=$1 var path mod version key dest tmp start
  var=$(override_var "$tool")
  path=${!var:-}
  if [ -n "$path" ]; then
    [ -x "$path" ] || { echo "$var=$path is not an executable" >&2; return 1; }
    ln -sfn "$path" "$bin_dir/$tool"
    echo "$tool: using $path (from $var)"
    return 0
  fi
  mod=$(module_of "$tool")
  version=$(version_of "$tool")
  key=$(cache_key_of "$tool")
  dest="$cache_root/$tool/$version/$key/$tool"
  if [ -x "$dest" ]; then
    ln -sfn "$dest" "$bin_dir/$tool"
    echo "$tool $version: cached ($dest)"
    return 0
  fi
  command -v go >/dev/null || { echo "go is required to build $tool (or set $var)" >&2; return 1; }
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$(dirname "$dest")/.build-XXXXXX")
  start=$(date +%s)
  echo "$tool $version: building (first build takes minutes)..."
  (cd "$here/tools/$mod" && CGO_ENABLED=0 go build -trimpath -ldflags="$(ldflags_of "$tool")" \
    -o "$tmp/$tool" "$(package_of "$tool")")
  mv "$tmp/$tool" "$dest"
  rmdir "$tmp"
  echo "$(( $(date +%s) - start ))" > "$dest.build-seconds"
  ln -sfn "$dest" "$bin_dir/$tool"
  echo "$tool $version: built in $(cat "$dest.build-seconds") s"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=("${all_tools[@]}")
for t in "${tools[@]}"; do
  module_of "$t" >/dev/null
  install_tool "$t"
done
