#!/usr/bin/env bash
# The power-cut test: the daemon in a qemu VM, its archive on a virtual disk written through
# (cache=none), 48 sources saturating it from the host through forwarded loopback ports, and the VM
# killed (kill -9 qemu) at a random moment under load, N times. After each cut the VM boots again
# and the harness checks from outside that every acknowledged frame is in the archive exactly once:
# each source's WELCOME resume_after is at or above the last ACK it received, and `aggregator
# archive verify --strict` (in the guest, after the restarted daemon recovered and stopped) finds no
# duplicate, gap or damage. SIGKILL of the daemon alone leaves the page cache; this does not.
#
#   deploy/powercut/setup.sh                          # once, as root: qemu, debootstrap, ...
#   deploy/powercut/run.sh                            # 20 cuts, archive.sync = "interval"
#   deploy/powercut/run.sh --cuts 3
#   deploy/powercut/run.sh --sync never --expect-loss --cuts 2   # must find loss
#   deploy/powercut/run.sh --segment-mib 1 --retention-mib 8 --cuts 2   # retention deleting all along
#   deploy/powercut/run.sh --seed-archive tests/fixtures/archive-v3 --cuts 2   # cuts in an upgrade
#   deploy/powercut/run.sh --cuts 2 --backfill pass.lp --backfill-link kiruna.toml   # cuts in a backfill:
#                          the recording uploaded into the link's spool (its own disk) at the first
#                          boot, cut 1 as the upload is answered, cut 2 mid-import; then it must be
#                          in done/, its packets in the archive once (tests/power_cut.rs writes both)
#   deploy/powercut/run.sh --target jetstream [--jetstream-sync always]   # NATS JetStream instead
#                          (setup.sh --jetstream first; reports acknowledged messages lost per cut)
#
# Options (the rest go to powercut.py; --help lists them): --cuts N (20), --sync interval|batch|
# never, --expect-loss, --seed N, --load-min/--load-max SECS (3, 12), --accel tcg|kvm (tcg; or
# POWERCUT_ACCEL), --segment-mib N (16), --retention-mib N ([archive.retention] max_bytes; none by
# default; at least segment x 2 x shards), --work DIR (target/powercut/run-TARGET-SYNC, with
# -retention-N), --bin DIR (take aggregator and uplink-sim from DIR instead of building
# target/release; tests/power_cut.rs passes its own).
# Prints one line per cut and a summary; exit 0 only if nothing acknowledged was lost or duplicated
# (with --expect-loss: only if a loss was found), 1 if the check failed, 2 if it could not run. With
# retention, an acknowledged frame counts as lost unless it is in the archive or the archive's
# RETENTION files name it deleted; the summary adds the segments retention deleted.
# The guest image is built once and cached under target/powercut/ (deploy/powercut/image.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

fail() { echo "powercut: $*" >&2; exit 2; }
bin="" sync=interval work="" service=aggregator retention="" args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) [[ $# -ge 2 ]] || fail "--bin needs a directory"; bin="$2"; shift ;;
        --sync) [[ $# -ge 2 ]] || fail "--sync needs a value"; sync="$2"; args+=("$1" "$2"); shift ;;
        --sync=*) sync="${1#--sync=}"; args+=("$1") ;;
        --target) [[ $# -ge 2 ]] || fail "--target needs a value"; service="$2"; args+=("$1" "$2"); shift ;;
        --retention-mib) [[ $# -ge 2 ]] || fail "--retention-mib needs a value"; retention="-retention-$2"; args+=("$1" "$2"); shift ;;
        --work) [[ $# -ge 2 ]] || fail "--work needs a value"; work="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

[[ $(id -u) -eq 0 ]] || fail "needs root: debootstrap builds the guest image (run as root, or build the image once as root)"
for tool in qemu-system-x86_64 debootstrap mkfs.ext4 python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run deploy/powercut/setup.sh"
done
target="${CARGO_TARGET_DIR:-$root/target}"
if [[ $service == jetstream ]]; then
    nats_server="${NATS_SERVER:-/usr/local/lib/powercut/nats-server}"
    [[ -x $nats_server ]] || fail "$nats_server is missing: run deploy/powercut/setup.sh --jetstream"
    args+=(--nats-server "$nats_server")
    [[ -n $bin ]] || bin=none
fi
if [[ -z $bin ]]; then
    started=$(date +%s)
    cargo build --release --bin aggregator --bin uplink-sim -q || fail "cargo build --release failed"
    echo "powercut: release build took $(( $(date +%s) - started )) s" >&2
    bin="$target/release"
fi
started=$(date +%s)
image="$("$here/image.sh" "$target/powercut")" || fail "building the guest image failed"
echo "powercut: guest image $image ($(( $(date +%s) - started )) s)" >&2
[[ -n $work ]] || work="$target/powercut/run-$service-$sync$retention"
exec python3 "$here/powercut.py" --image "$image" --bin "$bin" --work "$work" "${args[@]}"
