#!/usr/bin/env bash
# The main job on a fresh machine: set up, then `unlearn run` with the built-in defaults (every method,
# the random scenario, seed 0, the `paper` profile with a GPU or `cpu` without). Extra arguments are
# passed to `unlearn run`, e.g. `bash scripts/run.sh --methods simple,rotate --seeds 0-2`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "${HARNESS_VENV:-$ROOT/.venv}/bin/unlearn" run "$@"
