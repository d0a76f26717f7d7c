#!/usr/bin/env bash
# Two builds of the daemon in turns: `bench/compare.sh BEFORE AFTER [ROUNDS]`, each an `aggregator`
# binary; runs the `round` scenario against each, ROUNDS times (4 by default), and prints the
# daemon's rows of every run. Build the bench first (`cargo build --release -p aggregator-bench`).
set -euo pipefail
before=$1 after=$2 rounds=${3:-4}
bench="$(dirname "$0")/../target/release/aggregator-bench"
out=$(mktemp -d)
for round in $(seq "$rounds"); do
    for build in before after; do
        binary=${!build}
        "$bench" run round --daemon "$binary" --json "$out/$build-$round.json" > "$out/$build-$round.md"
        grep '| daemon |' "$out/$build-$round.md" | grep -v 'x |' | sed "s/^/$build $round /"
    done
done
echo "reports: $out"
