#!/usr/bin/env bash
# Builds the third-party tools the project tests against from the Go module proxy, caches each
# binary outside the repository keyed by tool, version and build inputs, and links them into
# hack/bin/. A cached binary is reused; a binary named by TEST_ASSET_<TOOL> is used as is.
#
#   hack/install-tools.sh                 # the control-plane tools (what `make tools` builds)
#   hack/install-tools.sh etcd helm       # only these
#   hack/install-tools.sh node            # the node components (`make node-tools`)
#   hack/install-tools.sh runtime         # what a container needs: containerd, its shim, ctr, runc
#   hack/install-tools.sh images          # what the image build needs: umoci, cosign, crane
#
# Tools: kube-apiserver kubectl etcd etcdctl helm cosign registry oras (the default group);
# kubelet kube-controller-manager kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr
# runc bridge host-local loopback portmap coredns umoci crane (the node group). umoci makes the
# images' OCI layouts; crane serves the loopback registry cosign signs in (hack/images/build.sh).
# The CNI plugins are linked into hack/bin/cni/, the directory the runtime is given for CNI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache_root=${SECAI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/tools}
bin_dir="$here/bin"
mkdir -p "$bin_dir" "$cache_root"

all_tools=(kube-apiserver kubectl etcd etcdctl helm cosign registry oras)
runtime_tools=(containerd containerd-shim-runc-v2 ctr runc)
image_tools=(umoci cosign crane)
node_tools=(kubelet kube-controller-manager kube-scheduler kube-proxy "${runtime_tools[@]}"
  bridge host-local loopback portmap coredns "${image_tools[@]}")

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
    kubelet|kube-controller-manager|kube-scheduler|kube-proxy) echo kube-node ;;
    containerd|containerd-shim-runc-v2|ctr) echo containerd ;;
    runc) echo runc ;;
    bridge|host-local|loopback|portmap) echo cni ;;
    coredns) echo coredns ;;
    umoci) echo umoci ;;
    crane) echo crane ;;
    registry) echo registry ;;
    oras) echo oras ;;
    *) echo "unknown tool: $1" >&2; return 2 ;;
  esac
}

version_of() {
  case $(module_of "$1") in
    kube|kube-node) echo "$K8S_VERSION" ;;
    containerd) echo "$CONTAINERD_VERSION" ;;
    runc) echo "$RUNC_VERSION" ;;
    cni) echo "$CNI_PLUGINS_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    umoci) echo "$UMOCI_VERSION" ;;
    crane) echo "$CRANE_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    cosign) echo "$COSIGN_VERSION" ;;
    registry) echo "$REGISTRY_VERSION" ;;
    oras) echo "$ORAS_VERSION" ;;
  esac
}

package_of() {
  case $1 in
    kube-apiserver|kubectl|kubelet|kube-controller-manager|kube-scheduler|kube-proxy)
      echo "k8s.io/kubernetes/cmd/$1" ;;
    containerd|containerd-shim-runc-v2|ctr) echo "github.com/containerd/containerd/v2/cmd/$1" ;;
    runc) echo github.com/opencontainers/runc ;;
    bridge|loopback) echo "github.com/containernetworking/plugins/plugins/main/$1" ;;
    host-local) echo github.com/containernetworking/plugins/plugins/ipam/host-local ;;
    portmap) echo github.com/containernetworking/plugins/plugins/meta/portmap ;;
    coredns) echo github.com/coredns/coredns ;;
    umoci) echo github.com/opencontainers/umoci/cmd/umoci ;;
    crane) echo github.com/google/go-containerregistry/cmd/crane ;;
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
    kube|kube-node)
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
    containerd)
      echo "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" \
        "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2" ;;
    cni)
      echo "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" ;;
    *) echo "-s -w" ;;
  esac
}

# runc is the one cgo build: its nsenter is C, and seccomp filters come from libseccomp
# (libseccomp-dev in apt-packages.txt). runc's own Makefile adds the libpathrs tag, which links the
# Rust libpathrs; without it runc uses the pure-Go pathrs-lite of filepath-securejoin.
cgo_of() {
  case $1 in runc) echo 1 ;; *) echo 0 ;; esac
}

tags_of() {
  case $1 in
    runc) echo "seccomp urfave_cli_no_docs" ;;
    containerd|containerd-shim-runc-v2|ctr) echo "no_btrfs urfave_cli_no_docs" ;;
    *) echo "" ;;
  esac
}

# The CNI plugins go where the runtime and the kubelet look for them: one directory of plugins.
link_of() {
  case $(module_of "$1") in
    cni) mkdir -p "$bin_dir/cni"; echo "$bin_dir/cni/$1" ;;
    *) echo "$bin_dir/$1" ;;
  esac
}

# The module whose version versions.env pins, checked against the tools module's go.mod.
pinned_module_of() {
  case $(module_of "$1") in
    kube|kube-node) echo k8s.io/kubernetes ;;
    containerd) echo github.com/containerd/containerd/v2 ;;
    runc) echo github.com/opencontainers/runc ;;
    cni) echo github.com/containernetworking/plugins ;;
    coredns) echo github.com/coredns/coredns ;;
    umoci) echo github.com/opencontainers/umoci ;;
    crane) echo github.com/google/go-containerregistry ;;
  esac
}

check_pin() {
  local m gomod
  m=$(pinned_module_of "$1")
  [ -n "$m" ] || return 0
  gomod="$here/tools/$(module_of "$1")/go.mod"
  grep -qE "^[[:space:]]*(require[[:space:]]+)?$m $(version_of "$1")( |$)" "$gomod" || {
    echo "$1: $gomod does not require $m $(version_of "$1") (versions.env); update one of them" >&2
    return 1
  }
}

cache_key_of() {
  local mod
  mod=$(module_of "$1")
  # Tags and cgo enter the key only where set, so the keys of the other tools stay as they were.
  { cat "$here/tools/$mod/go.mod" "$here/tools/$mod/go.sum"; ldflags_of "$1"
    [ -z "$(tags_of "$1")" ] || echo "tags=$(tags_of "$1")"
    [ "$(cgo_of "$1")" = 0 ] || echo "cgo=$(cgo_of "$1")"
    go version; } \
    | sha256sum | cut -c1-16
}

install_tool() {
  local tool=$1 var path mod version key dest tmp start link
  var=$(override_var "$tool")
  link=$(link_of "$tool")
  path=${!var:-}
  if [ -n "$path" ]; then
    [ -x "$path" ] || { echo "$var=$path is not an executable" >&2; return 1; }
    ln -sfn "$path" "$link"
    echo "$tool: using $path (from $var)"
    return 0
  fi
  mod=$(module_of "$tool")
  version=$(version_of "$tool")
  check_pin "$tool"
  key=$(cache_key_of "$tool")
  dest="$cache_root/$tool/$version/$key/$tool"
  if [ -x "$dest" ]; then
    ln -sfn "$dest" "$link"
    echo "$tool $version: cached ($dest)"
    return 0
  fi
  command -v go >/dev/null || { echo "go is required to build $tool (or set $var)" >&2; return 1; }
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$(dirname "$dest")/.build-XXXXXX")
  start=$(date +%s)
  echo "$tool $version: building (first build takes minutes)..."
  (cd "$here/tools/$mod" && CGO_ENABLED=$(cgo_of "$tool") go build -trimpath \
    -tags="$(tags_of "$tool")" -ldflags="$(ldflags_of "$tool")" -o "$tmp/$tool" "$(package_of "$tool")")
  mv "$tmp/$tool" "$dest"
  rmdir "$tmp"
  echo "$(( $(date +%s) - start ))" > "$dest.build-seconds"
  ln -sfn "$dest" "$link"
  echo "$tool $version: built in $(cat "$dest.build-seconds") s"
}

tools=()
for arg in "$@"; do
  case $arg in
    node) tools+=("${node_tools[@]}") ;;
    runtime) tools+=("${runtime_tools[@]}") ;;
    images) tools+=("${image_tools[@]}") ;;
    *) tools+=("$arg") ;;
  esac
done
[ ${#tools[@]} -gt 0 ] || tools=("${all_tools[@]}")
for t in "${tools[@]}"; do
  module_of "$t" >/dev/null
  install_tool "$t"
done
