"""Workers on several "machines" join one study through a real PostgreSQL server (started by the test):
they finish exactly the requested trials, none twice, and a worker killed mid-trial loses nothing: its
trial stops beating, is failed, run again by the survivor, and its MLflow run is marked KILLED."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import mlflow
import optuna
import pytest

from harness.tracking import MlflowTracker

from .test_integration import UNLEARN, env_for

pytestmark = pytest.mark.integration


def start_worker(tmp, env, storage, study, trials, host, *extra):
    args = [*UNLEARN, "tune", "--method", "noisy-finetune", "--model", "tiny-cnn", "--profile", "smoke",
            "--trials", str(trials), "--holdout-seeds", "none", "--storage", storage, "--study", study,
            "--heartbeat", "1", "--time-budget", "1e6", "--quiet", *extra]
    return subprocess.Popen(args, env={**env, "HARNESS_WORKER_HOST": host, "OMP_NUM_THREADS": "1"}, cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=120) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return out


def children(env, parent_id):
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["tuning-random"], output_format="pandas")
    return runs[runs["tags.mlflow.parentRunId"] == parent_id]


def test_two_workers_then_one_killed_mid_trial(tmp_path, data_dir, postgres_url):
    env = env_for(tmp_path, data_dir)
    MlflowTracker(env["MLFLOW_TRACKING_URI"], "tuning-random")  # one MLflow store, made before the workers start

    # two workers started together finish exactly 4 trials; beside them, on a slow study (0.5 s before each
    # epoch), worker c is killed while it runs a trial and worker d finishes the study
    pair = [start_worker(tmp_path, env, postgres_url, "pair", 4, f"machine-{k}") for k in "ab"]
    space = tmp_path / "space.toml"
    space.write_text("[noisy-finetune]\npause = 0.5\nepochs = 2\n")
    c = start_worker(tmp_path, env, postgres_url, "kill", 3, "machine-c", "--space", str(space))
    d = start_worker(tmp_path, env, postgres_url, "kill", 3, "machine-d", "--space", str(space))
    deadline = time.monotonic() + 90
    victim = None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            running = optuna.load_study(study_name="kill", storage=postgres_url).get_trials(
                states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            continue
        victim = next((t for t in running if str(t.user_attrs.get("worker", "")).startswith("machine-c:")
                       and t.user_attrs.get("mlflow_run_id")), None)
    assert victim is not None, "worker c never ran a trial"
    os.kill(c.pid, signal.SIGKILL)
    finish(c)
    for w in (*pair, d):
        out = finish(w)
        assert w.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="pair", storage=postgres_url)
    ran = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in ran] == ["COMPLETE"] * 4
    assert len({t.user_attrs["mlflow_run_id"] for t in ran}) == 4
    runs = children(env, study.user_attrs["mlflow_parent_run_id"])
    assert sorted(runs["tags.trial_number"].astype(int)) == sorted(t.number for t in ran)
    assert (runs["status"] == "FINISHED").all()

    study = optuna.load_study(study_name="kill", storage=postgres_url)
    trials = {t.number: t for t in study.get_trials() if not t.user_attrs.get("surplus")}
    assert trials[victim.number].state.name == "FAIL"
    complete = [t for t in trials.values() if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and len(trials) == 4  # 3 ended, plus the killed one
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params
    runs = children(env, study.user_attrs["mlflow_parent_run_id"]).set_index("run_id")
    assert runs.loc[victim.user_attrs["mlflow_run_id"], "status"] == "KILLED"
    assert (runs.loc[[t.user_attrs["mlflow_run_id"] for t in complete], "status"] == "FINISHED").all()

