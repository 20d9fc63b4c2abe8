"""A tuning space whose values are each in range but not together (the method's own `check`): such a trial
is a failed trial with the reason, no cell is trained for it, and the study goes on to its other trials."""
from __future__ import annotations

import optuna
import pytest

from harness import hookimpl
from harness.host import discover
from harness.params import Int
from harness.spec import configure
from harness.tracking import MemoryTracker
from harness.tuning import TuneConfig, tune

pytestmark = pytest.mark.integration


class Paired:
    """`epochs` and `twice` go together only when twice == 2 * epochs (the default 1, 2 does)."""

    @staticmethod
    def fn(model, data, params, ctx):
        return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

    @staticmethod
    def check(params):
        if params["twice"] != 2 * params["epochs"]:
            raise ValueError(f"twice={params['twice']} must be 2 * epochs={params['epochs']}")

    @hookimpl
    def register_methods(self, register):
        register("paired", Paired.fn, check=Paired.check,
                 space={"epochs": Int(1, 1, default=1), "twice": Int(1, 3, default=2)})


def test_a_jointly_invalid_sample_is_a_failed_trial_and_the_study_goes_on(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = discover([("paired", Paired())])
    spec, site = configure(methods=["paired"], profile="smoke", model="tiny-cnn", data_dir=str(data_dir),
                           cache_dir=str(tmp_path / "cache"), show_progress=False)
    storage = f"sqlite:///{tmp_path}/s.db"
    config = TuneConfig(spec, site, trials=6, holdout_seeds=[], time_budget=1e6, storage=storage)
    tracker = MemoryTracker()
    tune(config, host, tracker)
    trials = optuna.load_study(study_name="paired-random-smoke", storage=storage).get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert {t.params["twice"] for t in failed} <= {1, 3} and {t.params["twice"] for t in complete} == {2}
    assert failed and complete, [(t.state.name, t.params) for t in trials]
    for trial in failed:
        assert "must be 2 * epochs=1" in trial.user_attrs["error"]
        assert "mlflow_run_id" not in trial.user_attrs  # nothing was started for it
    trial_runs = [r for r in tracker.runs if r.tags.get("run_kind") == "trial"]
    assert len(trial_runs) == len(complete)
    assert len([t for t in trials if t.state.name in ("COMPLETE", "FAIL")]) == 6
