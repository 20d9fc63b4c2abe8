"""Does bf16 autocast cost accuracy? Train a profile's original model in fp32 and in bf16 (same data,
split, seed and recipe; cached models are reused) and print accuracy, forgetting signal and time side by
side.

    python benchmarks/precision.py --profile cpu [--device cuda]
"""
from __future__ import annotations

import argparse

from harness import engine
from harness.cache import ModelCache
from harness.data import cache_dir, load_cifar10
from harness.evaluation import AttackInput, model_outputs
from harness.host import default_host
from harness.profiles import PROFILES
from harness.runner import ORIGINAL_SEED
from harness.scratch import ScratchTrainer
from harness.splits import make_split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    host, profile = default_host(), PROFILES[args.profile]
    device = engine.resolve_device(args.device)
    data = load_cifar10().to(device)
    split = make_split(data, profile, host.scenarios.get("random"), args.seed)
    factory = lambda: host.models.get("resnet18").fn(data.num_classes)  # noqa: E731
    mia = host.attacks.get("mia")
    print(f"profile {profile.name}, device {device}, split seed {args.seed}")
    print(f"{'precision':<10} {'train acc':>9} {'valid acc':>9} {'test acc':>8} {'F/V ratio':>9} {'MIA AUC':>8} {'train s':>8}")
    for precision in ("fp32", "bf16"):
        compute = engine.Compute(device, precision, profile.channels_last)
        trainer = ScratchTrainer(data, compute, "resnet18", factory, profile.recipe, ModelCache(cache_dir() / "models"),
                                 show_progress=False)
        model, meta = trainer.get(split.train, ORIGINAL_SEED)
        out = model_outputs(model, data, split, compute)
        n_r, n_f = len(split.retain), len(split.forget)
        train_acc = (out.accuracy("retain") * n_r + out.accuracy("forget") * n_f) / (n_r + n_f)
        auc = mia.fn(AttackInput(out, seed=args.seed))["mia_auc"]
        print(f"{precision:<10} {train_acc:>9.3f} {out.accuracy('validation'):>9.3f} {out.accuracy('test'):>8.3f} "
              f"{out.accuracy('forget') / out.accuracy('validation'):>9.3f} {auc:>8.3f} {meta['train_seconds']:>8.1f}"
              f"{'  (cached)' if meta['cached'] else ''}")


if __name__ == "__main__":
    main()
