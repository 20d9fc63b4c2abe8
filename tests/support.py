"""Helpers shared by several test modules (tests import them from here, never from each other): the
repository root, `unlearn` as a subprocess or in this process, a method's inputs on the tiny CNN,
synthetic result frames for the reports, the synthetic benchmark the MLflow view tests open, and waiting
on a condition instead of sleeping. Fixtures stay in conftest.py."""
from __future__ import annotations

import math
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the pytest-xdist controller loads this module through conftest.py
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
UNLEARN = [sys.executable, "-m", "harness.cli"]


def worker_threads() -> int:
    """Torch threads for this test process and the processes it starts: the machine's cores shared by the
    pytest-xdist workers running at once (all of them without xdist)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, (os.cpu_count() or 1) // workers)


# -- `unlearn` ----------------------------------------------------------------------------------------------
def env_for(tmp: Path, data_dir: Path, pythonpath: str | None = None) -> dict:
    """The test process's environment (PYTHONPATH carries the example plugin unless replaced)."""
    env = {**os.environ, "HARNESS_DATA_DIR": str(data_dir), "HARNESS_CACHE_DIR": str(tmp / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


def mlflow_runs(env, experiment):
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def in_process(monkeypatch, tmp: Path, data_dir: Path) -> dict:
    """Set this process up as `env_for` sets up a subprocess (environment, working folder) for `unlearn`
    through click's CliRunner: the CLI's own code, without the seconds a fresh interpreter takes to import
    torch and MLflow. The subprocess path is covered by the fault tests and the plugin test."""
    env = env_for(tmp, data_dir)
    for key in ("HARNESS_DATA_DIR", "HARNESS_CACHE_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(tmp)
    return env


def cli_in_process(monkeypatch, *args):
    """`unlearn ARGS` through CliRunner, with sys.argv as the console script would see it (the run records
    its command line from there); the click Result (stdout and stderr apart)."""
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.setattr(sys, "argv", ["unlearn", *args])
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- waiting ------------------------------------------------------------------------------------------------
def wait_for(predicate, what: str, timeout: float = 180, poll: float = 0.3):
    """The first true value of `predicate()`, polled every `poll` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the OS picks it: no fixed ports in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- methods on the tiny CNN --------------------------------------------------------------------------------
def tiny_factory():
    """The example plugin's two-conv CNN for 10 classes."""
    from harness.data import CLASSES
    from harness.host import default_host

    model = default_host().models.get("tiny-cnn")
    return model.fn(len(CLASSES), **model.resolve())


def method_inputs(data, original, factory, seed: int = 0, on_epoch=None):
    """(model, UnlearningData, Context) as the harness hands them to a method, over fixed index sets of
    the tiny data: retain = train[24:], forget = train[:24], validation = the first 40 held-out images."""
    import torch

    from harness.cell import method_arguments
    from harness.testing import CPU

    train, heldout = torch.arange(data.n_train), torch.arange(data.n_train, len(data.labels))
    return method_arguments(original, data, train[24:], train[:24], heldout[:40], seed, CPU, factory,
                            on_epoch=on_epoch, show_progress=False, epoch_eval_size=None)


# -- synthetic result frames (harness.reporting.analysis and .figures) ---------------------------------------
FRAME_METRICS = {"mia": {
    "auc": {"target": 0.5, "label": "MIA AUC"},
    "signed_auc": {"target": 0.5, "label": "signed AUC", "interval": ["signed_auc_low", "signed_auc_high"]},
    "signed_auc_low": {"summary": False},
    "signed_auc_high": {"summary": False},
}}

# method -> (retain, forget, validation accuracy, signed MIA AUC, % of retrain time)
PROFILES = {
    "original": (0.995, 0.995, 0.880, 0.58, math.nan),
    "retrain": (0.990, 0.880, 0.880, 0.50, 100.0),
    "finetune": (0.980, 0.950, 0.860, 0.55, 12.0),
    "rotate": (0.960, 0.860, 0.860, 0.50, 30.0),
    "pruning": (0.930, 0.780, 0.840, 0.45, 25.0),
}


def synthetic_frame(scenarios=("random", "targeted-red"), budgets=(5, 9), methods=("finetune", "rotate", "pruning"),
                    seeds=range(5), noise=0.004) -> pd.DataFrame:
    """Result rows like MlflowStore.rows: reference rows once per (scenario, seed), methods per budget. Each
    (scenario, seed) split shifts every model's accuracies alike, so paired differences are tighter."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for scenario in scenarios:
        for seed in seeds:
            split = rng.normal(0, 0.01)
            cells = [(m, math.nan) for m in ("original", "retrain")]
            cells += [(m, float(e)) for e in (budgets or [math.nan]) for m in methods]
            for method, epochs in cells:
                retain, forget, valid, signed, pct = PROFILES[method]
                forget, valid = forget + split + rng.normal(0, noise), valid + split + rng.normal(0, noise)
                signed = signed + rng.normal(0, noise)
                rows.append({
                    "method": method, "scenario": scenario, "epochs": epochs, "seed": seed, "status": "FINISHED",
                    "run_id": f"{method}-{scenario}-{epochs}-{seed}", "acc_retain": retain + rng.normal(0, noise),
                    "acc_forget": forget, "acc_validation": valid, "acc_test": valid,
                    "forget_val_ratio": forget / valid,
                    "pct_retrain_time": pct if method == "retrain" else pct + rng.normal(0, 1),
                    "unlearn_seconds": 25.0 * pct, "mia/auc": 0.5 + abs(signed - 0.5) + rng.normal(0, noise),
                    "mia/signed_auc": signed, "mia/signed_auc_low": signed - 0.01, "mia/signed_auc_high": signed + 0.01,
                })
    return pd.DataFrame(rows)


def synthetic_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch accuracies rising to each method row's final values (steps 1..epochs)."""
    import pandas as pd

    from harness.reporting import analysis

    rows = []
    for _, r in frame[~frame["method"].isin(analysis.REFERENCE_ROWS)].iterrows():
        epochs = int(r["epochs"]) if not pd.isna(r["epochs"]) else 4
        for step in range(1, epochs + 1):
            for name in ("retain", "forget", "validation"):
                value = r[f"acc_{name}"] - 0.1 * (epochs - step) / epochs
                rows.append({"method": r["method"], "scenario": r["scenario"], "epochs": r["epochs"], "seed": r["seed"],
                             "run_id": r["run_id"], "step": step, "metric": f"epoch_acc_{name}", "value": value})
    return pd.DataFrame(rows)


# -- the synthetic benchmark of the MLflow comparison view ---------------------------------------------------
VIEW_METHODS = ["original", "retrain", "simple", "rotate", "gradient"]
VIEW_SEEDS = [0, 1]
VIEW_METRICS = {"mia": {"auc": {"target": 0.5, "label": "MIA AUC"},
                        "signed_auc": {"target": 0.5, "label": "signed AUC"},
                        "signed_auc_low": {"summary": False}}}
VIEW_KEYS = [("forget_val_ratio", "1"), ("mia/auc", "0.5"), ("mia/signed_auc", "0.5"),
             ("acc_validation", "higher"), ("pct_retrain_time", "lower")]


def write_smoke_benchmark(uri: str, experiment: str = "smoke-benchmark", epochs: int = 3):
    """A benchmark as the runner writes it: a parent, then original, retrain and three methods x two seeds
    with final metrics at step 0 and per-epoch curves, and a cell a dead process left KILLED.
    Returns (tracker, parent run id, run ids of the FINISHED children)."""
    from harness.tracking import FINISHED, KILLED, MlflowTracker

    rng = random.Random(0)
    tracker = MlflowTracker(uri, experiment)
    parent = tracker.start_parent("smoke-forget", {"run_kind": "parent", "config_hash": "c0ffee", "command": "run"})
    killed = tracker.start_child(parent, "simple seed=0", {"run_kind": "child", "method": "simple",
                                                           "scenario": "forget", "epochs": "", "seed": 0,
                                                           "cell_hash": "simple-0"})
    killed.log_metrics({"epoch_acc_forget": 0.1}, step=0)
    killed.end(KILLED)
    finished = []
    for method in VIEW_METHODS:
        for seed in VIEW_SEEDS:
            child = tracker.start_child(parent, f"{method} seed={seed}", {
                "run_kind": "child", "method": method, "scenario": "forget", "epochs": "", "seed": seed,
                "cell_hash": f"{method}-{seed}"})
            for epoch in range(epochs + 1):
                child.log_metrics({"epoch_acc_forget": rng.uniform(0.5, 1.0),
                                   "epoch_acc_validation": rng.uniform(0.6, 0.8)}, step=epoch)
            validation, forget = rng.uniform(0.72, 0.8), rng.uniform(0.6, 0.95)
            child.log_metrics({"acc_retain": rng.uniform(0.8, 0.95), "acc_forget": forget, "acc_validation": validation,
                               "acc_test": rng.uniform(0.72, 0.8), "forget_val_ratio": forget / validation,
                               "pct_retrain_time": 100.0 if method == "retrain" else rng.uniform(2, 30),
                               "unlearn_seconds": rng.uniform(1, 9), "mia/auc": rng.uniform(0.45, 0.62),
                               "mia/signed_auc": rng.uniform(0.45, 0.62), "mia/signed_auc_low": 0.4})
            child.end(FINISHED)
            finished.append(child.run_id)
    parent.end(FINISHED)
    return tracker, parent.run_id, finished
