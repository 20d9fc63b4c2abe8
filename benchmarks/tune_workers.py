"""Does `unlearn tune --workers K` finish a study no slower than one worker? Wall time of the same study
(same method, fixed space, N trials, no held-out phase) with 1 worker and with K, side by side.

    python benchmarks/tune_workers.py --profile cpu --method deviation --trials 8 --workers 2

The original model is trained (or read from the cache) by a warm-up study first, so both timings are
trials only. Each timing uses a fresh journal-file study. Run it on a quiet machine: compare the ratio.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "?"


def study(folder: Path, name: str, args, workers: int, trials: int) -> float:
    cmd = [sys.executable, "-m", "harness.cli", "tune", "--method", args.method, "--profile", args.profile,
           "--trials", str(trials), "--holdout-seeds", "none", "--storage", f"journal:{folder / (name + '.log')}",
           "--study", name, "--workers", str(workers), "--time-budget", "1000", "--quiet",
           "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--experiment", "bench-workers"]
    if args.space:
        cmd += ["--space", args.space]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--method", default="deviation")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--space", help="space TOML (default: the method's declared space)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.space is None and args.method == "deviation":
            space = folder / "space.toml"  # fixed length, so both timings run comparable trials
            space.write_text("[deviation]\nepochs = 2\nlayers = \"conv1\"\n")
            args.space = str(space)
        study(folder, "warmup", args, 1, 1)
        one = study(folder, "one-worker", args, 1, args.trials)
        many = study(folder, f"{args.workers}-workers", args, args.workers, args.trials)
    print(f"CPU: {cpu_name()}; profile {args.profile}; method {args.method}; {args.trials} trials")
    print("| workers | wall s | trials/min |\n|---|---|---|")
    print(f"| 1 | {one:.1f} | {60 * args.trials / one:.2f} |")
    print(f"| {args.workers} | {many:.1f} | {60 * args.trials / many:.2f} |")
    print(f"ratio (1 worker / {args.workers} workers): {one / many:.2f}x  "
          f"({'no slower' if many <= one * 1.05 else 'SLOWER'} with {args.workers})")


if __name__ == "__main__":
    main()
