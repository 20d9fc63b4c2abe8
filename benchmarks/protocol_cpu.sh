#!/usr/bin/env bash
# The paper's protocol at cpu scale (docs/protocol-cpu.md): every method, random and targeted-red forget
# sets, 5 seeds, epoch budgets 2 and 5, then its report, figures and the MLflow view's screenshot.
# About 1 h 50 min on a 2-core AMD EPYC (no GPU). Rerunning it after an interruption runs only the cells
# that are missing. Needs HARNESS_DATA_DIR offline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
unlearn run --profile cpu --scenarios random,targeted-red --seeds 0-4 --epochs 2,5 --experiment protocol-cpu --quiet
unlearn report --experiment protocol-cpu --output docs/protocol-cpu.md \
    --title 'The paper'"'"'s protocol on the cpu profile' --preamble docs/protocol-cpu-analysis.md
python benchmarks/ui_screenshot.py "sqlite:///$PWD/mlruns/mlflow.db" protocol-cpu docs/figures/mlflow-view-protocol-cpu.png
