"""One local worker of `unlearn tune --workers K`: `python -m harness.tuning.worker CONFIG.json`.

It joins the study the launcher created and runs trials until the study has its N; the launcher then
judges and reports. Its torch thread count comes from $HARNESS_THREADS (the launcher divides the cores).
"""
from __future__ import annotations

import json
import logging
import os
import sys


def main(path: str) -> int:
    import torch

    from ..tracking import MlflowTracker
    from .study import TuneConfig, Tuner

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker {os.getpid()}: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if os.environ.get("HARNESS_THREADS"):
        torch.set_num_threads(int(os.environ["HARNESS_THREADS"]))
    with open(path) as fh:
        config = TuneConfig.from_dict(json.load(fh))
    tuner = Tuner(config)
    tuner.tracker = MlflowTracker(config.site.tracking_uri, tuner.experiment)
    study = tuner.open(config.methods[0])
    try:
        tuner.run_trials(study)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
