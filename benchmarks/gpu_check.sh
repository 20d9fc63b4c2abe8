#!/usr/bin/env bash
# One device call: decode the carried data, install the harness without dependencies (the GPU image has
# torch, torchvision, scikit-learn, pandas, pluggy; MLflow is not needed by these scripts), then the
# throughput benchmark and the `paper` profile. Output lands in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 HARNESS_CACHE_DIR=/tmp/harness-cache
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
mkdir -p /tmp/data && python3 .data/decode_cifar10_jpeg.py .data/cifar10-jpeg.npz /tmp/data/cifar10.npz
export HARNESS_DATA_DIR=/tmp/data
python3 -m harness.cli plugins 2>&1 | tail -20
timeout 150 python3 benchmarks/throughput.py --device cuda --batches 60 --repeats 3 2>&1 | tee "$OUT/throughput.txt"
timeout ${PAPER_TIMEOUT:-330} python3 benchmarks/profile_run.py --profile paper --seeds 0 --compare-precision --out "$OUT" 2>&1 | grep -v Warning | tee "$OUT/paper.txt"
