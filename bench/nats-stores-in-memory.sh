#!/usr/bin/env bash
# nats-server with its JetStream store on /dev/shm instead of where the bench puts it (under
# TMPDIR, the daemon's disk): three nodes on one machine write three copies of the stream to that
# disk, where each node of a real cluster writes one to its own. For the replication run:
#   NATS_SERVER=bench/nats-stores-in-memory.sh target/release/aggregator-bench run replication ...
# The real binary: NATS_SERVER_BINARY, else target/nats-venv's (tests/nats/venv.sh). A store is
# deleted by the next start once the bench that made it (the pid in its name) has ended.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${NATS_SERVER_BINARY:-$here/../target/nats-venv/bin/nats-server}"
# (A bench in another pid namespace that shares /dev/shm would look ended: run one at a time.)
for stale in /dev/shm/aggregator-bench-nats-*; do
    pid="${stale#/dev/shm/aggregator-bench-nats-}"
    pid="${pid%%-*}"
    if [[ -d $stale && $pid =~ ^[0-9]+$ && ! -e /proc/$pid ]]; then
        rm -rf "$stale" || true
    fi
done
args=()
while [[ $# -gt 0 ]]; do
    if [[ $1 == -sd && $# -ge 2 ]]; then
        # The bench's store: TMPDIR/aggregator-bench-nats-PID-N/NODE.
        store="/dev/shm/$(basename "$(dirname "$2")")-$(basename "$2")"
        mkdir -p "$store"
        args+=(-sd "$store")
        shift 2
    else
        args+=("$1")
        shift
    fi
done
exec "$binary" "${args[@]}"
