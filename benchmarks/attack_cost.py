"""What verification costs beside unlearning: seconds per attack on one model, against the unlearning time of
the same method on the same split, and the one-time cost of the reference bank.

    python benchmarks/attack_cost.py --profile cpu --references 4 [--method simple]

Plans like `unlearn run` (all registered attacks, the profile's precision), builds the split's references
(timing the bank: trained now or read from the cache), then runs the method once and prints, per attack,
its one-time preparation (per split) and its scoring time on the method's model, with the ratio to the
unlearning time, and the machine beside the figures.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time

from harness.cell import Cell, evaluate_cell
from harness.plan import plan
from harness.reference_models import bank_seeds
from harness.spec import configure


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--references", type=int, default=4)
    ap.add_argument("--method", default="simple")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    p = plan(*configure(methods=[args.method], seeds=[args.seed], profile=args.profile, bank_size=args.references,
                        show_progress=False))
    service = p.reference_models()
    split = p.split(args.seed)
    keys = [service.key(split.retain, s, p.profile.recipe.epochs) for s in bank_seeds(split.seed, args.references)]
    cached = sum(service.cache.logits_path(k).exists() or service.cache.path(k).exists() for k in keys)
    start = time.perf_counter()
    refs = service.for_split(split, bank_size=p.bank_size)
    setup = time.perf_counter() - start
    print(f"{cpu_name()} ({p.compute.device}, precision {p.profile.precision}), profile {p.profile.name}, "
          f"split seed {split.seed}, sizes {split.sizes()}")
    print(f"references: original + gold retrain + bank of {refs.bank_size} ({cached} of them cached before): "
          f"{setup:.1f} s")
    prepare = {}
    for attack in p.attacks:
        if refs.unmet(attack.component, attack.params) is None:
            t = time.perf_counter()
            refs.prepared(attack.component, attack.params)
            if "random" in attack.component.needs:
                refs.random_out  # noqa: B018 - built once per split, counted as preparation
            prepare[attack.name] = time.perf_counter() - t
    method = p.methods[0]
    result = evaluate_cell(Cell(method.name, method.component, method.params, split, p.attacks, p.setting), refs)
    m = result.metrics
    unlearn = m["unlearn_seconds"]
    print(f"{method.name}: unlearning {unlearn:.1f} s ({m['pct_retrain_time']:.1f}% of retrain); "
          f"reruns {m.get('rerun_seconds', 0.0):.1f} s")
    print(f"{'attack':<16}{'prepare s':>10}{'score s':>10}{'score / unlearn':>17}  note")
    total = 0.0
    for attack in p.attacks:
        if attack.name in result.skipped:
            print(f"{attack.name:<16}{'-':>10}{'-':>10}{'-':>17}  skipped: {result.skipped[attack.name]}")
            continue
        score = m.get(f"attack_seconds/{attack.name}", float("nan"))
        uses_bank = attack.component.bank_needed(attack.params) > 0 or attack.component.reruns_needed(attack.params)
        total += score if not uses_bank else 0.0
        note = "error: " + result.attack_errors[attack.name].splitlines()[0] if attack.name in result.attack_errors \
            else ("uses the bank" if uses_bank else "")
        print(f"{attack.name:<16}{prepare.get(attack.name, 0.0):>10.2f}{score:>10.2f}{score / unlearn:>17.3f}  {note}")
    print(f"all attacks without references: {total:.2f} s = {total / unlearn:.3f} x the unlearning time")


if __name__ == "__main__":
    main()
