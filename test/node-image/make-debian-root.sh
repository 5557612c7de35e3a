#!/usr/bin/env bash
# Builds a minimal Debian root filesystem in TARGET (an empty or missing directory) for the node
# image tests, from the machine's own Debian mirror, cached outside the repository:
#   ${XDG_CACHE_HOME:-~/.cache}/secai-fleet/debootstrap/
#     debs-<suite>-<key>.tgz   the downloaded packages (debootstrap --make-tarball)
#     root-<suite>-<key>.tar   the finished root, unpacked again on every later run (seconds)
# The key hashes the suite, variant, package list, architecture, mirror and debootstrap version.
# debootstrap runs in a private mount namespace, so the /proc and /sys it mounts in the target go
# away with it even when it fails. Prints the path used and the time taken on stderr.
#
# Usage: make-debian-root.sh TARGET
#   SECAI_DEBIAN_MIRROR  overrides the mirror read from /etc/apt/sources.list*
set -euo pipefail
target=${1:?usage: make-debian-root.sh TARGET}
readonly SUITE=bookworm VARIANT=minbase
# systemd for systemctl/systemd-analyze/systemd-sysusers in the chroot, nftables for nft -c there.
readonly INCLUDE=systemd,nftables
cache=${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/debootstrap
started=$(date +%s%N)

elapsed() {
  local tenths=$((($(date +%s%N) - started) / 100000000))
  printf '%d.%d' $((tenths / 10)) $((tenths % 10))
}

# The first mirror that serves $SUITE: deb822 .sources files, then one-line sources.list entries.
debian_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -r "$file" ] || continue
    awk -v suite="$SUITE" '
      /^$/ { if (uri != "" && has) { print uri; exit } uri = ""; has = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
      END { if (uri != "" && has) print uri }' "$file"
  done | head -n1 | grep . && return 0
  awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) { print (substr($2, 1, 1) == "[" ? $3 : $2); exit } }' \
    /etc/apt/sources.list 2>/dev/null | grep . && return 0
  return 1
}

mirror=${SECAI_DEBIAN_MIRROR:-$(debian_mirror || true)}
[ -n "$mirror" ] || { echo "make-debian-root.sh: no Debian $SUITE mirror in /etc/apt/sources.list*; set SECAI_DEBIAN_MIRROR" >&2; exit 1; }
arch=$(dpkg --print-architecture)
version=$(dpkg-query -W -f '${Version}' debootstrap)
key=$(printf '%s\n' "$SUITE" "$VARIANT" "$INCLUDE" "$arch" "$mirror" "$version" | sha256sum | cut -c1-16)
debs=$cache/debs-$SUITE-$key.tgz
root_tar=$cache/root-$SUITE-$key.tar
mkdir -p "$cache" "$target"

if [ ! -s "$root_tar" ]; then
  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  if [ ! -s "$debs" ]; then
    unshare --mount --propagation private \
      debootstrap --variant="$VARIANT" --include="$INCLUDE" --arch="$arch" --make-tarball="$work/debs.tgz" \
      "$SUITE" "$work/download" "$mirror" >"$work/download.log" 2>&1 ||
      { tail -n 20 "$work/download.log" >&2; exit 1; }
    mv "$work/debs.tgz" "$debs"
    echo "make-debian-root.sh: downloaded packages in $(elapsed) s" >&2
  fi
  unshare --mount --propagation private \
    debootstrap --variant="$VARIANT" --include="$INCLUDE" --arch="$arch" --unpack-tarball="$debs" \
    "$SUITE" "$work/root" "$mirror" >"$work/install.log" 2>&1 ||
    { tail -n 20 "$work/install.log" >&2; exit 1; }
  tar --numeric-owner -C "$work/root" -cf "$work/root.tar" .
  mv "$work/root.tar" "$root_tar"
  echo "make-debian-root.sh: built $SUITE root in $(elapsed) s" >&2
fi

tar --numeric-owner -C "$target" -xpf "$root_tar"
echo "make-debian-root.sh: $target from $root_tar in $(elapsed) s" >&2
