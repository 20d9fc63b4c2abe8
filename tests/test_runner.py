"""The runner end to end on synthetic CIFAR-shaped data with the in-memory tracker (no MLflow store)."""
import numpy as np
import pytest

from harness import Int, hookimpl
from harness.host import discover
from harness.runner import RunConfig, UsageError, plan, run
from harness.tracking import FAILED, FINISHED, KILLED, MemoryTracker

from .conftest import synthetic_arrays

STATE = {"interrupt": False}


class TestPlugin:
    @hookimpl
    def register_methods(self, register):
        def broken(model, data, params, ctx):
            raise RuntimeError("this method is broken")

        def interruptible(model, data, params, ctx):
            if STATE["interrupt"]:
                raise KeyboardInterrupt
            return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

        def not_a_model(model, data, params, ctx):
            return {"weights": 1}

        register("broken", broken, space={"epochs": Int(1, 2, default=1)})
        register("interruptible", interruptible, space={"epochs": Int(1, 2, default=1)})
        register("not-a-model", not_a_model, space={"epochs": Int(1, 2, default=1)})


@pytest.fixture(scope="module")
def host():
    return discover(extra_plugins=[("test-plugin", TestPlugin())])


@pytest.fixture(scope="module")
def npz_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    np.savez(path / "cifar10.npz", **synthetic_arrays(500, 450))
    return path


def config(npz_dir, cache, **kw):
    base = dict(methods=["simple"], profile="smoke", data_dir=str(npz_dir), cache_dir=str(cache),
                show_progress=False, method_params={"simple": {"epochs": 2}})
    return RunConfig(**{**base, **kw})


def children(tracker):
    return [r for r in tracker.runs if "mlflow.parentRunId" in r.tags]


def test_run_logs_parent_children_params_curves_and_metrics(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    result = run(config(npz_dir, tmp_path, seeds=[0, 1]), host, tracker)
    parent = tracker.runs[0]
    assert parent.status == FINISHED and parent.tags["run_kind"] == "parent"
    assert {"results.json", "summary.csv", "config.json", "summary.png"} <= set(parent.artifacts)
    names = sorted(r.name for r in children(tracker))
    assert names == sorted(f"{m} seed={s}" for m in ("original", "retrain", "simple") for s in (0, 1))
    simple = next(r for r in children(tracker) if r.name == "simple seed=0")
    assert simple.status == FINISHED
    assert simple.params["epochs"] == "2" and simple.params["split_hash"] == result.split_hashes[0]
    assert simple.tags["method"] == "simple" and simple.tags["seed"] == "0" and "harness_version" in simple.tags
    assert [step for step, _ in simple.metrics["epoch_acc_forget"]] == [1, 2]  # per-epoch curve, step = epoch
    for key in ("acc_retain", "acc_forget", "acc_validation", "acc_test", "forget_val_ratio", "mia_auc",
                "mia_signed_auc", "unlearn_seconds", "pct_retrain_time", "gap_acc_forget"):
        assert key in simple.metrics, key
    original = next(r for r in children(tracker) if r.name == "original seed=0")
    assert any(k.startswith("model/") for k in original.artifacts) and original.metrics["train_loss"]
    summary = result.summary()
    assert list(summary.index) == ["original", "retrain", "simple"] and (summary["seeds"] == 2).all()


def test_models_are_cached_and_repeatable(npz_dir, tmp_path, host):
    first, second = MemoryTracker(), MemoryTracker()
    a = run(config(npz_dir, tmp_path), host, first)
    b = run(config(npz_dir, tmp_path), host, second)
    assert children(first)[0].tags["cached"] == "False" and children(second)[0].tags["cached"] == "True"
    fresh = run(config(npz_dir, tmp_path / "other-cache"), host, MemoryTracker())
    for other in (b, fresh):  # same seed: same split and, on CPU, the same metrics
        for row_a, row_b in zip(a.rows, other.rows):
            assert row_a["acc_forget"] == row_b["acc_forget"] and row_a["mia_auc"] == row_b["mia_auc"]


def test_failing_method_is_isolated(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    result = run(config(npz_dir, tmp_path, methods=["broken", "not-a-model", "simple"]), host, tracker)
    status = {r.name: r.status for r in children(tracker)}
    assert status["broken seed=0"] == FAILED and status["not-a-model seed=0"] == FAILED
    assert status["simple seed=0"] == FINISHED
    broken = next(r for r in children(tracker) if r.name == "broken seed=0")
    assert "this method is broken" in broken.artifacts["traceback.txt"]
    assert tracker.runs[0].status == FAILED
    assert {f["method"] for f in result.failures} == {"broken", "not-a-model"}
    assert "expected a torch.nn.Module" in next(f["error"] for f in result.failures if f["method"] == "not-a-model")


def test_interrupt_marks_killed_and_resume_skips_finished(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    cfg = config(npz_dir, tmp_path, methods=["simple", "interruptible"], seeds=[0, 1])
    STATE["interrupt"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cfg, host, tracker)
    finally:
        STATE["interrupt"] = False
    assert tracker.runs[0].status == KILLED
    killed = [r for r in children(tracker) if r.status == KILLED]
    assert [r.name for r in killed] == ["interruptible seed=0"]
    finished_before = {r.name for r in children(tracker) if r.status == FINISHED}
    assert finished_before == {"original seed=0", "retrain seed=0", "simple seed=0"}

    cfg.resume = True
    result = run(cfg, host, tracker)
    assert tracker.runs[0].status == FINISHED and len([r for r in tracker.runs if r.tags.get("run_kind") == "parent"]) == 1
    rerun = [r.name for r in children(tracker)][len(finished_before) + 1:]
    assert "simple seed=0" not in rerun and "interruptible seed=0" in rerun and "simple seed=1" in rerun
    assert len(result.rows) == 8  # 4 per seed, the reused ones included


@pytest.mark.parametrize("kw, message", [
    (dict(methods=["simpel"]), "unknown method 'simpel'. Did you mean 'simple'?"),
    (dict(scenario="nope"), "Valid scenarios: class, random"),
    (dict(profile="huge"), "Valid profiles: cpu, paper, smoke"),
    (dict(model="vgg"), "Valid models: resnet18"),
    (dict(attacks=["lira"]), "Valid attacks: mia"),
    (dict(method_params={"simple": {"epochs": 0}}), r"simple.*epochs=0 is out of range"),
    (dict(method_params={"rotate-x": {"epochs": 1}}), "not in this run: rotate-x"),
])
def test_bad_input_is_refused_before_any_work(kw, message, host, tmp_path):
    with pytest.raises(UsageError, match=message):
        plan(config("/nonexistent", tmp_path, **kw), host)


def test_retrain_is_always_the_first_method(host, tmp_path):
    p = plan(config("/x", tmp_path, methods=["simple", "retrain"]), host)
    assert [m.name for m in p.methods] == ["retrain", "simple"]
