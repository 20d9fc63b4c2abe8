"""A method whose model blows up (finite weights, non-finite outputs: what an unbounded ascent can reach)
fails its own cell with that reason, and the run goes on to the next method with unchanged numbers."""
from __future__ import annotations

import torch

from harness import Int, hookimpl
from harness.host import discover
from harness.runner import run
from harness.spec import configure
from harness.tracking import FAILED, FINISHED, MemoryTracker


class Overflowing:
    @staticmethod
    def fn(model, data, params, ctx):
        head = list(model.modules())[-1]  # the tiny CNN's last Linear
        with torch.no_grad():
            head.weight.fill_(3e38)  # finite, but a sum of such products is inf in float32
        return model.eval()

    @hookimpl
    def register_methods(self, register):
        register("overflowing", Overflowing.fn, space={"epochs": Int(1, 1, default=1)})


def test_non_finite_outputs_fail_their_cell_and_the_next_method_runs_as_alone(npz_dir, tmp_path):
    host = discover(extra_plugins=[("overflowing", Overflowing())])
    settings = dict(profile="smoke", model="tiny-cnn", data_dir=str(npz_dir), cache_dir=str(tmp_path),
                    show_progress=False, params={"simple": {"epochs": 1}}, attacks=["mia"])
    alone = run(*configure(methods=["simple"], **settings), host, MemoryTracker())
    tracker = MemoryTracker()
    both = run(*configure(methods=["overflowing", "simple"], **settings), host, tracker)
    status = {r.tags.get("method"): r.status for r in tracker.runs if "mlflow.parentRunId" in r.tags}
    assert status == {"original": FINISHED, "retrain": FINISHED, "overflowing": FAILED, "simple": FINISHED}
    error = next(f["error"] for f in both.failures if f["method"] == "overflowing")
    assert "non-finite outputs" in error, error
    mine = next(r for r in both.rows if r["method"] == "simple")
    theirs = next(r for r in alone.rows if r["method"] == "simple")
    for key in ("acc_forget", "acc_retain", "acc_test", "mia/auc"):
        assert mine[key] == theirs[key], key
