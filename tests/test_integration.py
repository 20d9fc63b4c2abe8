"""The real thing, small: `unlearn` on a slice of the real CIFAR-10 copy (the smoke profile), logged to a
temporary MLflow store; a third-party plugin package installed with pip and discovered through its entry
point; and faults that need real processes (SIGKILL, two at once). Where the process boundary is not what
is tested, the CLI runs in this process through click's CliRunner (same code, no interpreter start-up)."""
import subprocess
import sys

import pytest

from harness.host import default_host

from .support import REPO, UNLEARN, cli_in_process, env_for, in_process, mlflow_runs

pytestmark = pytest.mark.integration


def test_every_method_through_the_cli_into_mlflow_and_a_report(tmp_path, data_dir, monkeypatch, caplog, sqlite_store):
    """Every registered method on real images (the tiny CNN: ResNet18's layers are not the point here)."""
    env = in_process(monkeypatch, tmp_path, data_dir)
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    with caplog.at_level("WARNING", logger="harness"):
        proc = cli_in_process(monkeypatch, "run", "--profile", "smoke", "--model", "tiny-cnn", "--seeds", "0",
                              "--references", "2", "--quiet")
    assert proc.exit_code == 0, proc.stderr[-3000:]
    assert "retrain" in proc.stdout and "MIA AUC" in proc.stdout and "conf. gap" in proc.stdout  # the terminal table
    assert "attack forget-quality skipped: needs 6 reference model(s), 2 available" in caplog.text

    runs = mlflow_runs(env, "unlearning-random")
    parents = runs[runs["tags.run_kind"] == "parent"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    assert set(children["tags.method"]) == {"original", "retrain", *default_host().methods.names()}
    assert (children["status"] == "FINISHED").all() and children["tags.cell_hash"].nunique() == len(children)
    for col in ("metrics.acc_forget", "metrics.acc_validation", "metrics.forget_val_ratio", "metrics.mia/auc",
                "metrics.confidence-gap/gap", "metrics.lira-offline/auc", "metrics.rmia/tpr_1pct",
                "metrics.feature-cka/cka_delta", "metrics.js-retrain/js", "metrics.zrf/zrf_diff",
                "metrics.mia-efficacy/efficacy_diff", "metrics.attack_seconds/lira-offline"):
        assert children[col].notna().all(), col
    assert (children["tags.skipped_attacks"] == "forget-quality").all()
    methods = children[~children["tags.method"].isin(["original", "retrain"])]
    assert methods["metrics.pct_retrain_time"].notna().all() and methods["metrics.retrain_seconds"].gt(0).all()
    assert methods["params.split_hash"].nunique() == 1 and methods["params.profile"].eq("smoke").all()
    import mlflow

    simple_id = children[children["tags.method"] == "simple"].iloc[0]["run_id"]
    history = mlflow.MlflowClient().get_metric_history(simple_id, "epoch_acc_forget")
    assert [m.step for m in history] == list(range(1, 6))  # simple's 5 epochs, step = epoch
    listed = mlflow.MlflowClient().list_artifacts(parents.iloc[0]["run_id"], "forget_examples")
    assert [a.path for a in listed] == ["forget_examples/random-seed0.png"]
    exposed = mlflow.artifacts.load_dict(f"runs:/{simple_id}/attacks/lira-offline/most_exposed.json")
    assert exposed["columns"][:3] == ["index", "label", "score"] and len(exposed["data"]) == 20
    assert "report: " in proc.stderr and (tmp_path / "mlruns" / "reports").exists()  # written at the end of the run

    report = tmp_path / "results.md"
    proc = cli_in_process(monkeypatch, "report", "--experiment", "unlearning-random", "--output", str(report))
    assert proc.exit_code == 0, proc.stderr[-2000:]
    text = report.read_text()
    assert ("unlearn run --profile smoke --model tiny-cnn --seeds 0 --references 2 --quiet" in text
            and "| simple | 1 |" in text)
    assert "conf. gap" in text and "`confidence-gap/gap`" in text  # a third-party metric, from its declaration
    figures = {"fig12_accuracy.png", "fig12_ratio.png", "fig13_runtime.png", "fig14_mia.png", "epoch_curves.png"}
    assert figures <= {p.name for p in (tmp_path / "results").iterdir()}  # the report's folder, beside it
    assert "![" in text and "(results/fig12_ratio.png)" in text
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(parents.iloc[0]["run_id"], "report")}
    assert {f"report/{name}" for name in figures | {"summary.csv", "report.md"}} <= logged


def test_resnet18_default_model_end_to_end(tmp_path, data_dir, monkeypatch, sqlite_store):
    """The default model through the CLI (in this process: the subprocess path is covered below)."""
    env = in_process(monkeypatch, tmp_path, data_dir)
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    result = cli_in_process(monkeypatch, "run", "--profile", "smoke", "--methods", "simple", "--param",
                            "simple.epochs=1", "--attacks", "mia", "--quiet", "--no-log-models")
    assert result.exit_code == 0, result.output[-3000:]
    runs = mlflow_runs(env, "unlearning-random")
    assert set(runs["tags.model"]) == {"resnet18"} and (runs["status"] == "FINISHED").all()


def test_third_party_plugin_is_installed_discovered_and_runs(tmp_path, data_dir, sqlite_store):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO / "tests" / "fixtures" / "harness-example-plugin")],
                   check=True, capture_output=True, timeout=300)
    env = env_for(tmp_path, data_dir, pythonpath=str(site))  # the real installed package, nothing else
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    # two processes at once (the listing reads no store): `unlearn plugins` and a run of the plugin's parts
    lister = subprocess.Popen([*UNLEARN, "plugins"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    runner = subprocess.Popen([*UNLEARN, "run", "--profile", "smoke", "--model", "tiny-cnn", "--methods",
                               "noisy-finetune", "--quiet", "--param", "noisy-finetune.epochs=1", "--attack-option",
                               "confidence-gap.against=validation"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    listing_out, listing_err = lister.communicate(timeout=120)
    run_out, run_err = runner.communicate(timeout=600)
    assert lister.returncode == 0, listing_err
    line = next(line for line in listing_out.splitlines() if line.strip().startswith("noisy-finetune"))
    assert "harness-example-plugin 0.1.0" in line
    assert "confidence-gap" in listing_out and "tiny-cnn" in listing_out

    assert runner.returncode == 0, run_err[-3000:]
    runs = mlflow_runs(env, "unlearning-random")
    mine = runs[runs["tags.method"] == "noisy-finetune"]
    assert len(mine) == 1 and mine.iloc[0]["status"] == "FINISHED"
    assert mine["metrics.confidence-gap/gap"].notna().all()


# -- faults: a dead process, two at once (SIGTERM and a live run: tests/test_cli.py, in process) -----------------------
SLOW = ["run", "--profile", "smoke", "--model", "tiny-cnn", "--seeds", "0", "--attacks", "mia", "--quiet",
        "--methods", "simple,noisy-finetune", "--param", "simple.epochs=1", "--param", "noisy-finetune.epochs=1",
        "--param", "noisy-finetune.pause=2"]


def _start_and_wait_for(env, cwd, marker: str, until=None, args=SLOW) -> subprocess.Popen:
    """Start `unlearn` and return once `marker` appears on its stderr and then `until()` holds (polled)."""
    import time

    proc = subprocess.Popen([*UNLEARN, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    for line in proc.stderr:
        if marker in line or time.time() > deadline:
            break
    while until is not None and proc.poll() is None and time.time() < deadline and not until():
        time.sleep(0.05)
    return proc


def _children(env):
    runs = mlflow_runs(env, "unlearning-random")
    if runs.empty:
        return runs, runs
    return runs[runs["tags.run_kind"] == "child"], runs[runs["tags.run_kind"] == "parent"]


def test_sigkill_at_several_points_then_rerun_runs_every_cell_once(tmp_path, data_dir, monkeypatch, sqlite_store):
    """SIGKILL leaves the parent and the cell in progress RUNNING. The same command again adopts the dead
    run (its owner's pid is gone), marks the orphan KILLED and runs what is missing; killed again at
    another point and rerun, every cell ends FINISHED exactly once and nothing is left RUNNING. (The
    processes killed are real ones; the final rerun runs in this process, which is not their owner.)"""
    import signal
    import time

    env = env_for(tmp_path, data_dir)
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")

    def slow_cell_running():
        """The slow cell's run is in the store, RUNNING: the process is inside the cell (its 2 s pause)."""
        children, _ = _children(env)
        return not children.empty and (children[children["tags.method"] == "noisy-finetune"]["status"]
                                       == "RUNNING").any()

    def a_moment_later():
        time.sleep(0.3)
        return True

    # while the reference models train (before any cell), then in the middle of the slow cell
    for marker, until in (("new run", a_moment_later), ("simple seed=0:", slow_cell_running)):
        proc = _start_and_wait_for(env, tmp_path, marker, until)
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        children, parents = _children(env)
        assert len(parents) == 1 and parents["status"].tolist() == ["RUNNING"]
    assert children[children["tags.method"] == "noisy-finetune"]["status"].tolist() == ["RUNNING"]  # the orphan
    in_process(monkeypatch, tmp_path, data_dir)
    again = cli_in_process(monkeypatch, *SLOW)
    assert again.exit_code == 0, again.stderr[-2000:]
    children, parents = _children(env)
    assert len(parents) == 1 and parents["status"].tolist() == ["FINISHED"]
    finished = children[children["status"] == "FINISHED"]
    assert sorted(finished["tags.method"]) == ["noisy-finetune", "original", "retrain", "simple"]  # each once
    assert "RUNNING" not in set(children["status"])
    assert "noisy-finetune" in set(children[children["status"] == "KILLED"]["tags.method"])


def test_two_processes_on_a_fresh_store_and_one_cache_both_finish(tmp_path, data_dir):
    """The first use of a SQLite store creates its schema: two processes doing it at once crashed in alembic
    ("table _alembic_tmp_... already exists"), and one seed was lost. Both must finish; the original is
    trained once (the cache's lock)."""
    env = env_for(tmp_path, data_dir)
    args = [*UNLEARN, "run", "--profile", "smoke", "--model", "tiny-cnn", "--methods", "simple", "--param",
            "simple.epochs=1", "--attacks", "mia", "--quiet"]
    procs = [subprocess.Popen([*args, "--seeds", str(seed)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outputs]
    trained = sum(err.count("(cached: False)") for _, err in outputs)
    assert trained == 1, "the shared original must be trained once"
    _, parents = _children(env)
    assert sorted(parents["status"]) == ["FINISHED", "FINISHED"]
