"""Run a profile end to end without a tracking store and print the figures the issues ask for: the results
table, the original's training time and test accuracy, the retrain's time, each method's time and % of
retrain, and the whole run's wall-clock. `--save FILE` keeps every run for `unlearn import FILE` (then
`unlearn report`), so a GPU machine without MLflow still yields the harness's report.

    python benchmarks/profile_run.py --profile paper --seeds 0 [--methods simple,rotate] [--references 2]
        [--device cuda] [--out DIR] [--save DIR/runs.json]
"""
from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

from harness.plan import plan
from harness.reporting.tables import format_summary
from harness.runner import Runner
from harness.spec import configure
from harness.tracking import MemoryTracker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--references", type=int, default=None, help="reference bank size (default: the profile's)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="folder for results and summary CSVs")
    ap.add_argument("--save", default=None, help="file for `unlearn import`")
    args = ap.parse_args()
    spec, site = configure(methods=args.methods, profile=args.profile, seeds=args.seeds, bank_size=args.references,
                           device=args.device, data_dir=args.data_dir, show_progress=False,
                           command=f"python benchmarks/profile_run.py --profile {args.profile} --seeds {args.seeds}")
    p = plan(spec, site)
    start = time.perf_counter()
    tracker = MemoryTracker()
    runner = Runner(p, tracker)
    signal.signal(signal.SIGTERM, _interrupt)  # a time limit (`timeout`) ends the run like Ctrl-C
    try:
        result = runner.run()
    except KeyboardInterrupt:  # keep what finished: the cells, and the parent marked KILLED
        result = None
        done = sum(r.status == "FINISHED" and "cell_hash" in r.tags for r in tracker.runs)
        print(f"interrupted after {time.perf_counter() - start:.0f} s with {done} finished cell(s)")
    total = time.perf_counter() - start
    if args.save:
        print(f"saved runs for `unlearn import`: {tracker.save(args.save, p.experiment)}")
    if result is None:
        return 1
    summary = result.summary()
    print(f"profile {p.profile.name} on {runner.models.device_name} ({p.profile.precision}, "
          f"CUDA graphs {'on' if p.compute.capture else 'off'}); seeds {list(spec.seeds)}; "
          f"references {p.bank_size}")
    print(format_summary(summary, p.describe()["metrics"]).to_string())
    children = [r for r in tracker.runs if "cell_hash" in r.tags]
    for r in children:
        if r.tags.get("method") == "original":
            m = {k: v[-1][1] for k, v in r.metrics.items()}
            print(f"\noriginal (seed {r.tags.get('seed')}): trained in {m.get('train_seconds', float('nan')):.1f} s "
                  f"(cached: {r.tags.get('cached')}), test accuracy {m.get('acc_test', float('nan')):.4f}, "
                  f"train accuracy {m.get('acc_retain', float('nan')):.4f} (retain)")
            break
    print(f"\n{'cell':<28} {'seconds':>9} {'% of retrain':>13}")
    for r in children:
        m = {k: v[-1][1] for k, v in r.metrics.items()}
        if "pct_retrain_time" in m:
            seconds = m.get("retrain_seconds_recorded", m.get("unlearn_seconds", float("nan")))
            print(f"{r.name:<28} {seconds:>9.1f} {m['pct_retrain_time']:>13.1f}")
    print(f"\nwhole run wall-clock: {total:.1f} s")
    if result.failures:
        print("FAILURES:", json.dumps(result.failures, indent=1))
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.frame().to_csv(out_dir / f"results-{p.profile.name}.csv", index=False)
        summary.to_csv(out_dir / f"summary-{p.profile.name}.csv")
    return 1 if result.failures else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sys.exit(main())
