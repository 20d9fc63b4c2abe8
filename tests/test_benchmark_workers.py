"""One benchmark, several workers, through a real PostgreSQL server started by the test: the cells are
queued in an Optuna study, runs go to an MLflow store on the same server, and a worker SIGKILLed mid-cell
loses nothing: its cell stops beating, is queued again and run by the survivor; every cell is FINISHED
exactly once and nothing is left RUNNING."""
from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from .postgres import create_database
from .support import UNLEARN, env_for, wait_for

pytestmark = pytest.mark.integration
BENCH = ["--profile", "smoke", "--model", "tiny-cnn", "--seeds", "0,1", "--methods", "simple,noisy-finetune",
         "--param", "simple.epochs=1", "--param", "noisy-finetune.epochs=2", "--param", "noisy-finetune.pause=0.75",
         "--attacks", "mia", "--quiet", "--heartbeat", "1"]


def start(args, env, cwd, host):
    return subprocess.Popen([*UNLEARN, *args], env={**env, "HARNESS_WORKER_HOST": host, "OMP_NUM_THREADS": "1"},
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_workers_one_killed_mid_cell_every_cell_done_once(tmp_path, data_dir, postgres_url):
    tag = uuid.uuid4().hex[:8]
    queue = create_database(postgres_url, f"queue_{tag}")
    store = create_database(postgres_url, f"mlflow_{tag}")
    env = {**env_for(tmp_path, data_dir), "MLFLOW_TRACKING_URI": store}
    # the worker starts with the publisher and waits for the benchmark to appear (its --wait)
    workers = {"machine-a": start(["run", *BENCH, "--benchmark", "b", "--storage", queue], env, tmp_path, "machine-a"),
               "machine-b": start(["worker", "--benchmark", "b", "--storage", queue, "--heartbeat", "1", "--quiet"],
                                  env, tmp_path, "machine-b")}

    def alive():
        for host, proc in workers.items():
            if proc.poll() is not None:
                raise AssertionError(f"{host} ended before anything was killed:\n{proc.stdout.read()[-3000:]}")
        return True

    wait_for(lambda: alive() and "b" in [s.study_name for s in optuna.get_all_study_summaries(queue)]
             and optuna.load_study(study_name="b", storage=queue).user_attrs.get("kind"), "the benchmark")
    study = optuna.load_study(study_name="b", storage=queue)
    client = mlflow.MlflowClient(store)

    def worker_mid_slow_cell():
        """The host of a worker inside a slow cell (its MLflow run started, its pauses under way): whichever
        worker took one (which does is a race)."""
        alive()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("method") == "noisy-finetune" and "worker" in t.user_attrs:
                runs = client.search_runs(
                    [e.experiment_id for e in client.search_experiments()],
                    f"tags.cell_hash = '{t.user_attrs['cell_hash']}' and attributes.status = 'RUNNING'")
                if runs:
                    return t.user_attrs["worker"].split(":")[0]
        return None

    victim = wait_for(worker_mid_slow_cell, "a worker to start a slow cell", poll=0.05)
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait(timeout=30)
    survivor = next(proc for host, proc in workers.items() if host != victim)
    out, _ = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, out[-3000:]

    trials = study.get_trials(deepcopy=False)
    complete = Counter(t.params["cell"] for t in trials if t.state == TrialState.COMPLETE)
    assert len(complete) == 8 and set(complete.values()) == {1}, complete  # 2 seeds x (original, retrain, 2 methods)
    failed = [t for t in trials if t.state == TrialState.FAIL and "cell_hash" in t.user_attrs]
    assert [t.user_attrs["method"] for t in failed] == ["noisy-finetune"]  # the killed cell, queued again
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["unlearning-random"], output_format="pandas")
    children = runs[runs["tags.run_kind"] == "child"]
    finished = children[children["status"] == "FINISHED"]
    assert len(finished) == 8 and finished["tags.cell_hash"].nunique() == 8
    assert "RUNNING" not in set(children["status"])
    assert children[children["status"] == "KILLED"]["tags.method"].tolist() == ["noisy-finetune"]
    assert runs[runs["tags.run_kind"] == "parent"]["status"].tolist() == ["FINISHED"]
    assert (tmp_path / "cache").exists()
