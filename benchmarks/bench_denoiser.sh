#!/bin/sh
# What the denoiser adds to the fix loop, in shards a sitting can hold: the full system, the
# model-free drafters and one-shot drafting, side by side per task, budget 60 s, on
#   - 32 single-bug test tasks of the injected kinds (drawn with seed 0),
#   - the 32 single-bug test tasks of the real-bug kinds (benchmarks/bugs/README.md),
#   - the 16 two-bug test tasks.
# Shard K of N runs every N-th task of each; join the shards (same commit) with
#   agent bench $(printf -- "--merge %s " OUT/*.json) --markdown OUT/all.md --json OUT/all.json
# Usage: benchmarks/bench_denoiser.sh K/N OUT   (from the checkout whose code is measured)
set -eu
SHARD=$1
OUT=$2
K=$(echo "$SHARD" | cut -d/ -f1)
N=$(echo "$SHARD" | cut -d/ -f2)
AGENT=$(dirname "$0")/../.venv/bin/agent
mkdir -p "$OUT"
run() {
    name=$1
    shift
    nice -n 5 "$AGENT" bench --split test --shard "$SHARD" --budget 60 --jobs 1 \
        --compare full= --compare "edits=--drafter edits" \
        --compare "mutations=--drafter mutations" --compare "one-shot=--max-rounds 1" \
        --json "$OUT/$name-$K-of-$N.json" "$@"
}
run injected --sample 32 --seed 0 \
    --kinds arithmetic --kinds boolean --kinds comparison --kinds deleted_statement \
    --kinds negated_condition --kinds off_by_one --kinds swapped_args --kinds wrong_name \
    --kinds wrong_return
run real-kinds \
    --kinds more_specific_condition --kinds less_specific_condition \
    --kinds missing_wrapper_call --kinds changed_argument --kinds swapped_concatenation \
    --kinds missing_loop_statement --kinds missing_loop_progress --kinds wrong_attribute
run pairs --tasks "$(dirname "$0")/bugs/pairs.jsonl"
