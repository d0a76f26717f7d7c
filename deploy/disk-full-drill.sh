#!/usr/bin/env bash
# The disk-full drill: the archive on a small tmpfs fills under saturating load, as an operator
# would see it, and this checks that nothing acknowledged is lost. Needs root (mount).
#
#   deploy/disk-full-drill.sh            # space returns while the daemon runs: it recovers by itself
#   DRILL=sigterm deploy/disk-full-drill.sh   # SIGTERM during the outage, then space and a restart
#
# Either way the simulator must see every frame acknowledged, and `aggregator archive verify
# --strict` must find each frame exactly once. SIZE (64m), GROW_TO (2g), OUTAGE_S (10), DURATION_S
# (15) and RATE (frames/s per source, 20000: about 76 MB/s for the 50 sources) change the drill.
# GROW_TO must hold what the load writes once space returns: a disk that fills again is a second
# outage, which the daemon waits out as it did the first (unbounded, the daemon takes 64 B frames
# into a tmpfs at several million a second).
set -euo pipefail
cd "$(dirname "$0")/.."

DRILL="${DRILL:-recover}"
SIZE="${SIZE:-64m}"
GROW_TO="${GROW_TO:-2g}"
OUTAGE_S="${OUTAGE_S:-10}"
DURATION_S="${DURATION_S:-15}"
RATE="${RATE:-20000}"
UPLINK=17700 REPLAY=17701 MONITOR=17780

fail() { echo "drill: FAILED: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "drill: needs root to mount a tmpfs" >&2; exit 2; }

cargo build --release --bins -q
bin=target/release
work="$(mktemp -d)"
disk="$work/disk"
mkdir "$disk"
mount -t tmpfs -o "size=$SIZE" tmpfs "$disk"
daemon_pid="" sim_pid=""
cleanup() {
    [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null
    [[ -n $daemon_pid ]] && kill -9 "$daemon_pid" 2>/dev/null
    wait 2>/dev/null
    umount "$disk" 2>/dev/null
    rm -rf "$work"
}
# Where the logs are, while it runs.
echo "drill: logs in $work (daemon.log, sim.out)"
trap cleanup EXIT

cat >"$work/aggregator.toml" <<EOF
[uplink]
listen = "127.0.0.1:$UPLINK"
[replay]
listen = "127.0.0.1:$REPLAY"
[monitor]
listen = "127.0.0.1:$MONITOR"
[archive]
dir = "$disk/archive"
segment_bytes = 4194304
EOF

start_daemon() {
    "$bin/aggregator" --config "$work/aggregator.toml" >>"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    wait_for_log "aggregator listening"
}

# Waits (up to a minute) for a line in the daemon's log that was not there before.
log_lines=0
wait_for_log() {
    for _ in $(seq 600); do
        if tail -n "+$((log_lines + 1))" "$work/daemon.log" | grep -q "$1"; then
            log_lines=$(wc -l <"$work/daemon.log")
            return
        fi
        sleep 0.1
    done
    fail "no '$1' in the daemon's log"
}

health() {
    exec 3<>"/dev/tcp/127.0.0.1/$MONITOR"
    printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
    sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' <&3
    exec 3<&-
}

stop_daemon() {
    local started=$SECONDS status=0
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || status=$?
    daemon_pid=""
    echo "drill: daemon exited $status after SIGTERM in $((SECONDS - started)) s:"
    grep -E "drain (complete|incomplete)" "$work/daemon.log" | tail -n 1 | sed -E 's/\x1b\[[0-9;]*m//g'
    return "$status"
}

start_daemon
"$bin/uplink-sim" --uplink "127.0.0.1:$UPLINK" --replay "127.0.0.1:$REPLAY" --progress off \
    --scenario saturate --rate "$RATE" --duration "$DURATION_S" --give-up-after 120 --max-in-flight 8192 \
    --require-all-acked >"$work/sim.out" 2>&1 &
sim_pid=$!

wait_for_log "archive write failed"
echo "drill: the disk is full ($(df -h --output=avail "$disk" | tail -n 1 | tr -d ' ') free); /healthz: $(health)"
sleep "$OUTAGE_S"
echo "drill: after ${OUTAGE_S} s of outage, /healthz: $(health)"

case "$DRILL" in
recover)
    mount -o "remount,size=$GROW_TO" "$disk"
    wait_for_log "archive recovered"
    echo "drill: space returned; $(grep 'archive recovered' "$work/daemon.log" | sed -E 's/\x1b\[[0-9;]*m//g' | sed 's/.*archive recovered/archive recovered/'); /healthz: $(health)"
    ;;
sigterm)
    if stop_daemon; then fail "a drain during the outage exited 0"; fi
    mount -o "remount,size=$GROW_TO" "$disk"
    echo "drill: space returned; restarting the daemon (the simulator reconnects and resends)"
    start_daemon
    ;;
*) fail "DRILL is recover or sigterm, not $DRILL" ;;
esac

sim_status=0
wait "$sim_pid" || sim_status=$?
sim_pid=""
grep "sim total:" "$work/sim.out" || true
[[ $sim_status -eq 0 ]] || { cat "$work/sim.out" >&2; fail "uplink-sim exited $sim_status"; }
stop_daemon || fail "the last drain was not clean"
"$bin/aggregator" archive verify --strict "$disk/archive" | grep "verify total:" \
    || fail "archive verify --strict found damage, a gap or a duplicate"
echo "drill: OK: every frame acknowledged, and stored exactly once"
