#!/usr/bin/env bash
# Fuzzes every target of fuzz/ with AFL++ for SECONDS each (default 20), JOBS at a time (default
# 2), and fails if any found a crash or a hang: CI's short run, and with a longer SECONDS the long
# run of docs/fuzzing.md. Needs cargo-afl (`cargo install cargo-afl --locked`, which builds AFL++).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Each target starts from its seeds (fuzz/corpus/TARGET) and writes to target/afl/fuzz/TARGET; the
# last line per target is AFL++'s own count (fuzzer_stats): executions, bitmap coverage, inputs
# in its queue, crashes and hangs saved.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
jobs=${FUZZ_JOBS:-2}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=($(ls corpus))
fi

# A target folder of its own: the instrumented build must not replace the plain release build's
# files (the demo's, the benchmarks'), nor be rebuilt by it.
target=${CARGO_TARGET_DIR:-$PWD/../target}/afl
echo "== cargo afl build --release --features afl (fuzz/, into $target)"
CARGO_TARGET_DIR=$target cargo afl build --release --features afl --quiet
binary=$target/release/afl-target
out=$target/fuzz
mkdir -p "$out"

# AFL_SKIP_CPUFREQ and AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES: CI machines have no CPU frequency
# governor to check and pipe core dumps to a handler; AFL_NO_AFFINITY: the other jobs of the
# machine may hold every core. -m 256: a decoder that allocates from a length field without a
# bound runs out of memory, which AFL++ saves as a crash. -t 1000: a run over a second is a hang.
fuzz_one() {
    local name=$1
    rm -rf "${out:?}/$name" "$out/$name.failed"
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
        AFL_QUIET=1 cargo afl fuzz -i "corpus/$name" -o "$out/$name" -V "$seconds" -m 256 \
        -t 1000 -- "$binary" "$name" >"$out/$name.log" 2>&1 \
        || { echo "== $name: afl-fuzz failed:"; tail -20 "$out/$name.log"; touch "$out/$name.failed"; }
}

for name in "${targets[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do
        sleep 1
    done
    echo "== fuzzing $name for ${seconds} s"
    fuzz_one "$name" &
done
wait

failed=0
for name in "${targets[@]}"; do
    stats=$out/$name/default/fuzzer_stats
    if [[ -f $out/$name.failed || ! -f $stats ]]; then
        echo "== $name: no fuzzer_stats"
        failed=1
        continue
    fi
    field() { sed -n "s/^$1 *: //p" "$stats"; }
    echo "== $name: execs_done=$(field execs_done) bitmap_cvg=$(field bitmap_cvg)" \
        "corpus_count=$(field corpus_count) saved_crashes=$(field saved_crashes)" \
        "saved_hangs=$(field saved_hangs)"
    for found in "$out/$name"/default/crashes/id:* "$out/$name"/default/hangs/id:*; do
        [[ -f $found ]] || continue
        failed=1
        echo "== $name: $found"
        od -A x -t x1z -v "$found" | head -32
    done
done
exit "$failed"
