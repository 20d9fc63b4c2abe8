#!/usr/bin/env bash
# Prepare, on a machine with the repository, what benchmarks/gpu_check.sh needs on a GPU machine, in the
# ignored folder .gpu/ (name it in the device tool's `carry`; about 55 MiB of the 64 MiB that travel):
#   .gpu/data/   the JPEG CIFAR-10 copy and its decoder (the GPU machine has no internet)
#   .gpu/prev/   the harness of the commit to compare with, for the side-by-side figures
#
#   bash benchmarks/gpu_prepare.sh [BASE]
# BASE defaults to the commit before the newest change to the training engine (harness/engine.py or
# harness/graphs.py), so the figures compare the engine with its previous version.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED="${SHARED:-../shared/data}"
if [ $# -ge 1 ]; then
    BASE="$1"
else
    BASE="$(git log -n 1 --format=%H -- harness/engine.py harness/graphs.py)~1"
fi
BASE="$(git rev-parse --short "$BASE")"
rm -rf .gpu
mkdir -p .gpu/data .gpu/prev
cp "$SHARED/cifar10-jpeg.npz" "$SHARED/decode_cifar10_jpeg.py" .gpu/data/
git archive "$BASE" harness plugins benchmarks | tar -x -C .gpu/prev
echo "$BASE" > .gpu/prev/COMMIT
echo "prepared .gpu/ ($(du -sh .gpu | cut -f1)): data copy, and commit $BASE in .gpu/prev to compare with" >&2
