#!/usr/bin/env bash
# Every figure issue 10 asks for, in one device call of at most BUDGET seconds (480) on an H100/H200, each
# step under its own time limit (and what is left of the budget), in order of importance:
#   1. the paper profile, one seed, every method (profile_run.py): results table, original training time
#      and test accuracy, each method's time and % of retrain, whole-run time; runs.json for
#      `unlearn import` here (the GPU image has no MLflow), then `unlearn report` writes the report; a
#      run stopped at its limit still saves the cells it finished
#   2. the evaluation pass on all 60k images (eval_pass.py)
#   3. training throughput: harness (CUDA graphs and eager) vs bare loops vs the kit pipeline
#   4. steps 2 and 3 with the previous commit's harness (.gpu/prev), for the side-by-side comparison
#   5. the original in fp32 and bf16 (recipe.py; fp32 comes from step 1's cache): accuracy and time
# Here first: bash benchmarks/gpu_prepare.sh; then on the GPU machine (device tool, carry [".gpu"]):
#   bash benchmarks/gpu_check.sh
# Output in $OUT (default /tmp/gpu-check): figures.txt (the summary), one .txt per step, runs.json, CSVs.
# Settings (environment): STEPS="paper recipe eval throughput prev" (which to run), GPU_DIR=.gpu,
# DEVICE=cuda PROFILE=paper SEEDS=0 REFERENCES=0 METHODS=(all) BATCHES=50 REPEATS=3 BUDGET=480,
# THROUGHPUT_ARGS (more options of throughput.py), EVAL_LIMIT (images of the evaluation pass), and
# PAPER_TIMEOUT=270 EVAL_TIMEOUT=45 THROUGHPUT_TIMEOUT=75 RECIPE_TIMEOUT=120 (seconds per step).
# REFERENCES=0: each reference model is one more retrain (a minute or more), so LiRA, RMIA and
# forget-quality are skipped unless the budget allows more.
# With DEVICE=cpu PROFILE=smoke and HARNESS_DATA_DIR set, the same script runs on a CPU (its test).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-check}"
DEVICE="${DEVICE:-cuda}" PROFILE="${PROFILE:-paper}" SEEDS="${SEEDS:-0}" REFERENCES="${REFERENCES:-0}"
BATCHES="${BATCHES:-50}" REPEATS="${REPEATS:-3}" PYTHON="${PYTHON:-python3}" GPU_DIR="${GPU_DIR:-.gpu}"
STEPS="${STEPS:-paper eval throughput prev recipe}" BUDGET="${BUDGET:-480}"
export HARNESS_CACHE_DIR="${HARNESS_CACHE_DIR:-/tmp/harness-cache}"
mkdir -p "$OUT"
began=$(date +%s)

step() {  # NAME LIMIT COMMAND...: run under a time limit, output to $OUT/NAME.txt and here
    local name=$1 limit=$2
    shift 2
    [[ $name == prev-* || " $STEPS " == *" $name "* ]] || return 0  # prev-* steps: guarded below
    local left=$(( BUDGET - ($(date +%s) - began) ))
    if (( left < 15 )); then echo "== $name: skipped, the budget of ${BUDGET} s is spent"; return 0; fi
    (( limit > left )) && limit=$left
    echo "== $name (limit ${limit} s; $(( $(date +%s) - began )) s elapsed)"
    timeout -k 20 "$limit" "$@" > "$OUT/$name.txt" 2>&1  # SIGTERM at the limit: profile_run saves what finished
    local rc=$?
    grep -v -i -E "warn|^[0-9]{2}:[0-9]{2}:[0-9]{2} " "$OUT/$name.txt"
    [ $rc -eq 0 ] || echo "== $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)')"
}

{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    lscpu 2>/dev/null | grep -E "^Model name|^CPU\(s\)"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} | tee "$OUT/gpu.txt"

if ! "$PYTHON" -c "import importlib.metadata as m; m.version('unlearning-harness')" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2  # its dependencies are in the GPU image
fi
if [ -z "${HARNESS_DATA_DIR:-}" ]; then
    mkdir -p /tmp/cifar10
    "$PYTHON" "$GPU_DIR/data/decode_cifar10_jpeg.py" "$GPU_DIR/data/cifar10-jpeg.npz" /tmp/cifar10/cifar10.npz
    export HARNESS_DATA_DIR=/tmp/cifar10
fi

step paper "${PAPER_TIMEOUT:-270}" "$PYTHON" benchmarks/profile_run.py --profile "$PROFILE" --seeds "$SEEDS" \
    --references "$REFERENCES" --device "$DEVICE" --out "$OUT" --save "$OUT/runs.json" ${METHODS:+--methods "$METHODS"}
step eval "${EVAL_TIMEOUT:-45}" "$PYTHON" benchmarks/eval_pass.py --device "$DEVICE" ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"}
step throughput "${THROUGHPUT_TIMEOUT:-75}" "$PYTHON" benchmarks/throughput.py --device "$DEVICE" \
    --batches "$BATCHES" --repeats "$REPEATS" ${THROUGHPUT_ARGS:-}
PREV="$(cd "$GPU_DIR" 2>/dev/null && pwd)/prev"
if [ -d "$PREV" ] && [[ " $STEPS " == *" prev "* ]]; then
    echo "previous commit: $(cat "$PREV/COMMIT" 2>/dev/null)"
    PYTHONPATH="$PREV" step prev-eval "${EVAL_TIMEOUT:-45}" "$PYTHON" benchmarks/eval_pass.py \
        --device "$DEVICE" ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"}
    PYTHONPATH="$PREV" step prev-throughput "${THROUGHPUT_TIMEOUT:-75}" "$PYTHON" \
        "$PREV/benchmarks/throughput.py" --device "$DEVICE" --batches "$BATCHES" --repeats "$REPEATS" ${THROUGHPUT_ARGS:-}
fi
step recipe "${RECIPE_TIMEOUT:-120}" "$PYTHON" benchmarks/recipe.py --profile "$PROFILE" --seeds 0 \
    --precisions fp32,bf16 --device "$DEVICE"

{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - began )) s"
    cat "$OUT/gpu.txt"
    grep -h -E "^profile |^original \(|whole run wall-clock|^FAILURES" "$OUT/paper.txt" 2>/dev/null
    sed -n '/^cell /,/^$/p' "$OUT/paper.txt" 2>/dev/null
    grep -h -E "profile default" "$OUT/recipe.txt" 2>/dev/null
    grep -h "^evaluation pass" "$OUT/eval.txt" 2>/dev/null
    grep -h -E "^harness|^original model|^torch.compile" "$OUT/throughput.txt" 2>/dev/null
    grep -h -i "not captured as a CUDA graph" "$OUT"/*.txt 2>/dev/null | sort | uniq -c
    if [ -f "$OUT/prev-eval.txt" ]; then
        echo "previous commit $(cat "$PREV/COMMIT" 2>/dev/null):"
        grep -h "^evaluation pass" "$OUT/prev-eval.txt"
        grep -h -E "^harness|^bare|^kit" "$OUT/prev-throughput.txt"
    fi
} > "$OUT/figures.txt"
echo
cat "$OUT/figures.txt"
