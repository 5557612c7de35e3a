#!/usr/bin/env bash
# Builds the lab's bootable Debian 12 node disk (raw, GPT, UEFI) from node-image/, without loop
# devices, device-mapper or mounts: mmdebstrap makes the root from Debian's apt, the node hardening
# (install-node-hardening.sh) and the lab overlay (node-image/lab-vm/) go in through a chroot, and
# the filesystems are made from directories (`mkfs.ext4 -d`, `mkfs.vfat` + mtools), then laid into
# a partition table written by sfdisk on the image file.
#
#   ESP (FAT)      Debian's signed shim as EFI/BOOT/BOOTX64.EFI, Debian's signed GRUB next to it,
#                  grub.cfg (EFI/debian, where the signed GRUB's prefix points), the signed kernel
#                  and its initrd; the kernel arguments are node-image's kargs.d plus the console
#   secai-root     ext4, the node root
#   secai-vault    empty: LUKS2-formatted and sealed to the TPM inside the VM on first boot
#                  (secai-lab-vault-init), opened by crypttab's tpm2-device=auto on every boot
#
# Cached by input hash in ${XDG_CACHE_HOME:-~/.cache}/secai-fleet/node-vm/:
#   base-<key>.tar   the mmdebstrap root (key: suite, packages, mirrors, mmdebstrap version)
#   disk-<key>.raw   the finished disk (key: the base key, this script, node-image/ and lab-vm/)
# Prints the disk's path on stdout; timings on stderr. The disk is read-only input: the caller
# boots a copy (or a qcow2 overlay), never the cached file.
#
# Usage: build-image.sh [--print-key]
#   SECAI_DEBIAN_MIRROR  overrides http://deb.debian.org/debian (security: ...-security next to it)
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
readonly SUITE=bookworm
# The boot chain, the node's tools, and what the lab's test units read with.
readonly PACKAGES=(
  linux-image-amd64 initramfs-tools shim-signed grub-efi-amd64-signed
  systemd systemd-sysv udev dbus kmod e2fsprogs util-linux iproute2 procps
  nftables cryptsetup cryptsetup-bin dmsetup tpm2-tools libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-device0
  mokutil bubblewrap
)
readonly ESP_MIB=96 VAULT_MIB=128
cache=${XDG_CACHE_HOME:-$HOME/.cache}/secai-fleet/node-vm
mirror=${SECAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
started=$(date +%s%N)

say() { printf 'build-image.sh: %s (%s s)\n' "$*" "$((($(date +%s%N) - started) / 1000000000))" >&2; }
die() { echo "build-image.sh: $*" >&2; exit 1; }

for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk python3 sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages: mmdebstrap e2fsprogs dosfstools mtools fdisk python3; see hack/apt-packages.txt)"
done
[ "$(id -u)" = 0 ] || die "must run as root (the root tree keeps root-owned files and device nodes)"

# The agent's vault lock, bundled with its imports, and the project's Node 24 to run it (the npm
# package `node` in node_modules): the only agent code the lab disk carries.
node_bin=$repo/node_modules/node/bin/node
esbuild=$repo/node_modules/.bin/esbuild
[ -x "$node_bin" ] || die "node_modules is missing (npm install): the disk carries the project's Node 24 and an esbuild bundle"
[ -x "$esbuild" ] || die "node_modules/.bin/esbuild is missing (npm install)"
bundle_dir=$(mktemp -d)
trap 'rm -rf "$bundle_dir"' EXIT
"$esbuild" "$repo/hack/node-vm/agent-vault-lock.ts" --bundle --platform=node --format=esm --target=node24 \
  --outfile="$bundle_dir/agent-vault-lock.mjs" --log-level=warning

base_key=$(printf '%s\n' "$SUITE" "${PACKAGES[*]}" "$mirror" "$(mmdebstrap --version)" | sha256sum | cut -c1-16)
# Every file that goes into the disk, by content and path.
inputs_key=$(
  {
    echo "$base_key" "$ESP_MIB" "$VAULT_MIB" "$("$node_bin" --version)"
    sha256sum "$bundle_dir/agent-vault-lock.mjs" | cut -d' ' -f1
    cd "$repo" && find hack/node-vm/build-image.sh node-image -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)
disk=$cache/disk-$inputs_key.raw
if [ "${1:-}" = --print-key ]; then echo "$inputs_key"; exit 0; fi
if [ -s "$disk" ]; then
  say "cached $disk"
  echo "$disk"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work" "$bundle_dir"' EXIT

base=$cache/base-$base_key.tar
if [ ! -s "$base" ]; then
  security=${mirror%/debian}/debian-security
  # A private mount namespace: the /proc, /sys and /dev that mmdebstrap mounts in the tree go away with it.
  # shellcheck disable=SC2016 # "$1" in the hook is the tree, expanded by mmdebstrap
  unshare --mount --propagation private \
    mmdebstrap --mode=root --variant=minbase --aptopt='APT::Install-Recommends "false"' \
      --include="$(IFS=,; echo "${PACKAGES[*]}")" \
      --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; touch "$1"/etc/machine-id' \
      "$SUITE" "$work/base.tar" \
      "deb $mirror $SUITE main" "deb $mirror $SUITE-updates main" "deb $security $SUITE-security main" \
      >"$work/mmdebstrap.log" 2>&1 || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
  mv "$work/base.tar" "$base"
  say "built the Debian $SUITE base $base"
fi

root=$work/root
mkdir "$root"
tar --numeric-owner -C "$root" -xpf "$base"

in_root() {
  unshare --mount --propagation private --fork --pid --mount-proc="$root/proc" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_COLORS=0 chroot "$root" "$@"
}

# The node hardening, as the Containerfile and a Debian host install it.
cp -a "$repo/node-image" "$root/tmp/secai-node-image"
in_root /tmp/secai-node-image/install-node-hardening.sh >>"$work/chroot.log" 2>&1 ||
  { tail -n 20 "$work/chroot.log" >&2; die "install-node-hardening.sh failed in the tree"; }
rm -rf "$root/tmp/secai-node-image"
# The lab's additions: first-boot vault creation, crypttab, the test report, networkd for the lab link.
cp -a --no-preserve=ownership "$repo/node-image/lab-vm/rootfs/." "$root/"
in_root systemctl enable secai-lab-vault-init.service secai-lab-report.service secai-lab-watchdog.service systemd-networkd.service >>"$work/chroot.log" 2>&1 ||
  { tail -n 20 "$work/chroot.log" >&2; die "systemctl enable failed in the tree"; }
install -D -m 0755 "$node_bin" "$root/usr/lib/secai/lab/node"
install -D -m 0644 "$bundle_dir/agent-vault-lock.mjs" "$root/usr/lib/secai/lab/agent-vault-lock.mjs"
echo secai-lab-node >"$root/etc/hostname"
# No password logs in anywhere: the lab node has no console login.
in_root passwd --lock root >/dev/null

root_uuid=$(printf '%s' "$inputs_key-root" | sha256sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
esp_id=$(printf '%s' "$inputs_key" | cut -c1-8 | tr a-f A-F)
cat >"$root/etc/fstab" <<EOF
UUID=$root_uuid / ext4 errors=remount-ro 0 1
# The vault, once crypttab has opened it (TPM2-sealed); absent when it could not be opened.
/dev/mapper/secai-vault /var/lib/secai/vault ext4 nofail,nodev,nosuid,noexec,x-systemd.device-timeout=5min 0 2
EOF

# Kernel arguments: node-image's kargs.d (TOML), then the lab's serial console.
kargs=$(python3 -c 'import sys, tomllib
args = []
for path in sorted(sys.argv[1:]):
    with open(path, "rb") as f:
        args += tomllib.load(f).get("kargs", [])
print(" ".join(args))' "$root"/usr/lib/bootc/kargs.d/*.toml)
[ -n "$kargs" ] || die "no kernel arguments in usr/lib/bootc/kargs.d"

shopt -s nullglob
kernels=("$root"/boot/vmlinuz-*)
shopt -u nullglob
[ "${#kernels[@]}" = 1 ] || die "expected one kernel in the base, found ${#kernels[@]}"
kver=${kernels[0]##*/vmlinuz-}
[ -s "$root/boot/initrd.img-$kver" ] || die "no initrd for $kver"

# The ESP, made from files.
esp=$work/esp.img
mkfs.vfat -C -F 32 -i "$esp_id" -n SECAIESP "$esp" $((ESP_MIB * 1024)) >/dev/null
cat >"$work/grub.cfg" <<EOF
set timeout=0
search --no-floppy --fs-uuid --set=root ${esp_id:0:4}-${esp_id:4:4}
linux /secai/vmlinuz root=UUID=$root_uuid ro console=ttyS0,115200 $kargs
initrd /secai/initrd.img
boot
EOF
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian ::/secai
mcopy -i "$esp" "$root/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$root/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
mcopy -i "$esp" "$work/grub.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$esp" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg
mcopy -i "$esp" "${kernels[0]}" ::/secai/vmlinuz
mcopy -i "$esp" "$root/boot/initrd.img-$kver" ::/secai/initrd.img

# The root filesystem, made from the tree (owners, modes, xattrs and hard links kept).
used_mib=$(du -sm "$root" | cut -f1)
root_mib=$((used_mib * 13 / 10 + 256))
rootimg=$work/root.img
mkfs.ext4 -q -F -L secai-root -U "$root_uuid" -d "$root" "$rootimg" "${root_mib}M" >/dev/null

# The disk: GPT by sfdisk on the file, each filesystem written at its partition's offset.
esp_start=2048
root_start=$((esp_start + ESP_MIB * 2048))
vault_start=$((root_start + root_mib * 2048))
total_sectors=$((vault_start + VAULT_MIB * 2048 + 2048))
out=$work/disk.raw
truncate -s $((total_sectors * 512)) "$out"
sfdisk --quiet "$out" <<EOF
label: gpt
unit: sectors
start=$esp_start, size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=$root_start, size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="secai-root"
start=$vault_start, size=$((VAULT_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="secai-vault"
EOF
dd if="$esp" of="$out" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
dd if="$rootimg" of="$out" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
mv "$out" "$disk"
say "built $disk (kernel $kver, root ${root_mib} MiB)"
echo "$disk"
