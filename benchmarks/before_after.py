"""Compare two runs of the same command, cell by cell: every logged metric (final values and per-epoch
curves) except timings must be identical. Used to check that a refactoring changed no number.

    python benchmarks/before_after.py sqlite:///before/mlflow.db before sqlite:///after/mlflow.db after

Each store's newest parent run of the named experiment is read; cells are matched by (method, scenario,
epoch budget, seed). Prints one line per cell and exits 1 if any metric differs or a cell is missing.
"""
from __future__ import annotations

import argparse
import sys

from mlflow import MlflowClient

TIMING = ("seconds", "pct_retrain", "img_per_s")  # wall-clock figures: they differ between any two runs


def cells(uri: str, experiment: str) -> dict[tuple, dict[str, list[tuple[int, float]]]]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    parent = client.search_runs([exp.experiment_id], "tags.run_kind = 'parent'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    out = {}
    for run in client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"):
        tags = run.data.tags
        key = (tags["method"], tags.get("scenario"), tags.get("epochs"), tags["seed"])
        out[key] = {name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
                    for name in run.data.metrics if not any(t in name for t in TIMING)}
        out[key]["status"] = run.info.status
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before_uri")
    ap.add_argument("before_experiment")
    ap.add_argument("after_uri")
    ap.add_argument("after_experiment")
    args = ap.parse_args()
    before, after = cells(args.before_uri, args.before_experiment), cells(args.after_uri, args.after_experiment)
    bad = 0
    for key in sorted(set(before) | set(after), key=str):
        if key not in before or key not in after:
            print(f"{key}: only in {'after' if key not in before else 'before'}")
            bad += 1
            continue
        b, a = before[key], after[key]
        differ = sorted(n for n in set(b) | set(a) if b.get(n) != a.get(n))
        compared = len(set(b) - {"status"})
        points = sum(len(v) for k, v in b.items() if k != "status")
        print(f"{' '.join(str(k) for k in key if k)}: {compared} metrics, {points} values, "
              + ("identical" if not differ else f"DIFFER in {', '.join(differ[:8])}"))
        bad += bool(differ)
    print(f"{len(before)} cells before, {len(after)} after; {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
