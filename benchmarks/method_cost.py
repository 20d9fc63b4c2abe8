"""What each method costs at its defaults: unlearning seconds against a retrain timed around it on the same
device and load, as "% of retrain", beside the 20% the NeurIPS 2023 competition allowed.

    python benchmarks/method_cost.py --profile cpu [--methods ga,scrub,...] [--seed 0] [--repeats 1]

Plans like `unlearn run` (the profile's precision and recipe), builds the split's original and retrain
models (cached), then runs each method `repeats` times with no attack and prints, per method, the
median unlearning time, the retrain estimate and their ratio, whether it is within 20%, and the machine.
Evaluation for the per-epoch curves is excluded, as in every run.
"""
from __future__ import annotations

import argparse
import statistics

from attack_cost import cpu_name  # the same machine line as the other benchmarks

from harness.cell import evaluate_cell
from harness.plan import plan
from harness.spec import configure

GOAL = 20.0  # % of retrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    p = plan(*configure(methods=args.methods, seeds=[args.seed], profile=args.profile, attacks=[],
                        show_progress=False))
    split = p.split(args.seed)
    models = p.reference_models().for_split(split, retrain=False)
    print(f"profile {p.profile.name} ({p.profile.precision}); {len(split.retain)} retain / {len(split.forget)} forget; "
          f"{cpu_name()}, {models.service.device_name}")
    print(f"{'method':<16} {'unlearn s':>10} {'retrain s':>10} {'% retrain':>10}  within {GOAL:g}%")
    for cell in p.cells(split)[2:]:
        runs = [evaluate_cell(cell, models) for _ in range(args.repeats)]
        failed = next((r for r in runs if not r.ok), None)
        if failed is not None:
            print(f"{cell.name:<16} FAILED: {failed.error}")
            continue
        seconds = statistics.median(r.metrics["unlearn_seconds"] for r in runs)
        retrain = statistics.median(r.metrics["retrain_seconds"] for r in runs)
        pct = 100.0 * seconds / retrain
        print(f"{cell.name:<16} {seconds:>10.1f} {retrain:>10.1f} {pct:>10.1f}  {'yes' if pct <= GOAL else 'NO'}",
              flush=True)


if __name__ == "__main__":
    main()
