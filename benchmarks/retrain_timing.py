"""Does "% of retrain" compare like with like? The same method run repeatedly on a quiet machine and
under load, its time divided (a) by the retrain time recorded in the cache (the old way) and (b) by the
retrain cost timed in the same process just before it (the harness's way). Also checks the timed
estimate against a full retrain measured now.

    python benchmarks/retrain_timing.py --profile cpu [--method simple] [--repeats 3] [--full-retrain]

Prints every run and the spread (max / min) of each ratio per condition, with the machine beside them.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from harness import engine
from harness.cache import ModelCache
from harness.cell import Cell, evaluate_cell
from harness.data import cache_dir, load_cifar10
from harness.host import default_host
from harness.profiles import PROFILES
from harness.reference_models import ReferenceModels
from harness.splits import make_split

LOAD = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1500, 1500)\nwhile True:\n    a @ a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    ap.add_argument("--method", default="simple")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default=None, help="default: the profile's (auto resolved to bf16)")
    ap.add_argument("--full-retrain", action="store_true", help="also time one full retrain now, uncached")
    args = ap.parse_args()
    host, profile = default_host(), PROFILES[args.profile]
    device = engine.resolve_device(args.device)
    precision = args.precision or (profile.precision if profile.precision != "auto" else "bf16")
    compute = engine.Compute(device, precision, profile.channels_last)
    data = load_cifar10().to(device)
    split = make_split(data, profile, host.scenarios.get("random"), 0)
    factory = lambda: host.models.get("resnet18").fn(data.num_classes)  # noqa: E731
    refs = ReferenceModels(data, compute, "resnet18", factory, profile.recipe, ModelCache(cache_dir() / "models"),
                      show_progress=False, calibration_steps=profile.calibration_steps,
                      warmup_steps=profile.calibration_warmup)
    split_refs = refs.for_split(split)
    recorded = split_refs.retrain.meta["train_seconds"]
    print(f"profile {profile.name} ({precision}) on {refs.device_name}; method {args.method}")
    print(f"recorded retrain: {recorded:.1f} s on {split_refs.retrain.meta['train_device']} "
          f"(cached: {split_refs.retrain.meta['cached']})")
    if args.full_retrain:
        fresh = ReferenceModels(data, compute, "resnet18", factory, profile.recipe, None, show_progress=False,
                           calibration_steps=profile.calibration_steps, warmup_steps=profile.calibration_warmup)
        estimate = fresh.retrain_seconds(split)
        start = time.perf_counter()
        fresh.train(split.retain, split.seed)
        full = time.perf_counter() - start
        print(f"full retrain now: {full:.1f} s; timed estimate just before: {estimate:.1f} s "
              f"(estimate / full = {estimate / full:.3f})")
    method = host.methods.get(args.method)
    cell = Cell(method.name, method, method.resolve(), split, (), {})
    print(f"\n{'condition':<10} {'run':>3} {'method s':>9} {'estimate s':>11} "
          f"{'% (timed now)':>14} {'% (recorded)':>13}")
    spread = {}
    for condition in ("quiet", "loaded"):
        load = subprocess.Popen([sys.executable, "-c", LOAD]) if condition == "loaded" else None
        try:
            time.sleep(2 if load else 0)
            for rep in range(args.repeats):
                m = evaluate_cell(cell, split_refs).metrics
                old = 100 * m["unlearn_seconds"] / recorded
                print(f"{condition:<10} {rep:>3} {m['unlearn_seconds']:>9.1f} {m['retrain_seconds']:>11.1f} "
                      f"{m['pct_retrain_time']:>14.1f} {old:>13.1f}", flush=True)
                spread.setdefault("timed now", []).append(m["pct_retrain_time"])
                spread.setdefault("recorded", []).append(old)
        finally:
            if load:
                load.kill()
    print()
    for name, values in spread.items():
        print(f"% of retrain, {name:<9}: {min(values):6.1f} .. {max(values):6.1f}  "
              f"(max / min = {max(values) / min(values):.2f})")


if __name__ == "__main__":
    main()
