"""Workers on several "machines" join one study through a real PostgreSQL server (started by the test):
they finish exactly the requested trials, none twice, and a worker killed mid-trial loses nothing: its
trial stops beating, is failed, run again by the survivor, and its MLflow run is marked KILLED."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime

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


def test_workers_share_a_study_and_one_killed_mid_trial_loses_nothing(tmp_path, data_dir, postgres_url,
                                                                     sqlite_store):
    env = env_for(tmp_path, data_dir)
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    MlflowTracker(env["MLFLOW_TRACKING_URI"], "tuning-random")  # one MLflow store, made before the workers start
    space = tmp_path / "space.toml"
    space.write_text("[noisy-finetune]\npause = 0.5\nepochs = 2\n")  # slow enough to be caught mid-trial

    # three "machines" start together on one study of 4 trials; c is killed while it runs a trial
    workers = {k: start_worker(tmp_path, env, postgres_url, "shared", 4, f"machine-{k}", "--space", str(space))
               for k in "abc"}
    deadline, victim, storage = time.monotonic() + 90, None, None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        storage = storage or optuna.storages.RDBStorage(postgres_url)  # one connection pool: a poll is one query
        try:
            running = optuna.load_study(study_name="shared", storage=storage).get_trials(
                states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            continue
        # a trial c started moments ago: it has at least 0.5 s of pauses left, so it is killed mid-trial
        victim = next((t for t in running if str(t.user_attrs.get("worker", "")).startswith("machine-c:")
                       and t.user_attrs.get("mlflow_run_id")
                       and (datetime.now() - t.datetime_start).total_seconds() < 0.5), None)
    assert victim is not None, "worker c never ran a trial"
    os.kill(workers["c"].pid, signal.SIGKILL)
    finish(workers["c"])
    for k in "ab":
        out = finish(workers[k])
        assert workers[k].returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = {t.number: t for t in study.get_trials() if not t.user_attrs.get("surplus")}
    assert trials[victim.number].state.name == "FAIL"
    complete = [t for t in trials.values() if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len(trials) == 5  # exactly the 4 asked for, plus the killed one
    assert len({t.user_attrs["mlflow_run_id"] for t in complete}) == 4  # none ran twice
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params
    assert {t.user_attrs["worker"].split(":")[0] for t in complete} <= {"machine-a", "machine-b", "machine-c"}

    # every worker's runs nest under the study's one parent; the killed trial's run is KILLED, not RUNNING
    runs = children(env, study.user_attrs["mlflow_parent_run_id"]).set_index("run_id")
    assert set(runs.index) == {t.user_attrs["mlflow_run_id"] for t in trials.values()}
    assert runs.loc[victim.user_attrs["mlflow_run_id"], "status"] == "KILLED"
    assert (runs.loc[[t.user_attrs["mlflow_run_id"] for t in complete], "status"] == "FINISHED").all()
