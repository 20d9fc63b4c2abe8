"""What a careless third-party plugin did to a run, reproduced as its author would meet it (smoke profile,
the real CIFAR-10 slice): each mistake now fails only the component that made it, with the reason, and
every other cell and attack gives the numbers it gives without it."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from harness import Metric, hookimpl
from harness.cli import main
from harness.host import discover
from harness.runner import run
from harness.spec import configure
from harness.tracking import MemoryTracker, MlflowStore

pytestmark = pytest.mark.integration
SMOKE = dict(profile="smoke", model="tiny-cnn", show_progress=False, params={"simple": {"epochs": 1}})


class CarelessMethods:
    """Methods that leave torch's global state changed behind them."""

    @hookimpl
    def register_methods(self, register):
        from harness import Int

        def grad_off(model, data, params, ctx):
            torch.set_grad_enabled(False)  # and never turned back on
            return model.eval()

        def float64(model, data, params, ctx):
            torch.set_default_dtype(torch.float64)
            return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

        def fewer_threads(model, data, params, ctx):
            torch.set_num_threads(1)
            return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01)

        for name, fn in (("grad-off", grad_off), ("float64", float64), ("fewer-threads", fewer_threads)):
            register(name, fn, space={"epochs": Int(1, 3, default=1)})


class ZeroingAttack:
    """An attack that zeroes the shared reference logits it reads and returns a harmless number."""

    @hookimpl
    def register_attacks(self, register):
        def zeroes(inputs, params):
            inputs.retrain.logits["forget"].zero_()
            inputs.original.logits["forget"].zero_()
            inputs.target.labels["test"][:] = 0
            return {"x": 0.0}

        def not_a_number(inputs, params):
            return {"x": float("nan")}

        register("zeroes", zeroes, metrics={"x": Metric()}, needs=("retrain",))
        register("not-a-number", not_a_number, metrics={"x": Metric()})


def _cells(result):
    return {row["method"]: row for row in result.rows}


def test_a_method_leaving_grad_mode_off_fails_alone_and_the_run_goes_on(tmp_path, data_dir, monkeypatch, sqlite_store):
    """Before: its cell failed at the retrain-cost sample, then the next method's cell the same way, and the
    run aborted with a traceback (exit 1, parent FAILED); the methods after it never ran."""
    host = discover([("careless", CarelessMethods())])
    monkeypatch.setattr("harness.plan.default_host", lambda: host)
    monkeypatch.chdir(tmp_path)
    uri = sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--model", "tiny-cnn", "--quiet",
                                       "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
                                       "--methods", "grad-off,simple", "--param", "simple.epochs=1",
                                       "--attacks", "mia", "--experiment", "careless", "--tracking-uri", uri])
    assert torch.is_grad_enabled()
    assert result.exit_code == 1, result.output  # one cell failed: the run says so, and finishes
    assert "Traceback" not in result.output
    assert "1 failure(s)" in result.output
    assert "grad-off seed=0: method 'grad-off' changed global state and did not restore it: grad enabled False " \
           "(was True)" in result.output
    store = MlflowStore(uri)
    rows = {r["method"]: r for r in store.rows(store.latest_parent("careless"))}
    assert rows["grad-off"]["status"] == "FAILED"
    assert {rows[m]["status"] for m in ("original", "retrain", "simple")} == {"FINISHED"}
    assert 0 < rows["simple"]["mia/auc"] < 1


@pytest.fixture
def several_threads():
    """At least 2 torch threads during the test (a pytest-xdist worker runs with 1), so that the careless
    method's `set_num_threads(1)` is a change."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, 2))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method, change", [("float64", "default dtype torch.float64 (was torch.float32)"),
                                            ("fewer-threads", "num threads 1 (was")])
def test_a_method_changing_global_state_spoils_no_later_cell(method, change, tmp_path, data_dir, several_threads):
    """Before: after `torch.set_default_dtype(torch.float64)` every later method FAILED with 'expected scalar
    type Double but found Float'. Now the guilty cell fails with what it changed, and the cells after it
    give exactly what they give in a run without it."""
    host = discover([("careless", CarelessMethods())])
    settings = dict(SMOKE, data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), attacks=["mia"])
    threads = torch.get_num_threads()
    clean = run(*configure(methods=["simple"], **settings), host, MemoryTracker())
    spoiled = run(*configure(methods=[method, "simple"], **settings), host, MemoryTracker())
    assert torch.get_default_dtype() == torch.float32 and torch.get_num_threads() == threads
    cells = _cells(spoiled)
    assert cells[method]["status"] == "FAILED" and [f["method"] for f in spoiled.failures] == [method]
    assert change in spoiled.failures[0]["error"]
    after = {k: v for k, v in cells["simple"].items() if "seconds" not in k and "pct" not in k and k != "run_id"}
    assert after == {k: v for k, v in _cells(clean)["simple"].items() if k in after}


def test_an_attack_editing_shared_outputs_fails_alone_and_changes_no_other_number(tmp_path, data_dir):
    """Before: an attack that zeroed `inputs.retrain.logits[...]` changed what every later attack of every
    cell reported (js-retrain's js for simple 0.704 -> 0.121, retrain's MIA-efficacy 0.925 -> 0.000), all
    FINISHED, exit 0. Now it is that attack's failure, and the other attacks' numbers are unchanged."""
    host = discover([("zeroing", ZeroingAttack())])
    settings = dict(SMOKE, methods=["simple"], data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
    clean = run(*configure(attacks=["js-retrain", "mia-efficacy", "mia"], **settings), host, MemoryTracker())
    spoiled = run(*configure(attacks=["zeroes", "js-retrain", "mia-efficacy", "mia"], **settings), host,
                  MemoryTracker())
    for name, row in _cells(spoiled).items():
        assert row["status"] == "FINISHED"
        for metric, value in _cells(clean)[name].items():
            if "/" in metric and "seconds" not in metric:
                assert row[metric] == value, (name, metric)
    errors = [f["error"] for f in spoiled.failures]
    assert len(errors) == 3 and all(e.startswith("attack zeroes failed: SharedInputChanged: attack 'zeroes' changed "
                                                 "its inputs in place") for e in errors)
    assert "retrain.logits['forget']" in errors[0] and "target.labels['test']" in errors[0]


def test_a_non_finite_attack_metric_is_that_attacks_failure_never_a_logged_nan(tmp_path, data_dir):
    host = discover([("zeroing", ZeroingAttack())])
    tracker = MemoryTracker()
    result = run(*configure(attacks=["not-a-number", "mia"], methods=["simple"], data_dir=str(data_dir),
                            cache_dir=str(tmp_path / "cache"), **SMOKE), host, tracker)
    assert all("not-a-number/x" not in row for row in result.rows)
    assert all(0 <= row["mia/auc"] <= 1 for row in result.rows)
    assert {f["error"] for f in result.failures} == {
        "attack not-a-number failed: FloatingPointError: attack 'not-a-number' returned non-finite x=nan: a metric "
        "is a number (leave out one that is undefined here; it is then not logged)"}
    assert not any(v != v for r in tracker.runs for points in r.metrics.values() for _, v in points)


def test_smoke_models_whose_logits_overflow_float16_give_finite_bank_attacks(tmp_path, data_dir):
    """Before: `--profile smoke --methods simple --references 2` (ResNet18): the smoke recipe's models reach
    logits of about 5e4 and more, the float16 logit cache turned 691 of 8,000 bank values into inf,
    lira-offline failed on every row ("Input contains infinity") and feature-cka logged NaN for the
    original as FINISHED. (The bank, the original and the retrain train as then; simple runs 1 epoch, not
    its default 5: its row is checked the same, and its training is not where the logits overflowed.)"""
    cache = tmp_path / "cache"
    result = run(*configure(methods=["simple"], profile="smoke", bank_size=2, show_progress=False,
                            attacks=["lira-offline", "feature-cka", "rmia"], data_dir=str(data_dir),
                            cache_dir=str(cache), params={"simple": {"epochs": 1}}), tracker=MemoryTracker())
    banks = [torch.load(p, weights_only=True)["logits"] for p in sorted((cache / "models").glob("*.logits.pt"))]
    assert len(banks) == 2 and max(float(b.abs().max()) for b in banks) > 65504  # beyond float16: the old inf
    assert all(b.dtype == torch.float32 and torch.isfinite(b).all() for b in banks)
    assert result.failures == []
    for row in result.rows:
        values = [v for k, v in row.items() if k.split("/")[0] in ("lira-offline", "feature-cka", "rmia")]
        assert len(values) > 20 and all(v == v and abs(v) != float("inf") for v in values), row["method"]


def test_an_old_cache_with_infinite_logits_is_recomputed_not_read(tmp_path):
    from harness.cache import ModelCache

    cache = ModelCache(tmp_path)
    with pytest.raises(ValueError, match="not all finite"):
        cache.save_logits("k", torch.arange(3), torch.tensor([[1.0, float("inf")]] * 3))
    cache._write(cache.logits_path("k"),
                 {"indices": torch.arange(2), "logits": torch.tensor([[1.0, float("inf")]] * 2)})
    assert cache.load_logits("k") is None and not cache.logits_path("k").exists()


# -- a package written for contract 1 ------------------------------------------------------------------
class ContractOnePackage:
    """What a plugin of harness 0.1 registered: a method, an attack fn(outputs) without metrics, a scenario."""

    @hookimpl
    def register_methods(self, register):
        register("old-method", lambda model, data, params, ctx: ctx.fit(model, data.retain, epochs=1, lr=0.01))

    @hookimpl
    def register_attacks(self, register):
        register("old-attack", lambda outputs: {"auc": 0.5})

    @hookimpl
    def register_scenarios(self, register):
        def first_images(pool, generator):
            return torch.arange(20)

        register("old-scenario", first_images)


def test_a_contract_1_package_keeps_its_valid_method_and_scenario(tmp_path, data_dir, monkeypatch):
    host = discover([("old-package", ContractOnePackage())])
    monkeypatch.setattr("harness.host.default_host", lambda: host)
    listing = CliRunner().invoke(main, ["plugins"])
    assert "old-method" in listing.output and "old-scenario" in listing.output
    assert "attack 'old-attack' of old-package (old-package) refused: attack 'old-attack' declares no metrics: " \
           "pass metrics={'name': harness.Metric(...)} (plugin contract 2:" in listing.output
    result = run(*configure(methods=["old-method"], scenarios=["old-scenario"], attacks=["mia"], data_dir=str(data_dir),
                            cache_dir=str(tmp_path / "cache"), **{k: v for k, v in SMOKE.items() if k != "params"}),
                 host, MemoryTracker())
    assert result.failures == [] and _cells(result)["old-method"]["status"] == "FINISHED"


# -- unlearn import ------------------------------------------------------------------------------------
def _saved_runs(tmp_path, artifact: str) -> str:
    tracker = MemoryTracker()
    parent = tracker.start_parent("p", {"run_kind": "parent"})
    parent.log_params({"a": 1})
    child = tracker.start_child(parent, "c", {"run_kind": "child", "cell_hash": "h"})
    child.log_metrics({"m": 1.0}, step=0)
    child.log_text("hello", artifact)
    child.end("FINISHED")
    parent.end("FINISHED")
    return str(tracker.save(tmp_path / f"runs-{abs(hash(artifact))}.json", "imported"))


def test_an_import_whose_artifact_climbs_out_of_the_run_is_refused_in_one_line_and_leaves_nothing(tmp_path,
                                                                                                  sqlite_store):
    """Before: MLflow refused the artifact, the harness printed a traceback, left a RUNNING half-imported
    parent, and a second import was refused as "already imported"."""
    uri = sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    bad = _saved_runs(tmp_path, "../../x.txt")
    result = CliRunner().invoke(main, ["import", bad, "--tracking-uri", uri])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: {bad}: run 1 ('c'): artifact name '../../x.txt' is not a relative path inside the run; nothing was "
        f"imported"]
    store = MlflowStore(uri)
    assert [r for e in store.client.search_experiments() for r in store.client.search_runs([e.experiment_id])] == []
    good = CliRunner().invoke(main, ["import", _saved_runs(tmp_path, "notes/x.txt"), "--tracking-uri", uri])
    assert good.exit_code == 0, good.output


def test_an_import_failing_half_way_deletes_what_it_made_so_it_can_be_run_again(tmp_path, sqlite_store, monkeypatch):
    from mlflow import MlflowClient

    from harness.tracking import ImportRefused, import_runs

    uri = sqlite_store(tmp_path / "mlruns" / "mlflow.db")
    path = _saved_runs(tmp_path, "notes/x.txt")
    real = MlflowClient.log_text
    monkeypatch.setattr(MlflowClient, "log_text", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(ImportRefused, match=r"failed at run 'c' \(OSError: disk full\); nothing was imported "
                                            r"\(2 partial run\(s\) deleted again\)"):
        import_runs(path, uri)
    monkeypatch.setattr(MlflowClient, "log_text", real)
    (parent,) = import_runs(path, uri)
    store = MlflowStore(uri)
    assert store.parent(parent)["status"] == "FINISHED"
    runs = store.client.search_runs([store.parent(parent)["experiment_id"]])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
