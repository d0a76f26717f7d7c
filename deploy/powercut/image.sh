#!/usr/bin/env bash
# Builds (once) the power-cut guest from Debian packages and prints the directory holding it:
#   vmlinuz, initrd.img   the Debian kernel and a small initramfs (virtio and ext4 only), booted by
#                         qemu directly (-kernel, -initrd)
#   root.img              ext4 root file system from debootstrap, never written (qemu snapshot=on):
#                         init=/usr/local/sbin/powercut-init boots the harness's init
#                         (guest-init.sh); without init= it boots systemd.
# Cached under target/powercut/: the debootstrap tree in rootfs-KEY/, KEY a hash of the suite and
# package list (and this script's build steps); the image in image-KEY2/, KEY2 also covering
# guest-init.sh. A rerun with the same inputs builds nothing. Needs root (debootstrap, chroot).
#
#   deploy/powercut/image.sh [CACHE_DIR]     # CACHE_DIR defaults to target/powercut
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/mirror.sh"
cache="${1:-$here/../../target/powercut}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

SUITE="${POWERCUT_SUITE:-bookworm}"
MIRROR="${POWERCUT_MIRROR:-$(debian_mirror)}"
# systemd-sysv and udev make the same image bootable with systemd (issue 44); iproute2 is for the
# harness's init; the kernel's own dependencies bring initramfs-tools and kmod.
PACKAGES="linux-image-amd64,systemd-sysv,udev,iproute2,procps"
# The modules the guest needs before its root is mounted, and the ones its init loads.
INITRD_MODULES="virtio_pci virtio_blk ext4"

fail() { echo "powercut image: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || fail "debootstrap is missing: run deploy/powercut/setup.sh"
command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is missing: run deploy/powercut/setup.sh"

# One build at a time (tests/power_cut.rs runs two harnesses at once).
exec 9> "$cache/.image.lock"
flock 9
# The key of the tree: the suite, mirror, packages and initramfs modules, and the steps between
# "---- rootfs ----" and "---- image ----" (so editing comments or checks elsewhere rebuilds nothing).
steps="$(sed -n '/^# ---- rootfs ----$/,/^# ---- image ----$/p' "$0")"
key1="$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$INITRD_MODULES" "$steps" | sha256sum | cut -c1-16)"
# ---- rootfs ----
rootfs="$cache/rootfs-$key1"
if [[ ! -f $rootfs/.complete ]]; then
    rm -rf "$rootfs" "$rootfs.tmp"
    echo "powercut image: debootstrap $SUITE ($PACKAGES) into $rootfs (a few minutes, once)" >&2
    started=$(date +%s)
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs.tmp" "$MIRROR" \
        > "$cache/debootstrap-$key1.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap-$key1.log" >&2; fail "debootstrap failed (log: $cache/debootstrap-$key1.log)"; }
    # A small initramfs: only what mounting /dev/vda needs, instead of every storage driver.
    printf 'MODULES=list\nCOMPRESS=zstd\n' > "$rootfs.tmp/etc/initramfs-tools/conf.d/powercut"
    printf '%s\n' $INITRD_MODULES >> "$rootfs.tmp/etc/initramfs-tools/modules"
    chroot "$rootfs.tmp" update-initramfs -u -k all >> "$cache/debootstrap-$key1.log" 2>&1 \
        || fail "update-initramfs failed (log: $cache/debootstrap-$key1.log)"
    echo "powercut" > "$rootfs.tmp/etc/hostname"
    printf '/dev/vda / ext4 defaults 0 1\n' > "$rootfs.tmp/etc/fstab"
    chroot "$rootfs.tmp" sh -c 'echo root: | chpasswd -e' 2>/dev/null || true
    rm -rf "$rootfs.tmp"/var/cache/apt/archives/*.deb "$rootfs.tmp"/var/lib/apt/lists/*
    mv "$rootfs.tmp" "$rootfs"
    touch "$rootfs/.complete"
    echo "powercut image: debootstrap took $(( $(date +%s) - started )) s" >&2
fi
# ---- image ----
key2="$({ sed -n '/^# ---- image ----$/,$p' "$0"; cat "$here/guest-init.sh"; } | sha256sum | cut -c1-16)"
image="$cache/image-$key1-$key2"
if [[ ! -f $image/.complete ]]; then
    rm -rf "$image"
    mkdir -p "$image"
    install -m 0755 "$here/guest-init.sh" "$rootfs/usr/local/sbin/powercut-init"
    mkdir -p "$rootfs/data"
    kernel="$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)"
    cp "$kernel" "$image/vmlinuz"
    cp "$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}" "$image/initrd.img"
    size_mb=$(( $(du -sm --exclude=.complete "$rootfs" | cut -f1) + 256 ))
    mkfs.ext4 -q -F -L powercut-root -d "$rootfs" "$image/root.img" "${size_mb}M" >/dev/null \
        || fail "mkfs.ext4 -d of the root file system failed"
    echo "kernel=${kernel##*/vmlinuz-} suite=$SUITE packages=$PACKAGES" > "$image/manifest"
    touch "$image/.complete"
fi
echo "$image"
