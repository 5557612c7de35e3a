#!/usr/bin/env bash
# Builds the project's two container images without Docker or a registry, reproducibly, and signs
# them with cosign:
#
#   ghcr.io/secai-fleet/secai-fleet:<version>  operator, agent and token relay (one image, as the
#                                              chart expects): Debian bookworm from Debian's
#                                              packages (mmdebstrap), Node 24 from the npm package
#                                              `node`, production npm dependencies from the lockfile,
#                                              the native helpers compiled in the image's own root
#   registry.k8s.io/pause:<version>            the sandbox image containerd needs, pause.c from the
#                                              pinned Kubernetes module, compiled statically
#
# Each image is an OCI layout made by umoci, written as an OCI archive (GNU tar with sorted names
# and fixed times) that `ctr images import` and k3s's agent/images/ both take. Same inputs, same
# digest: every file time is clamped to SOURCE_DATE_EPOCH (default: the time of the last commit),
# mmdebstrap builds the Debian root with the same epoch, and the config and history entries carry
# the epoch, not the build time. The Debian packages are the mirror's current ones: a mirror update changes the digest.
#
# Signing: cosign signs manifests in registries only, so the build starts crane's registry on
# loopback for the duration, pushes each layout there, signs it with the key (no transparency log,
# no network), and `cosign save`s the image with its signature to <name>.signed/ next to the
# archive. hack/images/import.sh verifies that signature offline before a runtime gets the image.
#
# Usage: hack/images/build.sh OUT_DIR [secai-fleet] [pause]   (default: both)
#   COSIGN_KEY=path    signing key (cosign generate-key-pair); default OUT_DIR/cosign.key, made
#                      with an empty password when missing (COSIGN_PASSWORD is passed to cosign)
# Writes OUT_DIR/<name>.oci.tar, OUT_DIR/<name>.signed/, OUT_DIR/<name>.digest, OUT_DIR/cosign.pub.
# Needs root (the Debian root has root-owned files and device nodes), mmdebstrap, bwrap, gcc, and
# umoci, cosign, crane from hack/install-tools.sh images.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build.sh OUT_DIR [secai-fleet] [pause]}
shift
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(secai-fleet pause)
bin=$repo/hack/bin
for tool in umoci cosign crane; do
  [ -x "$bin/$tool" ] || { echo "build.sh: $bin/$tool is missing: run hack/install-tools.sh images" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (the image roots hold root-owned files)" >&2; exit 1; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
history=(--history.created="$created" --history.author=secai-fleet)
version=$(node -p 'require(process.argv[1]).version' "$repo/package.json")
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/secai-images.XXXXXX")
registry_pid=

cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

log() { echo "build.sh: $*" >&2; }

# Every file no newer than the epoch, links included: umoci writes the times it finds.
clamp_times() {
  find "$1" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
}

# The first deb822 sources file of the machine, so the image's packages come from the mirror the
# machine already uses (and its security suite).
debian_sources() {
  local file
  for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -s "$file" ] && { echo "$file"; return 0; }
  done
  echo "build.sh: no apt sources on this machine" >&2
  return 1
}

# The Debian root of the secai-fleet image: what the agent drives (nft, bwrap, cryptsetup,
# tpm2-tools; netbase for /etc/protocols, without which nft lists `l4proto { 6, 17 }` where the
# agent wrote and reads back `{ tcp, udp }`; found on the first run of the chart on kubelets),
# gcc and the nftables headers (the agent keys its cached helpers by the compiler's
# version, so the compiler stays), and the operator's user, uid/gid 65532 as the chart runs it.
# The downloaded packages are kept in the cache (mmdebstrap's sync-in/sync-out hooks) and removed
# from the root: a rebuild downloads only what the mirror changed.
build_debian_root() {
  local target=$1 debs=${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/debs/bookworm lock
  mkdir -p "$debs"
  # One build at a time uses the package cache (parallel test suites build images too).
  exec {lock}>"$debs.lock"
  flock "$lock"
  # shellcheck disable=SC2016 # mmdebstrap expands $1 (the root) in its hooks
  mmdebstrap --quiet --mode=root --variant=essential --format=directory \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' --setup-hook="sync-in $debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $debs" \
    --include=passwd,ca-certificates,netbase,libstdc++6,nftables,bubblewrap,cryptsetup-bin,tpm2-tools,gcc,libc6-dev,libmnl-dev,libnftnl-dev,libnftables-dev \
    --customize-hook='chroot "$1" groupadd --gid 65532 nonroot' \
    --customize-hook='chroot "$1" useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot' \
    --customize-hook='rm -rf "$1"/var/cache/ldconfig/aux-cache "$1"/var/log/* "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id' \
    bookworm "$target" "$(debian_sources)"
  flock --unlock "$lock"
  exec {lock}>&-
}

# /opt/secai-fleet as the chart expects it: package.json, production node_modules, dist/, api/,
# agents/src/, bin/; Node 24 in /usr/local/bin.
build_app_tree() {
  local app=$1 dest=$1/opt/secai-fleet node_bin
  mkdir -p "$dest" "$app/usr/local/bin"
  node_bin=$(readlink -f "$repo/node_modules/node/bin/node")
  [ -x "$node_bin" ] || { echo "build.sh: Node 24 from the npm package is missing: run make node_modules" >&2; return 1; }
  install -m 0755 "$node_bin" "$app/usr/local/bin/node"
  (cd "$repo" && npx tsx operator/build.ts >/dev/null)
  cp "$repo/package.json" "$repo/package-lock.json" "$dest/"
  # Tracked sources of the working tree, without tests.
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard -- api agents/src bin \
    | grep -zv '\.test\.ts$' | xargs -0 cp --parents -t "$dest")
  mkdir -p "$dest/dist"
  cp "$repo/dist/operator.mjs" "$repo/dist/operator.mjs.map" "$dest/dist/"
  # The lockfile's versions, from npm's cache only (make node_modules filled it). Not `npm ci`: the
  # lockfile leaves out other platforms' optional packages, which npm ci counts as out of sync. No
  # install scripts: what they would fetch or build is not part of the image.
  (cd "$dest" && npm install --omit=dev --offline --ignore-scripts --no-save --no-audit --no-fund --loglevel=error >/dev/null) || {
    echo "build.sh: npm install --offline failed: the npm cache lacks a production dependency (run make node_modules)" >&2
    return 1
  }
  rm -rf "$dest/node_modules/.package-lock.json"
}

# The helpers are compiled inside the image's own root (its gcc, its libraries), with no network,
# into the cache directories the image's environment names; the agent finds them there at start.
compile_native_helpers() {
  local root=$1 app=$2 script
  mkdir -p "$app/opt/secai-fleet/native"
  for script in agents/src/sandbox/build-landlock-launcher.ts agents/src/egress/build-set-element-reader.ts agents/src/egress/build-nft-session.ts; do
    bwrap --bind "$root" / --bind "$app/opt/secai-fleet" /opt/secai-fleet \
      --ro-bind "$app/usr/local/bin/node" /usr/local/bin/node \
      --proc /proc --dev /dev --tmpfs /tmp --unshare-all --die-with-parent --chdir /opt/secai-fleet \
      --clearenv --setenv PATH /usr/local/bin:/usr/bin:/bin --setenv HOME /tmp \
      --setenv SECAI_SANDBOX_CACHE /opt/secai-fleet/native --setenv SECAI_NATIVE_CACHE /opt/secai-fleet/native \
      /usr/local/bin/node --import tsx "$script" >&2
  done
}

# umoci's layout; then an OCI archive. History entries carry the epoch, not the build time.
new_layout() {
  local layout=$1 ref=$2
  "$bin/umoci" init --layout "$layout"
  "$bin/umoci" new --image "$layout:$ref"
}

write_archive() {
  local layout=$1 name=$2
  "$bin/umoci" gc --layout "$layout"
  clamp_times "$layout"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$layout" -cf "$out/$name.oci.tar" .
}

manifest_digest() {
  node -e 'const i = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (i.manifests.length !== 1) throw new Error("expected one manifest"); console.log(i.manifests[0].digest)' "$1/index.json"
}

build_secai_fleet() {
  local ref=ghcr.io/secai-fleet/secai-fleet:$version layout=$work/secai-fleet.oci
  local root=$work/secai-fleet-root app=$work/secai-fleet-app
  log "secai-fleet: Debian root (mmdebstrap)"
  build_debian_root "$root"
  log "secai-fleet: application tree"
  build_app_tree "$app"
  log "secai-fleet: native helpers"
  compile_native_helpers "$root" "$app"
  chmod -R a+rX "$app/opt/secai-fleet"
  clamp_times "$root"
  clamp_times "$app"
  new_layout "$layout" "$ref"
  "$bin/umoci" insert --image "$layout:$ref" "${history[@]}" --history.created_by="mmdebstrap bookworm" "$root" /
  "$bin/umoci" insert --image "$layout:$ref" "${history[@]}" --history.created_by="hack/images/build.sh: /opt/secai-fleet" "$app" /
  "$bin/umoci" config --image "$layout:$ref" --no-history --created="$created" --author=secai-fleet \
    --os=linux --architecture=amd64 --config.user=65532:65532 --config.workingdir=/opt/secai-fleet \
    --config.env=PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env=NODE_ENV=production \
    --config.env=SECAI_SANDBOX_CACHE=/opt/secai-fleet/native --config.env=SECAI_NATIVE_CACHE=/opt/secai-fleet/native \
    --config.entrypoint=node --config.cmd=dist/operator.mjs \
    --config.label=org.opencontainers.image.source=https://github.com/secai-fleet/secai-fleet \
    --config.label=org.opencontainers.image.version="$version"
  finish_image secai-fleet "$layout" "$ref"
}

# The pause container of the pinned Kubernetes release, as its build/pause/Makefile compiles it.
build_pause() {
  local src tag ref layout=$work/pause.oci root=$work/pause-root
  src=$(cd "$repo/hack/tools/kube" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause
  tag=$(sed -n 's/^TAG ?= *//p' "$src/Makefile")
  ref=registry.k8s.io/pause:$tag
  mkdir -p "$root"
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-secai" -o "$root/pause" "$src/linux/pause.c"
  strip "$root/pause"
  clamp_times "$root"
  new_layout "$layout" "$ref"
  "$bin/umoci" insert --image "$layout:$ref" "${history[@]}" --history.created_by="gcc -static pause.c" "$root" /
  "$bin/umoci" config --image "$layout:$ref" --no-history --created="$created" --os=linux --architecture=amd64 \
    --config.user=65535:65535 --config.entrypoint=/pause --config.workingdir=/
  finish_image pause "$layout" "$ref"
}

finish_image() {
  local name=$1 layout=$2 ref=$3 digest
  write_archive "$layout" "$name"
  digest=$(manifest_digest "$layout")
  echo "$digest" > "$out/$name.digest"
  sign_image "$name" "$layout" "$ref" "$digest"
  log "$name: $ref@$digest ($(du -b "$out/$name.oci.tar" | cut -f1) bytes)"
}

start_registry() {
  [ -z "$registry_pid" ] || return 0
  local port_file=$work/registry.log
  mkdir -p "$work/registry"
  "$bin/crane" registry serve --address 127.0.0.1:0 --disk "$work/registry" >"$port_file" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    registry=$(sed -n 's/.*serving on port \([0-9]*\).*/127.0.0.1:\1/p' "$port_file" | head -n1)
    [ -n "$registry" ] && return 0
    sleep 0.1
  done
  echo "build.sh: crane registry did not start: $(cat "$port_file")" >&2
  return 1
}

sign_image() {
  local name=$1 layout=$2 ref=$3 digest=$4 repo_ref
  if [ ! -f "$key" ]; then
    [ -z "${COSIGN_KEY:-}" ] || { echo "build.sh: COSIGN_KEY=$COSIGN_KEY does not exist" >&2; return 1; }
    log "no signing key: making $key (empty password)"
    (cd "$out" && "$bin/cosign" generate-key-pair >/dev/null)
  fi
  [ -f "$out/cosign.pub" ] || "$bin/cosign" public-key --key "$key" > "$out/cosign.pub"
  start_registry
  repo_ref=$registry/${ref%:*}
  "$bin/crane" push --insecure "$layout" "$repo_ref:${ref##*:}" >"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; return 1; }
  "$bin/cosign" sign --yes --key "$key" --tlog-upload=false --use-signing-config=false \
    --new-bundle-format=false --allow-insecure-registry --allow-http-registry "$repo_ref@$digest" >&2
  rm -rf "$out/$name.signed"
  "$bin/cosign" save --allow-insecure-registry --allow-http-registry --dir "$out/$name.signed" "$repo_ref@$digest"
  # The saved layout must hold a signature, or the sign step failed.
  "$repo/hack/images/verify.sh" "$out/cosign.pub" "$out/$name.oci.tar" "$out/$name.signed" >/dev/null
}

key=${COSIGN_KEY:-$out/cosign.key}
export COSIGN_PASSWORD=${COSIGN_PASSWORD:-}
for image in "${images[@]}"; do
  case $image in
    secai-fleet) build_secai_fleet ;;
    pause) build_pause ;;
    *) echo "build.sh: unknown image $image (secai-fleet, pause)" >&2; exit 2 ;;
  esac
done
