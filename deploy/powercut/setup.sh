#!/usr/bin/env bash
# Installs what deploy/powercut/run.sh needs from outside the repository, idempotently (needs root):
#   qemu-system-x86_64  from bookworm-backports: Debian 12's own qemu-system-x86 (7.2) would remove a
#                       newer qemu-utils from backports (10.0.2 on the machines this was written on),
#                       and the backports build matches it; on Debian 13 or later the suite's own
#                       package is used.
#   debootstrap         builds the guest's root file system from Debian packages.
#   e2fsprogs           mkfs.ext4 -d builds the guest's disks from directories, without mounting.
#   python3             the harness's bookkeeping (deploy/powercut/*.py), standard library only.
#   zstd, cpio          unpack the guest's kernel modules into a small initramfs.
# Nothing else: the guest's packages come from the Debian mirror when the image is first built.
#
#   deploy/powercut/setup.sh --jetstream   # also what run.sh --target jetstream needs:
#     nats-server 2.10 from Debian 13 (trixie), unpacked to /usr/local/lib/powercut/nats-server for
#     the guest (Debian 12 has 2.9, which refuses jetstream.sync_interval; trixie's index is read
#     into a private apt directory, so the machine's own sources are untouched), and the nats-py
#     package from PyPI for the host's publishers.
set -euo pipefail
. "$(dirname "$0")/mirror.sh"
jetstream=0
[[ ${1:-} == --jetstream ]] && jetstream=1
NATS_DIR=/usr/local/lib/powercut

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have debootstrap || need+=(debootstrap)
have mkfs.ext4 || need+=(e2fsprogs)
have python3 || need+=(python3)
have zstd || need+=(zstd)
have cpio || need+=(cpio)
have curl || need+=(curl)
have qemu-system-x86_64 || qemu=1

install_jetstream() {
    if [[ ! -x $NATS_DIR/nats-server ]]; then
        local apt_dir
        apt_dir="$(mktemp -d)"
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/deb"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" \
            > "$apt_dir/sources.list"
        local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
        apt-get "${opts[@]}" update -q
        (cd "$apt_dir/deb" && apt-get "${opts[@]}" download nats-server/trixie)
        dpkg-deb -x "$apt_dir"/deb/nats-server_*.deb "$apt_dir/x"
        mkdir -p "$NATS_DIR"
        install -m 0755 "$apt_dir/x/usr/sbin/nats-server" "$NATS_DIR/nats-server"
        rm -rf "$apt_dir"
    fi
    "$NATS_DIR/nats-server" --version
    python3 -c 'import nats' 2>/dev/null || python3 -m pip install -q nats-py
}

if [[ ${#need[@]} -eq 0 && -z ${qemu:-} ]]; then
    [[ $jetstream -eq 1 ]] && install_jetstream
    echo "powercut setup: everything is installed"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "powercut setup: needs root to install: ${need[*]} ${qemu:+qemu-system-x86}" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q --no-install-recommends)

if [[ -n ${qemu:-} ]]; then
    . /etc/os-release
    if [[ ${VERSION_CODENAME:-} == bookworm ]]; then
        list=/etc/apt/sources.list.d/bookworm-backports.list
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deb $(debian_mirror) bookworm-backports main" > "$list"
        fi
        apt-get update -q
        # The backports build, so that it matches (and keeps) a qemu-utils from backports.
        apt-get install "${apt_opts[@]}" -t bookworm-backports qemu-system-x86
    else
        apt-get update -q
        apt-get install "${apt_opts[@]}" qemu-system-x86
    fi
elif [[ ${#need[@]} -gt 0 ]]; then
    apt-get update -q
fi
[[ ${#need[@]} -eq 0 ]] || apt-get install "${apt_opts[@]}" "${need[@]}"
have qemu-system-x86_64 || { echo "powercut setup: qemu-system-x86_64 still missing" >&2; exit 1; }
have debootstrap || { echo "powercut setup: debootstrap still missing" >&2; exit 1; }
[[ $jetstream -eq 1 ]] && install_jetstream
echo "powercut setup: installed ${need[*]} ${qemu:+qemu-system-x86}"
