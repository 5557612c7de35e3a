#!/usr/bin/env bash
# Installs the SecAI node hardening into the root it runs in: an image build (Containerfile), a
# chroot (test/node-image), or a Debian or Fedora host being turned into a SecAI node. It copies the
# rootfs/ overlay (sysctl, base firewall, units, scripts), enables the units, masks the services
# that would load or flush another ruleset over inet secai, and optionally installs a k3s air-gap
# bundle. It changes no running kernel state, so it is safe in a chroot: sysctl and the firewall
# take effect at the next boot.
#
# Usage: install-node-hardening.sh [--k3s-bundle DIR]
#   DIR holds the k3s binary (k3s) and the image tarball (k3s-airgap-images-<arch>.tar[.zst|.gz]).
set -euo pipefail
src=$(dirname "$(readlink -f "$0")")
bundle=

while [ $# -gt 0 ]; do
  case "$1" in
    --k3s-bundle) bundle=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "install-node-hardening.sh: must run as root" >&2; exit 1; }

# /usr is the image's; /etc holds node configuration, so existing files there are kept.
cp -a --no-preserve=ownership "$src/rootfs/usr/." /usr/
cp -an --no-preserve=ownership "$src/rootfs/etc/." /etc/
chmod 0750 /etc/secai
chmod 0640 /etc/secai/node.env
install -D -m 0644 "$src/README.md" /usr/share/doc/secai-node/README.md

os_family=$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")
if [[ " $os_family " == *" debian "* || " $os_family " == *" ubuntu "* ]]; then
  install -D -m 0644 "$src/debian/50-userns-clone.conf" /usr/lib/systemd/system/secai-agent.service.d/50-userns-clone.conf
fi

if [ -n "$bundle" ]; then
  [ -x "$bundle/k3s" ] || { echo "install-node-hardening.sh: $bundle/k3s is missing or not executable" >&2; exit 1; }
  install -m 0755 "$bundle/k3s" /usr/bin/k3s
  shopt -s nullglob
  images=("$bundle"/k3s-airgap-images-*.tar "$bundle"/k3s-airgap-images-*.tar.zst "$bundle"/k3s-airgap-images-*.tar.gz)
  shopt -u nullglob
  [ "${#images[@]}" -gt 0 ] || { echo "install-node-hardening.sh: no k3s-airgap-images-*.tar[.zst|.gz] in $bundle" >&2; exit 1; }
  install -d -m 0755 /usr/lib/secai/k3s-images
  : >/usr/lib/tmpfiles.d/secai-k3s-images.conf
  # The image lives in /usr (immutable, part of the signed image); k3s imports from /var.
  for image in "${images[@]}"; do
    install -m 0644 "$image" "/usr/lib/secai/k3s-images/${image##*/}"
    printf 'L+ /var/lib/rancher/k3s/agent/images/%s - - - - /usr/lib/secai/k3s-images/%s\n' "${image##*/}" "${image##*/}" \
      >>/usr/lib/tmpfiles.d/secai-k3s-images.conf
  done
fi

systemd-sysusers /usr/lib/sysusers.d/secai.conf
systemctl enable secai-base-firewall.service secai-firstboot.service secai-agent.service k3s-agent.service
# Debian's nftables.service starts with `flush ruleset`; firewalld and netfilter-persistent load
# their own. Any of them would remove or undercut the inet secai table.
systemctl mask nftables.service firewalld.service netfilter-persistent.service
echo "install-node-hardening.sh: SecAI node hardening installed; it takes effect at the next boot" >&2
