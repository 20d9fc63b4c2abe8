#!/usr/bin/env bash
# One device call: decode the carried data, install the harness without dependencies (the GPU image has
# torch, torchvision, scikit-learn, pandas, pluggy; MLflow is not needed by these scripts), then the
# `paper` profile (every method, seed 0) and the throughput benchmark. Output lands in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 HARNESS_CACHE_DIR=/tmp/harness-cache
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
mkdir -p /tmp/data && python3 .data/decode_cifar10_jpeg.py .data/cifar10-jpeg.npz /tmp/data/cifar10.npz
export HARNESS_DATA_DIR=/tmp/data
timeout "${PAPER_TIMEOUT:-420}" python3 benchmarks/profile_run.py --profile paper --seeds 0 --out "$OUT" 2>&1 \
    | grep -vE "Warning|warn" | tee "$OUT/paper.txt"
timeout "${THROUGHPUT_TIMEOUT:-60}" python3 benchmarks/throughput.py --device cuda --batches 30 --repeats 2 2>&1 \
    | tee "$OUT/throughput.txt"
