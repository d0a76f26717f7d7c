#!/usr/bin/env bash
# A rolling restart under load, measured (docs/operations.md, "Upgrades and rolling restarts"):
# DAEMONS daemons (1, or a scale-out fleet of 2 or more, each with its own archive and its own
# `uplink-sim` of 48 uplinks and 2 replays), restarted one after the other while every source
# sends: SIGTERM (the daemon drains and exits), then the new binary on the same config and archive.
# The sources reconnect and resume from WELCOME. At the end, per daemon: every frame sent was
# acknowledged (`--require-all-acked`), `archive verify --strict` finds each once (no gap, no
# duplicate), and the longest time its sources saw no acknowledgement (`ack_gap_ms_max`).
#
#   deploy/rolling-restart.sh [OLD_BIN_DIR [NEW_BIN_DIR]]   # default: target/release for both
#   DAEMONS=2 deploy/rolling-restart.sh                     # a fleet of two
#
# Last line: `rolling-restart: OK ...` (exit 0) or `rolling-restart: FAILED ...` (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:-target/release}"
new="${2:-$old}"
daemons="${DAEMONS:-1}"
load_secs="${LOAD_SECS:-20}"
work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# Daemon i's config: the example's, with its own archive, on ports the system picks at the first
# start; the restarts keep them (the sources reconnect there).
configure() {
    local i=$1
    mkdir -p "$work/d$i"
    sed -e 's/:7700"/:0"/' -e 's/:7701"/:0"/' -e 's/:7780"/:0"/' \
        -e "s|^dir = \"archive\"|dir = \"$work/d$i/archive\"|" config/aggregator.toml \
        > "$work/d$i/aggregator.toml"
}

# The address daemon i's listener $2 (uplink, replay, monitor) is bound to, from its log.
address() {
    sed -n "s/.*aggregator listening.* $2=\([0-9.:]*\).*/\1/p" "$work/d$1/daemon.log" | head -1
}

# Pins daemon i's ports to those it listens on now.
pin() {
    local i=$1
    sed -i -e "0,/:0\"/s//:$(address "$i" uplink | cut -d: -f2)\"/" \
        -e "0,/:0\"/s//:$(address "$i" replay | cut -d: -f2)\"/" \
        -e "0,/:0\"/s//:$(address "$i" monitor | cut -d: -f2)\"/" "$work/d$i/aggregator.toml"
}

# Starts daemon i with the binaries in $2 and waits until it listens.
start() {
    local i=$1 bin=$2
    : > "$work/d$i/daemon.log"
    "$bin/aggregator" --config "$work/d$i/aggregator.toml" 2>>"$work/d$i/daemon.log" &
    eval "daemon_$i=$!"
    pids+=($!)
    for _ in $(seq 300); do
        grep -q "aggregator listening" "$work/d$i/daemon.log" && return 0
        sleep 0.1
    done
    echo "rolling-restart: FAILED daemon $i did not start" >&2
    cat "$work/d$i/daemon.log" >&2
    exit 1
}

stop() {
    local pid
    eval "pid=\$daemon_$1"
    kill -TERM "$pid"
    wait "$pid"
}

for i in $(seq "$daemons"); do configure "$i"; start "$i" "$old"; pin "$i"; done
for i in $(seq "$daemons"); do
    "$old/uplink-sim" --scenario default --duration "$load_secs" --uplink "$(address "$i" uplink)" \
        --replay "$(address "$i" replay)" --require-all-acked --give-up-after 60 \
        > "$work/d$i/sim.out" 2>&1 &
    eval "sim_$i=$!"
    pids+=($!)
done

# One daemon at a time, a quarter of the load's time apart.
restarts=""
for i in $(seq "$daemons"); do
    sleep "$(awk "BEGIN { print $load_secs / ($daemons + 2) }")"
    began=$(date +%s%N)
    stop "$i"
    start "$i" "$new"
    restarts+=",$(( ($(date +%s%N) - began) / 1000000 ))"
done

status=0
summary=""
for i in $(seq "$daemons"); do
    eval "sim=\$sim_$i"
    wait "$sim" || { echo "rolling-restart: daemon $i: uplink-sim failed" >&2; status=1; }
    stop "$i"
    total="$(grep '^sim total:' "$work/d$i/sim.out" || true)"
    verify="$("$new/aggregator" archive verify --strict "$work/d$i/archive" | grep '^verify total:')" \
        || { echo "rolling-restart: daemon $i: verify --strict failed" >&2; status=1; }
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
    sent="$(field sent "$total")" acked="$(field acked "$total")" gap="$(field ack_gap_ms_max "$total")"
    archived="$(field frames "$verify")" duplicated="$(field duplicates "$verify")"
    lost=$(( ${sent:-0} - ${archived:-0} ))
    [[ -n "$sent" && "$acked" == "$sent" && $lost == 0 && "$duplicated" == 0 ]] || status=1
    summary+=" daemon$i: sent=$sent acked=$acked archived=$archived lost=$lost duplicated=$duplicated ack_gap_ms_max=$gap;"
    echo "daemon $i: $total"
    echo "daemon $i: $verify"
done
verdict=$([[ $status == 0 ]] && echo OK || echo FAILED)
echo "rolling-restart: $verdict daemons=$daemons restart_ms=${restarts#,}${summary%;}"
exit "$status"
