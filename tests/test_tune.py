"""`unlearn tune` on a slice of the real CIFAR-10 copy (smoke profile, the example plugin's tiny CNN and
method): a study end to end into MLflow, its export re-run by `unlearn run --config`, continuing a study,
Ctrl-C, and every bad input refused before anything is created."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from unittest import mock

import mlflow
import optuna
import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.cli import main
from harness.host import default_host, discover
from harness.params import Int
from harness.spec import configure
from harness.tracking import MemoryTracker
from harness.tuning import TuneConfig, tune

from .support import cli_in_process, in_process

pytestmark = pytest.mark.integration
# Smoke trials are timed against a 1-epoch retrain: a budget that every trial meets.
TUNE = ["tune", "--method", "noisy-finetune", "--model", "tiny-cnn", "--profile", "smoke", "--time-budget", "1e6",
        "--quiet"]


def study_trials(tmp: Path, name: str = "noisy-finetune-random-smoke"):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp / "mlruns" / "optuna-journal.log")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def cli(*args) -> str:
    """`unlearn ARGS` in this process (the environment and folder set by the caller); its output."""
    with mock.patch.object(sys, "argv", ["unlearn", *args]):  # as the console script would see it
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def test_a_study_end_to_end_then_its_export_runs(tmp_path, data_dir, monkeypatch, sqlite_store, capfd, caplog):
    env = in_process(monkeypatch, tmp_path, data_dir)
    sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    # two local workers share the study through a journal file: this process (the launcher, through
    # CliRunner) and a worker process it starts; the launcher then judges and exports. The space file keeps
    # the sampled epochs at 1-2 (declared: 1-20), so no trial or held-out run trains long.
    (tmp_path / "space.toml").write_text("[noisy-finetune]\nepochs = {low = 1, high = 2}\n")
    args = [*TUNE, "--trials", "3", "--holdout-seeds", "1", "--export", "best.toml", "--workers", "2",
            "--space", "space.toml"]
    with caplog.at_level("INFO", logger="harness"):
        proc = cli_in_process(monkeypatch, *args)
    assert proc.exit_code == 0, proc.stderr[-3000:]
    worker_err = capfd.readouterr().err  # the worker process writes its trials' lines to the inherited stderr
    assert "verdict:" in proc.stdout and (proc.stderr + worker_err).count(" COMPLETE: ") == 3  # one line per trial
    assert re.search(r"2 workers with \d+ torch thread\(s\) each", caplog.text)

    trials = study_trials(tmp_path)
    assert len({t.user_attrs["worker"] for t in trials}) <= 2
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    defaults = default_host().methods.get("noisy-finetune").defaults
    assert trials[0].user_attrs["baseline"] == "defaults" and \
        all(trials[0].params[k] == defaults[k] for k in trials[0].params)
    assert all(t.user_attrs.get("mlflow_run_id") for t in trials)

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["tuning-random"], output_format="pandas")
    parent = runs[runs["tags.run_kind"] == "study"]
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    assert parent.iloc[0]["tags.study_name"] == "noisy-finetune-random-smoke"
    assert parent.iloc[0]["tags.study_storage"].endswith("optuna-journal.log")
    parent_id = parent.iloc[0]["run_id"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent_id]
    trial_runs = children[children["tags.run_kind"] == "trial"]
    assert sorted(trial_runs["tags.trial_number"].astype(int)) == [0, 1, 2]
    assert (trial_runs["status"] == "FINISHED").all() and trial_runs["metrics.objective/ratio"].notna().all()
    assert set(trial_runs["run_id"]) == {t.user_attrs["mlflow_run_id"] for t in trials}
    client = mlflow.MlflowClient()
    cells = runs[runs["tags.mlflow.parentRunId"] == trial_runs.iloc[0]["run_id"]]  # the trial's cell, recorded
    assert len(cells) == 1 and cells.iloc[0]["tags.run_kind"] == "child" and cells.iloc[0]["tags.seed"] == "0"
    curve = client.get_metric_history(cells.iloc[0]["run_id"], "epoch_acc_forget")
    assert len(curve) == int(trial_runs.iloc[0]["params.epochs"])  # per-epoch curves
    holdout = children[children["tags.heldout_part"] == "judge"]
    assert {"original", "retrain", "default"} <= set(holdout["tags.config"])
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"tuning.json", "pareto_front.png", "optimization_history.png"} <= artifacts
    summary = mlflow.artifacts.load_dict(f"{parent.iloc[0]['artifact_uri']}/tuning.json")
    # judged on the other half of the held-out images than the trials saw
    assert summary["holdout_seeds"] == [1] and summary["tuning_seeds"] == [0]

    # the exported configuration runs as it is
    text = (tmp_path / "best.toml").read_text()
    assert 'methods = ["noisy-finetune"]' in text and "[params.noisy-finetune]" in text
    cli("run", "--config", "best.toml", "--seeds", "1", "--experiment", "from-tune", "--attacks", "none", "--quiet")
    ran = mlflow.search_runs(experiment_names=["from-tune"], output_format="pandas")
    method_run = ran[ran["tags.method"] == "noisy-finetune"].iloc[0]
    for name, value in summary["recommended_params"].items():
        assert method_run[f"params.{name}"] == str(value), name

    # the same command again continues the study: nothing left to run, the held-out runs are reused
    cli(*args)
    assert len(study_trials(tmp_path)) == 3
    after = mlflow.search_runs(experiment_names=["tuning-random"], output_format="pandas")
    assert len(after[after["tags.heldout_part"] == "judge"]) == len(holdout)

    cli("report", parent_id, "--output", "docs/tuning.md", "--title", "T")
    doc = (tmp_path / "docs" / "tuning.md").read_text()
    assert "Verdict:" in doc and "### Trials" in doc and "figures/noisy-finetune-random-smoke-pareto.png" in doc
    assert (tmp_path / "docs" / "figures" / "noisy-finetune-random-smoke-pareto.png").stat().st_size > 1000


# -- Ctrl-C ----------------------------------------------------------------------------------------------
class Interrupting:
    """A method that presses Ctrl-C during its second call, once."""

    calls = 0

    @staticmethod
    def fn(model, data, params, ctx):
        Interrupting.calls += 1
        if Interrupting.calls == 2:
            raise KeyboardInterrupt
        return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

    @hookimpl
    def register_methods(self, register):
        register("interrupting", Interrupting.fn, space={"epochs": Int(1, 3, default=1)})


def test_ctrl_c_marks_the_trial_and_the_same_command_continues(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = discover([("interrupting", Interrupting())])
    spec, site = configure(methods=["interrupting"], profile="smoke", model="tiny-cnn", data_dir=str(data_dir),
                           cache_dir=str(tmp_path / "cache"), show_progress=False)
    config = TuneConfig(spec, site, trials=3, holdout_seeds=[], time_budget=1e6, storage=f"sqlite:///{tmp_path}/s.db")
    tracker = MemoryTracker()
    with pytest.raises(KeyboardInterrupt):
        tune(config, host, tracker)
    study = optuna.load_study(study_name="interrupting-random-smoke", storage=f"sqlite:///{tmp_path}/s.db")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "FAIL"]
    parent = next(r for r in tracker.runs if r.tags.get("run_kind") == "study")
    interrupted = next(r for r in tracker.runs if r.run_id == study.get_trials()[1].user_attrs["mlflow_run_id"])
    assert interrupted.status == "KILLED" and parent.status == "KILLED"

    tune(config, host, tracker)  # the same again: the study goes on to 3 ended trials
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    trial_runs = [r for r in tracker.runs if r.tags.get("run_kind") == "trial"]
    assert [r.status for r in trial_runs] == ["FINISHED", "KILLED", "FINISHED", "FINISHED"]


# -- bad input -------------------------------------------------------------------------------------------
def _space(tmp: Path, text: str) -> str:
    path = tmp / "space.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (lambda t: ["--space", _space(t, "[deviation]\nsigma = {low = 0.1, high = 0.5}\n")], "not tuned in this run"),
    (lambda t: ["--space", _space(t, "[noisy-finetune]\nsigmaa = 0.1\n")], "unknown parameter(s) sigmaa"),
    (lambda t: ["--space", _space(t, "[noisy-finetune]\nlr = {low = 1e-6, high = 0.01}\n")], "outside the declared"),
    (lambda t: ["--space", _space(t, "[noisy-finetune]\nepochs = 2\nlr = 0.01\nnoise = 0.0\n")],
     "nothing left to tune"),
    (lambda t: ["--storage", "postgres//x"], "not a valid URL"),
    (lambda t: ["--storage", "postgresql+psycopg2://u:pw@127.0.0.1:1/db"], "unreachable"),
    (lambda t: ["--seeds", "0-1", "--holdout-seeds", "1-2"], "both tuning and held-out"),
    (lambda t: ["--attack-metric", "mia/aucc"], "no metric 'aucc'"),
    (lambda t: ["--attack-metric", "lira-offline/auc"], "cannot give the tuning signal: needs 2 reference model(s)"),
    (lambda t: ["--attack-metric", "js-retrain/js"], "cannot give the tuning signal: needs the retrain model"),
    (lambda t: ["--export", "x.toml", "--holdout-seeds", "none"], "give --holdout-seeds"),
    (lambda t: ["--trials", "0"], "at least 1"),
])
def test_bad_input_exits_2_before_anything_is_created(tmp_path, data_dir, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(main, [*TUNE, "--trials", "2", *extra(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "mlruns").exists()


def test_a_study_with_other_objectives_or_settings_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    storage = f"sqlite:///{tmp_path}/studies.db"
    optuna.create_study(study_name="one", storage=storage, directions=["minimize"])
    other = optuna.create_study(study_name="two", storage=storage, directions=["minimize", "minimize"])
    other.set_user_attr("signature", {"method": "deviation"})
    for study, message in (("one", "exists with 1 objective"), ("two", "exists with another configuration")):
        result = CliRunner().invoke(main, [*TUNE, "--trials", "2", "--storage", storage, "--study", study])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "mlruns").exists()
    assert json.loads(json.dumps(other.user_attrs)) == {"signature": {"method": "deviation"}}


def test_a_trial_over_the_time_budget_stops_at_that_epoch_and_counts_as_infeasible(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec, site = configure(methods=["noisy-finetune"], profile="smoke", model="tiny-cnn", data_dir=str(data_dir),
                           cache_dir=str(tmp_path / "cache"), show_progress=False)
    config = TuneConfig(spec, site, trials=2, holdout_seeds=[], time_budget=1e-6, storage=f"sqlite:///{tmp_path}/s.db")
    tracker = MemoryTracker()
    tune(config, tracker=tracker)
    study = optuna.load_study(study_name="noisy-finetune-random-smoke", storage=f"sqlite:///{tmp_path}/s.db")
    for trial in study.get_trials():
        assert trial.state.name == "PRUNED" and trial.constraints["time"] > 0  # the sampler sees it infeasible
        assert "over the time budget" in trial.user_attrs["reason"] and "after epoch 1 " in trial.user_attrs["reason"]
    runs = [r for r in tracker.runs if r.tags.get("run_kind") == "trial"]
    assert [r.status for r in runs] == ["KILLED", "KILLED"] and "time budget" in runs[0].tags["end_reason"]
    cell = next(r for r in tracker.runs if r.tags.get("mlflow.parentRunId") == runs[0].run_id)
    assert cell.status == "KILLED" and len(cell.metrics["epoch_acc_forget"]) == 1  # stopped after its first epoch
