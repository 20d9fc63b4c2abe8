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

from harness import engine
from harness.cache import ModelCache
from harness.data import cache_dir
from harness.evaluation import model_outputs
from harness.report import format_summary
from harness.runner import ORIGINAL_SEED, RunConfig, Runner, plan
from harness.scratch import ScratchTrainer
from harness.splits import make_split
from harness.tracking import MemoryTracker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--compare-precision", action="store_true")
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
    print(f"profile {p.profile.name} on {runner.compute.device} ({p.profile.precision}); seeds {cfg.seeds}")
    print(format_summary(summary).to_string())
    print(f"\noriginal: trained in {originals[0].last('train_seconds'):.1f} s (cached: {originals[0].tags['cached']}), "
          f"train acc at last epoch {originals[0].last('train_acc'):.3f}")
    print(f"whole run wall-clock: {total:.1f} s")
    if result.failures:
        print("FAILURES:", json.dumps(result.failures, indent=1))
    if args.compare_precision:
        data = runner.data
        split = make_split(data, p.profile, p.scenario, cfg.seeds[0])
        for precision in ("fp32", "bf16"):
            compute = engine.Compute(runner.compute.device, precision, p.profile.channels_last)
            trainer = ScratchTrainer(data, compute, p.model.name, runner.factory, p.profile.recipe,
                                     ModelCache(cache_dir() / "models"), show_progress=False)
            model, meta = trainer.get(split.train, ORIGINAL_SEED)
            out = model_outputs(model, data, split, compute)
            train_acc = (out.accuracy("retain") * len(split.retain) + out.accuracy("forget") * len(split.forget)) / len(split.train)
            print(f"original {precision}: train acc {train_acc:.4f}, test acc {out.accuracy('test'):.4f}, "
                  f"validation acc {out.accuracy('validation'):.4f}, trained in {meta['train_seconds']:.1f} s")
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
