"""The runner end to end on synthetic CIFAR-shaped data, the tiny CNN and the in-memory tracker: logging,
caching, failure isolation, interruption and resume."""
import sys

import pytest
import torch

from harness import Int, Metric, hookimpl
from harness.cache import ModelCache
from harness.host import discover
from harness.runner import run
from harness.spec import configure
from harness.tracking import FAILED, FINISHED, KILLED, MemoryTracker

STATE = {"interrupt": False}


class TestPlugin:
    """Methods and attacks that misbehave the ways third-party code was seen to."""

    @hookimpl
    def register_methods(self, register):
        space = {"epochs": Int(1, 2, default=1)}

        def broken(model, data, params, ctx):
            raise RuntimeError("this method is broken")

        def interruptible(model, data, params, ctx):
            if STATE["interrupt"]:
                raise KeyboardInterrupt
            return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

        def not_a_model(model, data, params, ctx):
            return {"weights": 1}

        def zero_images(model, data, params, ctx):
            data.dataset.images.zero_()  # writes into the shared tensor
            return ctx.fit(model, data.retain, epochs=1, lr=0.01)

        def exits(model, data, params, ctx):
            sys.exit(0)

        def nan_weights(model, data, params, ctx):
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
            return model.eval()

        for name, fn in [("broken", broken), ("interruptible", interruptible), ("not-a-model", not_a_model),
                         ("zero-images", zero_images), ("exits", exits), ("nan-weights", nan_weights)]:
            register(name, fn, space=space)

    @hookimpl
    def register_attacks(self, register):
        def always_fails(inputs, params):
            raise ValueError("this attack is broken")

        def shadows(inputs, params):
            return {"acc_forget": -1.0}

        register("always-fails", always_fails, metrics={"score": Metric(target=0.5)})
        register("shadows", shadows, metrics={"acc_forget": Metric(label="shadow")})


@pytest.fixture(scope="module")
def host():
    return discover(extra_plugins=[("test-plugin", TestPlugin())])


def config(npz_dir, cache, **kw):
    base = dict(methods=["simple"], profile="smoke", model="tiny-cnn", data_dir=str(npz_dir), cache_dir=str(cache),
                show_progress=False, params={"simple": {"epochs": 2}}, attacks=["mia"])
    return configure(**{**base, **kw})


def children(tracker):
    return [r for r in tracker.runs if "mlflow.parentRunId" in r.tags]


def child(tracker, name):
    return next(r for r in children(tracker) if r.name == name)


def test_run_logs_parent_children_params_curves_and_metrics(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    result = run(*config(npz_dir, tmp_path, seeds=[0, 1]), host, tracker)
    parent = tracker.runs[0]
    assert parent.status == FINISHED and parent.tags["run_kind"] == "parent"
    assert {"results.json", "config.json", "cells.json"} <= set(parent.artifacts)
    assert {"forget_examples/random-seed0.png", "forget_examples/random-seed1.png"} <= set(parent.artifacts)
    assert [c["method"] for c in parent.artifacts["cells.json"]] == ["original", "retrain", "simple"] * 2
    assert parent.artifacts["config.json"]["metrics"]["mia"]["auc"]["target"] == 0.5  # declarations travel with the run
    names = sorted(r.name for r in children(tracker))
    assert names == sorted(f"{m} seed={s}" for m in ("original", "retrain", "simple") for s in (0, 1))
    simple = child(tracker, "simple seed=0")
    assert simple.status == FINISHED and len(simple.tags["cell_hash"]) == 16
    assert simple.params["epochs"] == "2" and simple.params["split_hash"] == result.split_hashes[("random", 0)]
    assert simple.tags["method"] == "simple" and simple.tags["seed"] == "0" and "harness_version" in simple.tags
    assert [step for step, _ in simple.metrics["epoch_acc_forget"]] == [1, 2]  # per-epoch curve, step = epoch
    for key in ("acc_retain", "acc_forget", "acc_validation", "acc_test", "forget_val_ratio", "mia/auc",
                "mia/signed_auc", "unlearn_seconds", "retrain_seconds", "pct_retrain_time", "gap_acc_forget"):
        assert key in simple.metrics, key
    original = child(tracker, "original seed=0")
    assert any(k.startswith("model/") for k in original.artifacts) and original.metrics["train_loss"]
    retrain = child(tracker, "retrain seed=0")
    assert retrain.last("pct_retrain_time") == 100.0 and retrain.last("retrain_seconds_recorded") > 0
    summary = result.summary()
    assert list(summary.index) == ["original", "retrain", "simple"] and (summary["seeds"] == 2).all()


def test_models_are_cached_and_results_repeatable(npz_dir, tmp_path, host):
    first, second = MemoryTracker(), MemoryTracker()
    a = run(*config(npz_dir, tmp_path), host, first)
    b = run(*config(npz_dir, tmp_path), host, second)
    assert child(first, "original seed=0").tags["cached"] == "False"
    assert child(second, "original seed=0").tags["cached"] == "True"
    fresh = run(*config(npz_dir, tmp_path / "other-cache"), host, MemoryTracker())
    for other in (b, fresh):  # same seed: same split and, on the CPU, the same metrics
        for row_a, row_b in zip(a.rows, other.rows):
            assert row_a["acc_forget"] == row_b["acc_forget"] and row_a["mia/auc"] == row_b["mia/auc"]


def test_retrain_time_is_measured_now_not_recalled(npz_dir, tmp_path, host):
    """A cached retrain that claims it took 1000x longer does not make a method look 1000x cheaper."""
    honest = run(*config(npz_dir, tmp_path), host, MemoryTracker())
    cache = ModelCache(tmp_path / "models")
    for path in cache.root.glob("*.pt"):
        blob = torch.load(path, weights_only=True)
        blob["meta"]["train_seconds"] *= 1000
        torch.save(blob, path)
    tracker = MemoryTracker()
    tampered = run(*config(npz_dir, tmp_path), host, tracker)
    row = {r["method"]: r for r in tampered.rows}
    base = {r["method"]: r for r in honest.rows}
    assert row["retrain"]["retrain_seconds_recorded"] == pytest.approx(
        1000 * base["retrain"]["retrain_seconds_recorded"])
    assert row["simple"]["retrain_seconds"] < 20 * base["simple"]["retrain_seconds"]  # timed now, not read back
    assert row["simple"]["pct_retrain_time"] == pytest.approx(
        100 * row["simple"]["unlearn_seconds"] / row["simple"]["retrain_seconds"])


def test_failing_methods_are_isolated_with_their_reason(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    methods = ["broken", "not-a-model", "exits", "nan-weights", "simple"]
    result = run(*config(npz_dir, tmp_path, methods=methods), host, tracker)
    status = {r.name: r.status for r in children(tracker)}
    assert [status[f"{m} seed=0"] for m in methods] == [FAILED] * 4 + [FINISHED]
    errors = {f["method"]: f["error"] for f in result.failures}
    assert "this method is broken" in errors["broken"]
    assert "expected a torch.nn.Module" in errors["not-a-model"]
    assert "called sys.exit(0)" in errors["exits"]
    assert "non-finite weights" in errors["nan-weights"]
    assert all(f["run_id"] and "traceback.txt" in f["where"] for f in result.failures)
    assert "this method is broken" in child(tracker, "broken seed=0").artifacts["traceback.txt"]
    assert tracker.runs[0].status == FAILED


def test_a_method_that_zeroes_the_shared_images_fails_and_spoils_nothing(npz_dir, tmp_path, host):
    clean = run(*config(npz_dir, tmp_path), host, MemoryTracker())
    tracker = MemoryTracker()
    spoiled = run(*config(npz_dir, tmp_path, methods=["zero-images", "simple"]), host, tracker)
    assert child(tracker, "zero-images seed=0").status == FAILED
    assert "modified the shared images" in spoiled.failures[0]["error"]
    after = next(r for r in spoiled.rows if r["method"] == "simple")
    before = next(r for r in clean.rows if r["method"] == "simple")
    assert after["acc_forget"] == before["acc_forget"] and after["loss_retain"] == before["loss_retain"]


def test_attack_failures_are_failures_and_attack_metrics_are_namespaced(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    result = run(*config(npz_dir, tmp_path, attacks=["mia", "always-fails", "shadows"]), host, tracker)
    failing = [f for f in result.failures if "always-fails" in f["error"]]
    assert len(failing) == 3 and "this attack is broken" in failing[0]["error"]  # original, retrain, simple
    assert tracker.runs[0].status == FAILED
    simple = child(tracker, "simple seed=0")
    assert simple.status == FINISHED and "attack_errors/always-fails.txt" in simple.artifacts
    assert simple.last("shadows/acc_forget") == -1.0 and simple.last("acc_forget") >= 0  # no overwrite
    assert "shadows/acc_forget" in result.summary().columns


def test_interrupt_marks_killed_and_resume_skips_finished_cells(npz_dir, tmp_path, host):
    tracker = MemoryTracker()
    cfg = config(npz_dir, tmp_path, methods=["simple", "interruptible"], seeds=[0, 1])
    STATE["interrupt"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run(*cfg, host, tracker)
    finally:
        STATE["interrupt"] = False
    assert tracker.runs[0].status == KILLED
    assert [r.name for r in children(tracker) if r.status == KILLED] == ["interruptible seed=0"]
    finished_before = {r.name for r in children(tracker) if r.status == FINISHED}
    assert finished_before == {"original seed=0", "retrain seed=0", "simple seed=0"}

    result = run(*cfg, host, tracker)  # the same command again
    parents = [r for r in tracker.runs if r.tags.get("run_kind") == "parent"]
    assert len(parents) == 1 and parents[0].status == FINISHED
    rerun = [r.name for r in children(tracker)][len(finished_before) + 1:]
    assert "simple seed=0" not in rerun and "interruptible seed=0" in rerun and "simple seed=1" in rerun
    assert len(result.rows) == 8  # 4 per seed, the reused ones included


def test_resume_against_a_real_mlflow_sqlite_store(npz_dir, tmp_path, host, sqlite_store):
    """The same interruption and resume, through MLflow: one parent, each cell FINISHED once, results
    rewritten (not appended) and the report's rows read back from the store."""
    from harness.tracking import MlflowStore, MlflowTracker

    uri = sqlite_store(tmp_path / "store" / "mlflow.db")
    cfg = config(npz_dir, tmp_path, methods=["simple", "interruptible"], tracking_uri=uri)
    STATE["interrupt"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run(*cfg, host, MlflowTracker(uri, "resume-test"))
    finally:
        STATE["interrupt"] = False
    result = run(*cfg, host, MlflowTracker(uri, "resume-test"))
    store = MlflowStore(uri)
    parent_id = store.latest_parent("resume-test")
    assert parent_id == result.parent_run_id and store.parent(parent_id)["status"] == FINISHED
    rows = store.rows(parent_id)
    finished = sorted(r["method"] for r in rows if r["status"] == FINISHED)
    assert finished == ["interruptible", "original", "retrain", "simple"] and len(rows) == 4  # each cell once
    killed = store.client.search_runs([store.parent(parent_id)["experiment_id"]], "attributes.status = 'KILLED'")
    assert [r.data.tags["method"] for r in killed] == ["interruptible"]  # kept in the store, not reported
    table = store.load_json(parent_id, "results.json")
    assert len(table["data"]) == 4 and "mia/auc" in table["columns"]


@pytest.mark.slow
def test_resume_refuses_a_run_whose_owner_is_alive_and_adopts_a_dead_one(npz_dir, tmp_path, host):
    """A live run is never adopted (it would run every remaining cell twice); a RUNNING one whose process is
    gone is, and its orphan cells are marked KILLED."""
    import os
    import subprocess
    import sys

    from harness.owners import host_key
    from harness.plan import plan
    from harness.runner import RunInProgress, Runner, owner_alive

    tracker = MemoryTracker()
    p = plan(*config(npz_dir, tmp_path), host)
    parent = tracker.start_parent("x", {"run_kind": "parent", "config_hash": p.hash,
                                        "owner": f"{host_key()}:{os.getpid()}"})
    orphan = tracker.start_child(parent, "cell", {"cell_hash": "h"})
    with pytest.raises(RunInProgress, match="is still running"):
        Runner(p, tracker).run()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    parent.set_tags({"owner": f"{host_key()}:{dead.stdout.strip()}"})
    assert not owner_alive(parent.tags)
    Runner(p, tracker).run()
    assert orphan.status == KILLED and parent.status == "FINISHED"
    # another host: alive while its heartbeat is fresh
    assert owner_alive({"owner": "elsewhere:1", "heartbeat": "100"}, now=150)
    assert not owner_alive({"owner": "elsewhere:1", "heartbeat": "100"}, now=100 + 10_000)


def test_rerun_skips_cells_finished_under_any_parent_and_rerun_forces(npz_dir, tmp_path, host, sqlite_store):
    """Cells are found by hash in the experiment, not through 'the newest parent': the same command again
    runs nothing, a larger benchmark runs only its new cells, and --rerun runs everything again."""
    from collections import Counter

    from harness.tracking import MlflowStore, MlflowTracker

    uri = sqlite_store(tmp_path / "store" / "mlflow.db")
    small = config(npz_dir, tmp_path, methods=["simple"], tracking_uri=uri)
    first = run(*small, host, MlflowTracker(uri, "cells"))
    again = run(*small, host, MlflowTracker(uri, "cells"))
    store = MlflowStore(uri)
    experiment = store.parent(first.parent_run_id)["experiment_id"]

    def finished_per_cell():
        runs = store.client.search_runs([experiment], "tags.run_kind = 'child' and attributes.status = 'FINISHED'")
        return Counter(r.data.tags["cell_hash"] for r in runs)

    assert again.parent_run_id == first.parent_run_id and sum(finished_per_cell().values()) == 3
    larger = run(*config(npz_dir, tmp_path, methods=["simple", "rotate"], seeds=[0, 1], tracking_uri=uri), host,
                 MlflowTracker(uri, "cells"))
    counts = finished_per_cell()
    assert larger.parent_run_id != first.parent_run_id and len(counts) == 8 and set(counts.values()) == {1}
    rows = store.rows(larger.parent_run_id)
    assert len(rows) == 8 and {r["status"] for r in rows} == {FINISHED}
    reused = {r["run_id"] for r in first.rows}
    assert {r["run_id"] for r in rows if r["seed"] == 0 and r["method"] != "rotate"} == reused
    forced = run(*config(npz_dir, tmp_path, methods=["simple"], tracking_uri=uri, rerun=True), host,
                 MlflowTracker(uri, "cells"))
    assert forced.parent_run_id not in (first.parent_run_id, larger.parent_run_id)
    assert not reused & {r["run_id"] for r in forced.rows} and max(finished_per_cell().values()) == 2
