"""The real thing, small: `unlearn run --profile smoke` on a slice of the real CIFAR-10 copy, logged to a
temporary MLflow store; and a third-party plugin package installed and discovered through its entry point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.integration
UNLEARN = [sys.executable, "-m", "harness.cli"]


def env_for(tmp: Path, data_dir: Path, **extra) -> dict:
    env = {**os.environ, "HARNESS_DATA_DIR": str(data_dir), "HARNESS_CACHE_DIR": str(tmp / "cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}", **extra}
    if "PYTHONPATH" not in extra:
        env.pop("PYTHONPATH", None)
    return env


def test_smoke_run_logs_parent_and_child_runs(tmp_path, data_dir):
    env = env_for(tmp_path, data_dir)
    proc = subprocess.run([*UNLEARN, "run", "--profile", "smoke", "--seeds", "0", "--quiet"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retrain" in proc.stdout and "MIA AUC" in proc.stdout  # the terminal table

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["unlearning-random"], output_format="pandas")
    parents = runs[runs["tags.run_kind"] == "parent"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    from harness.host import default_host

    expected = {"original", *default_host().methods.names()}
    assert set(children["tags.method"]) == expected
    assert (children["status"] == "FINISHED").all()
    for col in ("metrics.acc_forget", "metrics.acc_validation", "metrics.forget_val_ratio", "metrics.mia_auc"):
        assert children[col].notna().all(), col
    methods = children[children["tags.method"] != "original"]
    assert methods["metrics.pct_retrain_time"].notna().all()
    assert methods["params.split_hash"].nunique() == 1 and methods["params.profile"].eq("smoke").all()
    simple_id = children[children["tags.method"] == "simple"].iloc[0]["run_id"]
    history = mlflow.MlflowClient().get_metric_history(simple_id, "epoch_acc_forget")
    assert [m.step for m in history] == list(range(1, 6))  # simple's 5 epochs, step = epoch

    report = tmp_path / "results.md"
    proc = subprocess.run([*UNLEARN, "report", "--experiment", "unlearning-random", "--output", str(report)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = report.read_text()
    assert "unlearn run --profile smoke --seeds 0 --quiet" in text and "| simple | 1 |" in text


def test_third_party_plugin_is_discovered_and_runs(tmp_path, data_dir):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO / "tests" / "fixtures" / "harness-example-plugin")],
                   check=True, capture_output=True, timeout=300)
    env = env_for(tmp_path, data_dir, PYTHONPATH=str(site))
    listing = subprocess.run([*UNLEARN, "plugins"], env=env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.strip().startswith("noisy-finetune"))
    assert "harness-example-plugin 0.1.0" in line
    assert "confidence-gap" in listing.stdout

    proc = subprocess.run([*UNLEARN, "run", "--profile", "smoke", "--methods", "noisy-finetune", "--quiet",
                           "--param", "noisy-finetune.epochs=1"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["unlearning-random"], output_format="pandas")
    mine = runs[runs["tags.method"] == "noisy-finetune"]
    assert len(mine) == 1 and mine.iloc[0]["status"] == "FINISHED"
    assert "metrics.confidence_gap" in runs.columns and mine["metrics.confidence_gap"].notna().all()
