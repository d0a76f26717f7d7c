#!/usr/bin/env bash
# The one-command demo: builds the release binaries, starts the aggregator on its example config
# (dashboard line every 50 ms, per-batch processing log), plays the brief's scenario and then the
# default 48 + 2 scenario against it with uplink-sim, sends SIGTERM, and checks the accounting:
# sent = accepted = processed = archived = acknowledged. Exits 0 only then; on any failure it
# stops the daemon and exits non-zero.
#
# Usage: deploy/demo.sh            (from anywhere inside a clone)
# Environment: DEMO_SCENARIOS (default "brief default"), CARGO (default cargo).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scenarios="${DEMO_SCENARIOS:-brief default}"
work="$(mktemp -d "${TMPDIR:-/tmp}/aggregator-demo.XXXXXX")"
daemon_pid=""

cleanup() {
    local status=$?
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        echo "demo: stopping the daemon (pid $daemon_pid)" >&2
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    if [[ $status -ne 0 ]]; then echo "demo: FAILED (status $status)" >&2; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "demo: $*" >&2; exit 1; }

echo "demo: building the release binaries"
"${CARGO:-cargo}" build --release --bins

# The example config, with the dashboard line printed every 50 ms and a fresh archive directory.
config="$work/aggregator.toml"
sed -E -e 's/^stats_interval_ms = .*/stats_interval_ms = 50/' \
    -e "s#^dir = .*#dir = \"$work/archive\"#" config/aggregator.toml >"$config"
grep -q '^stats_interval_ms = 50$' "$config" || fail "could not set stats_interval_ms in $config"
grep -q "^dir = \"$work/archive\"$" "$config" || fail "could not set the archive directory in $config"

daemon_log="$work/aggregator.log"
echo "demo: starting target/release/aggregator (log: stderr, tee'd below)"
RUST_LOG="info,aggregator::processor=debug" \
    target/release/aggregator --config "$config" 2> >(tee "$daemon_log" >&2) &
daemon_pid=$!

# Wait (at most 10 s) for the daemon to listen; fail at once if it exits.
for _ in $(seq 200); do
    grep -q "aggregator listening" "$daemon_log" 2>/dev/null && break
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited during start-up"
    sleep 0.05
done
grep -q "aggregator listening" "$daemon_log" || fail "the daemon did not start listening within 10 s"

sent=0
acked=0
summaries=()
for scenario in $scenarios; do
    echo
    echo "demo: uplink-sim --scenario $scenario"
    sim_out="$work/sim-$scenario.txt"
    target/release/uplink-sim --scenario "$scenario" --require-all-acked | tee "$sim_out" \
        || fail "uplink-sim --scenario $scenario failed"
    total="$(grep '^sim total:' "$sim_out")" || fail "no summary from uplink-sim --scenario $scenario"
    summaries+=("$scenario: $total")
    s="$(sed -E 's/.* sent=([0-9]+) .*/\1/' <<<"$total")"
    a="$(sed -E 's/.* acked=([0-9]+) .*/\1/' <<<"$total")"
    sent=$((sent + s))
    acked=$((acked + a))
done

echo
echo "demo: sources finished; sending SIGTERM to the daemon (pid $daemon_pid)"
kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=""
# The tee behind the process substitution may still be flushing the last lines.
for _ in $(seq 100); do grep -q "drain \(complete\|incomplete\)" "$daemon_log" && break; sleep 0.05; done

# The daemon's text log colours its fields; compare on the plain text.
drain="$(sed -E 's/\x1b\[[0-9;]*m//g' "$daemon_log" | grep -E 'drain (complete|incomplete)' | tail -n 1)" \
    || fail "the daemon logged no drain summary"
field() { sed -E "s/.* $1=([0-9]+).*/\1/" <<<"$drain"; }
accepted="$(field accepted)"
processed="$(field processed)"
archived="$(field archived)"
unacknowledged="$(field unacknowledged)"

echo
echo "==================== summary ===================="
for line in "${summaries[@]}"; do echo "uplink-sim  $line"; done
echo "aggregator  ${drain#*INFO }"
echo "accounting  sent=$sent accepted=$accepted processed=$processed archived=$archived acknowledged=$acked unacknowledged=$unacknowledged daemon_exit=$daemon_status"
echo "================================================="

[[ $daemon_status -eq 0 ]] || fail "the daemon exited with status $daemon_status"
if [[ $sent -eq $accepted && $accepted -eq $processed && $processed -eq $archived \
    && $archived -eq $acked && $unacknowledged -eq 0 ]]; then
    echo "demo: OK: every frame accounted for (sent = accepted = processed = archived = acknowledged = $sent)"
else
    fail "accounting mismatch"
fi
