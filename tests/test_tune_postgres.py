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

from .support import UNLEARN, env_for

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

    # three "machines" start together on one study of 4 trials; one is killed while it runs a trial
    workers = {k: start_worker(tmp_path, env, postgres_url, "shared", 4, f"machine-{k}", "--space", str(space))
               for k in "abc"}
    deadline, victim, watched, seen, polled = time.monotonic() + 90, None, None, set(), None
    storage = optuna.storages.RDBStorage(postgres_url)  # one connection pool: a poll is one query
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        began = time.monotonic()
        try:
            watched = watched or optuna.load_study(study_name="shared", storage=storage)
        except KeyError:  # the study is not created yet
            polled = began
            continue
        running = watched.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        started = {t.number: t for t in running if t.user_attrs.get("mlflow_run_id")}
        # A trial whose MLflow run appeared since the previous poll began, less than 0.5 s ago: its worker is
        # before its 2 x 0.5 s of pauses, so it is killed mid-trial (a loaded machine only makes polls rarer:
        # a trial seen late is let go, and the next one is watched).
        if polled is not None and time.monotonic() - polled < 0.5:
            victim = next((t for n, t in started.items() if n not in seen), None)
        seen |= set(started)
        polled = began
    assert victim is not None, "no worker was seen starting a trial"
    host = victim.user_attrs["worker"].split(":")[0].removeprefix("machine-")
    os.kill(workers[host].pid, signal.SIGKILL)
    finish(workers[host])
    for k in set(workers) - {host}:
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
