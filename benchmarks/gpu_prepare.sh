#!/usr/bin/env bash
# Prepare, on a machine with the repository, what benchmarks/gpu_check.sh needs on a GPU machine, in the
# ignored folder .gpu/ (name it in the device tool's `carry`; about 55 MiB of the 64 MiB that travel):
#   .gpu/data/   the JPEG CIFAR-10 copy and its decoder (the GPU machine has no internet)
#   .gpu/prev/   the harness of the commit to compare with, for the side-by-side figures
#
#   bash benchmarks/gpu_prepare.sh [BASE]
# BASE: the commit to compare with, HEAD~1 by default (any revision git knows: a tag, a hash).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED="${SHARED:-../shared/data}"
BASE="$(git rev-parse --short "${1:-HEAD~1}")"
rm -rf .gpu
mkdir -p .gpu/data .gpu/prev
cp "$SHARED/cifar10-jpeg.npz" "$SHARED/decode_cifar10_jpeg.py" .gpu/data/
git archive "$BASE" harness plugins benchmarks | tar -x -C .gpu/prev
echo "$BASE" > .gpu/prev/COMMIT
echo "prepared .gpu/ ($(du -sh .gpu | cut -f1)): data copy, and commit $BASE in .gpu/prev to compare with" >&2
