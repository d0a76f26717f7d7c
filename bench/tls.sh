#!/usr/bin/env bash
# What TLS costs the durable daemon (segment archive, fsync every 20 ms, as shipped): uplink-sim's
# saturate scenario (48 uplinks + 2 replay feeds at max rate) over plain TCP and over mutual TLS
# with per-source authorisation, at 64 B and 1024 B payloads, in the same run; then a fleet of
# sources connecting at once (each sends one frame) over plain TCP and over mutual TLS: the time
# until every source was welcomed and had its frame acknowledged. One line per run:
# `tls-bench: MODE PAYLOAD: sim total: ...` (acked_per_s, elapsed_ms).
#
# The daemon and uplink-sim run on the same machine and share its cores: with TLS both ends encrypt.
#
# Usage: bench/tls.sh [BIN_DIR]      (default target/release; build it first)
# Environment: BENCH_SECS (default 5), BENCH_FLEET (default 10000).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/target/release}"
secs="${BENCH_SECS:-5}"
fleet="${BENCH_FLEET:-10000}"
work="$(mktemp -d)"
daemon_pid=""
cleanup() {
    if [[ -n "$daemon_pid" ]]; then kill -TERM "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
"$root/deploy/make-certs.sh" "$work"
tls_flags=(--tls-ca "$work/ca.pem" --tls-cert "$work/client.pem" --tls-key "$work/client.key")

# Starts the daemon (MODE plain or tls) on free loopback ports; sets uplink and replay.
start() {
    local mode=$1 name=$2
    local config="$work/$name.toml"
    cat >"$config" <<TOML
[uplink]
listen = "127.0.0.1:0"
max_connections = $((fleet + 100))
[replay]
listen = "127.0.0.1:0"
[monitor]
enabled = false
[archive]
dir = "$work/archive-$name"
TOML
    if [[ $mode == tls ]]; then
        cat >>"$config" <<TOML
[tls]
cert = "$work/server.pem"
key = "$work/server.key"
client_ca = "$work/ca.pem"
[[auth.clients]]
identity = "demo-ground-station"
sources = ["live:0-$((fleet - 1))", "replay:1000-1001"]
TOML
    fi
    NO_COLOR=1 "$bin/aggregator" --config "$config" 2>"$work/$name.log" &
    daemon_pid=$!
    for _ in $(seq 200); do
        grep -q "aggregator listening" "$work/$name.log" && break
        sleep 0.05
    done
    local line
    line="$(grep "aggregator listening" "$work/$name.log")" || { cat "$work/$name.log" >&2; exit 1; }
    uplink="$(sed -E 's/.* uplink=([0-9.:]+).*/\1/' <<<"$line")"
    replay="$(sed -E 's/.* replay=([0-9.:]+).*/\1/' <<<"$line")"
}

stop() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || { echo "tls-bench: the daemon's drain failed" >&2; exit 1; }
    daemon_pid=""
}

# MODE LABEL SIM-ARGS...: one daemon, one uplink-sim run, its summary line.
run() {
    local mode=$1 label=$2
    shift 2
    local flags=()
    [[ $mode == tls ]] && flags=("${tls_flags[@]}")
    start "$mode" "$mode-$label"
    local total
    total="$("$bin/uplink-sim" --uplink "$uplink" --replay "$replay" --progress off \
        --require-all-acked "$@" ${flags[@]+"${flags[@]}"} | grep '^sim total:')"
    stop
    echo "tls-bench: $mode $label: $total"
}

for payload in 64 1024; do
    for mode in plain tls; do
        run "$mode" "${payload}B" --scenario saturate --payload "$payload" --duration "$secs"
    done
done
for mode in plain tls; do
    # The whole fleet's handshakes queue at once: give each attempt time to reach its turn.
    run "$mode" "fleet-$fleet" --uplinks "$fleet" --replays 0 --frames 1 --rate max \
        --connect-timeout-ms 30000
done
