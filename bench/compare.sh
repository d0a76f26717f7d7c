#!/usr/bin/env bash
# Two builds of the daemon in turns: `bench/compare.sh BEFORE AFTER [ROUNDS]`, each an `aggregator`
# binary; runs the `round` scenario against each, ROUNDS times (4 by default), the order of the two
# alternating from round to round (so that neither always runs on a warmer machine), and prints the
# daemon's rows of every run (M frames/s, server CPU, ...) and its ratio to the floor measured in
# the same run, then the medians and means of each build's ratios and the after/before quotients.
# Build the bench first (`cargo build --release -p aggregator-bench`). A run that fails (a port
# taken meanwhile, say) is named and left out.
set -euo pipefail
before=$1 after=$2 rounds=${3:-4}
bench="$(dirname "$0")/../target/release/aggregator-bench"
out=$(mktemp -d)
for round in $(seq "$rounds"); do
    order="before after"
    (( round % 2 == 0 )) && order="after before"
    for build in $order; do
        binary=${!build}
        if ! "$bench" run round --daemon "$binary" --json "$out/$build-$round.json" \
            > "$out/$build-$round.md" 2> "$out/$build-$round.log"; then
            echo "$build $round: failed ($out/$build-$round.log)"
            continue
        fi
        grep '| daemon |' "$out/$build-$round.md" | sed "s/^/$build $round /"
    done
done | tee "$out/rows"
python3 - "$out/rows" <<'PY'
import statistics, sys
ratios = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 3 and cells[3].endswith("x"):
        build, payload = cells[0].split()[0], cells[1]
        ratios.setdefault((payload, build), []).append(float(cells[3].rstrip(" x")))
for payload in sorted({p for p, _ in ratios}, key=lambda p: int(p.split()[0])):
    b, a = ratios.get((payload, "before"), []), ratios.get((payload, "after"), [])
    if b and a:
        med, mean = statistics.median, statistics.mean
        print(f"{payload}: daemon / floor, {len(b)} and {len(a)} runs: before median {med(b):.3f} "
              f"mean {mean(b):.3f}, after median {med(a):.3f} mean {mean(a):.3f}; after / before "
              f"{med(a) / med(b):.2f} x (medians), {mean(a) / mean(b):.2f} x (means)")
PY
echo "reports: $out"
