#!/usr/bin/env bash
# The one-command demo: builds the two release binaries it runs, starts the aggregator on its
# example config, plays the default 48 + 2 scenario and then the brief's scenario against it with
# uplink-sim, sends SIGTERM, checks the accounting (sent = accepted = processed = archived =
# acknowledged, and the drain leaves nothing unacknowledged) and runs `aggregator archive verify`
# on the archive. The last line is the verdict, OK or FAILED with the accounting; the exit status
# is 0 only with OK.
#
# At the start it prints the web dashboard's URL: the daemon stays up while the simulator runs,
# so a person can watch the sources, the rate and the emergency frames there. Once the daemon has
# registered the first scenario's first source, it publishes a catalog (a TLE set) with
# `aggregator catalog push`: every source connected then receives it at once, every later one right
# after its WELCOME, and uplink-sim's summaries say how many hold it. The brief scenario is over in
# milliseconds: where it comes first, the catalog is published just before it. The timed scenarios
# last 3 s; DEMO_SIM_SECS=120 plays them for two minutes instead, long enough to watch.
#
# Everything it writes is kept in demo-run/ at the top of the clone, emptied at the start of each
# run: archive/ (the daemon's archive), aggregator.log (the daemon's whole log, with the
# processor's debug line for every batch), and the output of uplink-sim and of the verify. The
# terminal shows only the daemon's dashboard line, warnings and errors, and, picked out of the log,
# a few emergency batches processed while routine frames their source had sent before them were
# still waiting in the daemon.
#
# Beside the uplinks, during the first scenario, a CCSDS ground station (uplink-sim --station)
# sends 2 x 2000 space packets into a ground-segment link (docs/ground-segment.md), and a reader
# (uplink-sim --tm-reader) counts them in what the TM server serves (docs/tm-server.md): the
# verdict requires each packet stored once and served once.
#
# With DEMO_TLS=1 the whole demo runs over mutual TLS: a CA, a server and a client certificate are
# made with openssl into a temporary directory (removed at the end); the daemon gets [tls] and an
# [[auth.clients]] entry allowing the client certificate the demo's sources, and uplink-sim and
# aggregator catalog push connect with --tls-ca, --tls-cert and --tls-key. The monitor then serves
# HTTPS with the same certificate.
#
# Usage: deploy/demo.sh            (from anywhere inside a clone)
# Environment: DEMO_SCENARIOS (default "default brief"); DEMO_SIM_SECS (how long each scenario
# but brief generates frames, default the scenario's 3 s); DEMO_UPLINK_PORT, DEMO_REPLAY_PORT,
# DEMO_MONITOR_PORT, DEMO_STATION_PORT, DEMO_TM_PORT (default 7700, 7701, 7780, 7810, 7815); DEMO_TLS (1: over mutual TLS); DEMO_BIN_DIR (run the aggregator and uplink-sim
# found there instead of building them); CARGO (default cargo).
set -euo pipefail

here="$PWD"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scenarios="${DEMO_SCENARIOS:-default brief}"
uplink_port="${DEMO_UPLINK_PORT:-7700}"
replay_port="${DEMO_REPLAY_PORT:-7701}"
monitor_port="${DEMO_MONITOR_PORT:-7780}"
station_port="${DEMO_STATION_PORT:-7810}"
tm_port="${DEMO_TM_PORT:-7815}"
sim_secs="${DEMO_SIM_SECS:-}"
run="$root/demo-run"
archive="$run/archive"
daemon_log="$run/aggregator.log"
daemon_pid=""
filter_pid=""
failure=""
accounting=""
pki=""

# Stops what is still running, then prints the verdict of a failed run as the last line.
cleanup() {
    local status=$?
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        echo "demo: stopping the daemon (pid $daemon_pid)" >&2
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    # The log filter ends with the daemon's standard error; wait for its last lines.
    if [[ -n "$filter_pid" ]]; then wait "$filter_pid" 2>/dev/null || true; fi
    rm -f "$run/aggregator.stderr"
    if [[ -n "$pki" ]]; then rm -rf "$pki"; fi
    if [[ $status -ne 0 ]]; then
        echo "demo: FAILED: ${failure:-exit status $status}${accounting:+: $accounting}"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'failure="interrupted"; exit 130' INT
trap 'failure="terminated"; exit 143' TERM

fail() { failure="$*"; exit 1; }

for port in "$uplink_port" "$replay_port" "$monitor_port" "$station_port" "$tm_port"; do
    [[ $port =~ ^[0-9]+$ ]] || fail "$port is not a port number (DEMO_*_PORT)"
done
[[ -z $sim_secs || $sim_secs =~ ^[0-9]+$ ]] || fail "DEMO_SIM_SECS=$sim_secs is not a number of seconds"
rm -rf "$run"
mkdir -p "$run"

if [[ -n "${DEMO_BIN_DIR:-}" ]]; then
    bin="$(cd "$here" && cd "$DEMO_BIN_DIR" && pwd)" || fail "DEMO_BIN_DIR=$DEMO_BIN_DIR is not a directory"
    echo "demo: using the binaries in $bin"
else
    echo "demo: building aggregator and uplink-sim (release; the first build compiles every dependency)"
    "${CARGO:-cargo}" build --release --bin aggregator --bin uplink-sim
    bin="${CARGO_TARGET_DIR:-target}/release"
fi

# The example config, on the demo's ports and archive.
config="$run/aggregator.toml"
sed -E -e "s#^listen = \"127.0.0.1:7700\"\$#listen = \"127.0.0.1:$uplink_port\"#" \
    -e "s#^listen = \"127.0.0.1:7701\"\$#listen = \"127.0.0.1:$replay_port\"#" \
    -e "s#^listen = \"127.0.0.1:7780\"\$#listen = \"127.0.0.1:$monitor_port\"#" \
    -e "s#^dir = .*#dir = \"$archive\"#" config/aggregator.toml >"$config"
for port in "$uplink_port" "$replay_port" "$monitor_port"; do
    grep -qxF "listen = \"127.0.0.1:$port\"" "$config" || fail "could not set port $port in $config"
done
grep -qxF "dir = \"$archive\"" "$config" || fail "could not set the archive directory in $config"
# A ground station's link, and the TM server a mission-control system reads.
cat >>"$config" <<TOML

[[links]]
name = "gs-demo"
transport = "tcp-listen"
address = "127.0.0.1:$station_port"
framing = "ccsds"
apid_base = 10000

[[tm_servers]]
name = "mcs"
listen = "127.0.0.1:$tm_port"
from = "start"
TOML

# DEMO_TLS=1: a CA, the daemon's certificate (for 127.0.0.1) and a ground station's, made here and
# never kept; the ground station may speak for the demo's uplinks and replay feeds only.
client_tls=()
scheme=http
if [[ "${DEMO_TLS:-}" == 1 ]]; then
    pki="$(mktemp -d)"
    deploy/make-certs.sh "$pki" || fail "deploy/make-certs.sh could not make the certificates"
    cat >>"$config" <<TOML

[tls]
cert = "$pki/server.pem"
key = "$pki/server.key"
client_ca = "$pki/ca.pem"

[[auth.clients]]
identity = "demo-ground-station"
sources = ["live:0-47", "replay:1000-1001"]
TOML
    client_tls=(--tls-ca "$pki/ca.pem" --tls-cert "$pki/client.pem" --tls-key "$pki/client.key")
    scheme=https
    echo "demo: over mutual TLS, with certificates made in $pki"
fi

# The daemon's standard error goes whole to its log; the terminal gets where it listens, its
# dashboard line, its warnings and errors. RUST_LOG turns on the processor's per-batch debug line.
mkfifo "$run/aggregator.stderr"
tee "$daemon_log" <"$run/aggregator.stderr" \
    | grep --line-buffered -E ' (WARN|ERROR) |aggregator listening|: stats: ' >&2 &
filter_pid=$!
NO_COLOR=1 RUST_LOG="info,aggregator=debug" \
    "$bin/aggregator" --config "$config" 2>"$run/aggregator.stderr" &
daemon_pid=$!
echo "demo: started the aggregator (pid $daemon_pid); its whole log: $daemon_log"

# Wait (at most 10 s) for the daemon to listen; fail at once if it exits.
for _ in $(seq 200); do
    grep -q "aggregator listening" "$daemon_log" 2>/dev/null && break
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited during start-up (log: $daemon_log)"
    sleep 0.05
done
grep -q "aggregator listening" "$daemon_log" || fail "the daemon did not start listening within 10 s"
echo "demo: the dashboard, live while the simulator runs: $scheme://127.0.0.1:$monitor_port/"

# The catalog published during the first scenario: two-line element sets, as operators send them.
catalog_file="$run/catalog.tle"
cat >"$catalog_file" <<'TLE'
ISS (ZARYA)
1 25544U 98067A   26326.50000000  .00016717  00000-0  10270-3 0  9005
2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537
TLE

# Publishes the catalog; $1 says when.
publish() {
    echo "demo: aggregator catalog push $catalog_file ($1)"
    "$bin/aggregator" catalog push "$catalog_file" --addr "127.0.0.1:$monitor_port" \
        ${client_tls[@]+"${client_tls[@]}"} || fail "aggregator catalog push failed"
    published=yes
}

registered() { grep -c "source registered" "$daemon_log" || true; }

sent=0
acked=0
station_sent=0
station_served=0
station=(--station "127.0.0.1:$station_port" --tm-reader "127.0.0.1:$tm_port")
summaries=()
published=""
for scenario in $scenarios; do
    echo
    [[ -z $published && $scenario == brief ]] && publish "before the brief scenario, over in milliseconds"
    echo "demo: uplink-sim --scenario $scenario"
    sim_out="$run/uplink-sim-$scenario.txt"
    duration=()
    [[ -n $sim_secs && $scenario != brief ]] && duration=(--duration "$sim_secs")
    before="$(registered)"
    "$bin/uplink-sim" --uplink "127.0.0.1:$uplink_port" --replay "127.0.0.1:$replay_port" \
        --scenario "$scenario" ${duration[@]+"${duration[@]}"} ${client_tls[@]+"${client_tls[@]}"} \
        ${station[@]+"${station[@]}"} --require-all-acked >"$sim_out" &
    sim_pid=$!
    tail -f --pid "$sim_pid" "$sim_out" &
    if [[ -z $published ]]; then
        # Once the daemon has registered a source of this run (at most 10 s): the sources stream.
        for _ in $(seq 200); do
            (($(registered) > before)) && break
            kill -0 "$sim_pid" 2>/dev/null || break
            sleep 0.05
        done
        (($(registered) > before)) || fail "no source of uplink-sim --scenario $scenario registered"
        publish "while the sources stream"
    fi
    wait "$sim_pid" || fail "uplink-sim --scenario $scenario failed"
    total="$(grep '^sim total:' "$sim_out")" || fail "no summary from uplink-sim --scenario $scenario"
    summaries+=("$scenario: $total")
    summaries+=("$scenario: $(grep '^catalog:' "$sim_out" || echo 'catalog: no line')")
    sent=$((sent + $(sed -E 's/.* sent=([0-9]+) .*/\1/' <<<"$total")))
    if ((${#station[@]})); then
        played="$(grep '^station:' "$sim_out")" || fail "no station line from uplink-sim"
        served="$(grep '^tm-reader:' "$sim_out")" || fail "no tm-reader line from uplink-sim"
        summaries+=("$scenario: $played" "$scenario: $served")
        station_sent="$(sed -E 's/.* sent=([0-9]+) .*/\1/' <<<"$played")"
        station_served="$(sed -E 's/.* received=([0-9]+) .*/\1/' <<<"$served")"
        station=()
    fi
    acked=$((acked + $(sed -E 's/.* acked=([0-9]+) .*/\1/' <<<"$total")))
done

echo
echo "demo: sources finished; sending SIGTERM to the daemon (pid $daemon_pid)"
kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=""
wait "$filter_pid" || true
filter_pid=""

drain="$(grep -E 'drain (complete|incomplete)' "$daemon_log" | tail -n 1)" \
    || fail "the daemon logged no drain summary (log: $daemon_log)"
field() { sed -E "s/.* $1=([0-9]+).*/\1/" <<<"$2"; }
accepted="$(field accepted "$drain")"
processed="$(field processed "$drain")"
archived="$(field archived "$drain")"
unacknowledged="$(field unacknowledged "$drain")"
accounting="sent=$sent station_packets=$station_sent served=$station_served accepted=$accepted processed=$processed archived=$archived acknowledged=$acked unacknowledged=$unacknowledged daemon_exit=$daemon_status"

# An emergency batch overtook routine frames when a routine batch of the same source processed
# after it begins below its first sequence: those frames were sent before the emergency, on the
# same stream, so they were in the daemon, waiting, when the emergency was processed.
echo
awk -v logfile="$daemon_log" -v shown=3 '
    function value(key,    i) {
        for (i = 1; i <= NF; i++) if (index($i, key "=") == 1) return substr($i, length(key) + 2)
        return ""
    }
    function sequence(text) { gsub(/[^0-9]/, "", text); return text + 0 }
    /processor: processed source_id=/ {
        source = value("source_id")
        first = sequence(value("first_seq"))
        if (value("priority") == "\"emergency\"") {
            emergencies++
            if (!(source in waiting)) { waiting[source] = first; example[source] = $0 }
            ahead[source]++
            next
        }
        if ((source in waiting) && first < waiting[source]) {
            overtakes += ahead[source]
            if (++pairs <= shown) examples = examples "  " example[source] "\n  " $0 "\n"
        }
        delete waiting[source]; delete example[source]; delete ahead[source]
    }
    END {
        if (overtakes == 0) {
            printf "demo: none of the %d emergency batches overtook routine frames sent before it (log: %s)\n", emergencies, logfile
            exit
        }
        printf "demo: %d of %d emergency batches were processed while routine frames their source had sent before them were still waiting; the first %d, each followed by the routine batch it overtook (from %s):\n", overtakes, emergencies, (pairs < shown ? pairs : shown), logfile
        printf "%s", examples
    }' "$daemon_log"

echo
echo "demo: aggregator archive verify $archive"
verify_status=0
"$bin/aggregator" archive verify "$archive" >"$run/verify.txt" || verify_status=$?
grep -v -E '^(segment|source) ' "$run/verify.txt" || true
echo "(each segment's and each source's counts: $run/verify.txt)"
verified="$(grep '^verify total:' "$run/verify.txt" | sed -E 's/.* frames=([0-9]+) .*/\1/')" \
    || fail "aggregator archive verify printed no total (status $verify_status)"
accounting="$accounting verified=$verified verify_exit=$verify_status"

echo
echo "==================== summary ===================="
for line in "${summaries[@]}"; do echo "uplink-sim  $line"; done
echo "aggregator  ${drain#*INFO }"
echo "archive     $archive: $verified frames verified (exit status $verify_status)"
echo "================================================="

[[ $daemon_status -eq 0 ]] || fail "the daemon exited with status $daemon_status"
[[ $verify_status -eq 0 && $verified -eq $archived ]] || fail "the archive does not verify"
# Station packets are stored like frames but have no acknowledgement; the TM server served each.
[[ $((sent + station_sent)) -eq $accepted && $accepted -eq $processed && $processed -eq $archived \
    && $sent -eq $acked && $unacknowledged -eq 0 && $station_served -eq $station_sent ]] \
    || fail "accounting mismatch"
echo "demo: OK: every frame accounted for and in the archive: $accounting"
