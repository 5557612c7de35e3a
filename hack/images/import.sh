#!/usr/bin/env bash
# Loads built images into a node's containerd, each only after its cosign signature verifies
# (hack/images/verify.sh); the first that does not verify stops the import, naming the image, and
# nothing of it reaches the runtime.
#
# Usage: hack/images/import.sh [--address SOCKET] [--namespace NS] [--k3s-images DIR] COSIGN_PUB IMAGE_DIR NAME...
#   IMAGE_DIR holds NAME.oci.tar and NAME.signed/ (hack/images/build.sh)
#   --address     containerd's socket (default /run/containerd/containerd.sock)
#   --namespace   containerd namespace (default k8s.io, the kubelet's)
#   --k3s-images  instead of containerd, copy the verified archives into a k3s images directory
#                 (/var/lib/rancher/k3s/agent/images/), which k3s imports when it starts
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
address=/run/containerd/containerd.sock
namespace=k8s.io
k3s_images=
while [ $# -gt 0 ]; do
  case $1 in
    --address) address=$2; shift 2 ;;
    --namespace) namespace=$2; shift 2 ;;
    --k3s-images) k3s_images=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "import.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || { echo "usage: import.sh [--address SOCKET] [--namespace NS] [--k3s-images DIR] COSIGN_PUB IMAGE_DIR NAME..." >&2; exit 2; }
pub=$1 dir=$2
shift 2
# The runtime gets the very bytes that were verified: a private copy of each archive.
private=$(mktemp -d "${TMPDIR:-/tmp}/secai-import.XXXXXX")
trap 'rm -rf "$private"' EXIT
for name in "$@"; do
  [ -f "$dir/$name.oci.tar" ] || { echo "import.sh: image $name: $dir/$name.oci.tar does not exist" >&2; exit 1; }
  cp "$dir/$name.oci.tar" "$private/$name.oci.tar"
  if ! digest=$("$repo/hack/images/verify.sh" "$pub" "$private/$name.oci.tar" "$dir/$name.signed"); then
    echo "import.sh: refusing to import $name: its signature does not verify (above)" >&2
    exit 1
  fi
  if [ -n "$k3s_images" ]; then
    mkdir -p "$k3s_images"
    cp "$private/$name.oci.tar" "$k3s_images/$name.tar.partial"
    mv "$k3s_images/$name.tar.partial" "$k3s_images/$name.tar"
  else
    "$repo/hack/bin/ctr" --address "$address" --namespace "$namespace" images import "$private/$name.oci.tar" >&2
    # A Pod that pins the image (repository@sha256:…, the chart's image.digest) is looked up by that
    # name, which a pull makes and an import does not: name the verified digest too.
    ref=$(tar -xOf "$private/$name.oci.tar" ./index.json | grep -o '"org.opencontainers.image.ref.name":"[^"]*"' | head -n 1 | cut -d'"' -f4)
    [ -n "$ref" ] || { echo "import.sh: image $name: its archive names no reference" >&2; exit 1; }
    "$repo/hack/bin/ctr" --address "$address" --namespace "$namespace" images tag --force "$ref" "${ref%:*}@$digest" >/dev/null
  fi
  echo "$name $digest"
done
