"""Planning: what a configuration resolves to, before anything runs."""
import math

import pytest

from harness import engine
from harness.plan import UsageError, plan
from harness.profiles import Recipe, warmup_cosine
from harness.spec import configure


def config(npz_dir, cache, **kw):
    return configure(**{**dict(methods=["simple"], profile="smoke", model="tiny-cnn", data_dir=str(npz_dir),
                                cache_dir=str(cache), show_progress=False), **kw})


def test_cells_are_the_reference_rows_then_the_methods(npz_dir, tmp_path):
    p = plan(*config(npz_dir, tmp_path, methods=["retrain", "rotate", "simple", "rotate"], seeds=[1, 0]))
    assert p.seeds == (1, 0) and set(p.splits) == {("random", 0), ("random", 1)}
    assert [c.name for c in p.cells(p.split(0))] == ["original", "retrain", "rotate", "simple"]
    hashes = [c.hash for s in p.seeds for c in p.cells(p.split(s))]
    assert len(set(hashes)) == len(hashes)
    described = p.describe()
    assert described["methods"]["simple"]["epochs"] == 5 and described["metrics"]["mia"]["auc"]["target"] == 0.5
    assert plan(*config(npz_dir, tmp_path, methods=["retrain", "rotate", "simple"], seeds=[1, 0])).hash == p.hash


def test_scenarios_and_epoch_budgets_make_one_cell_each(npz_dir, tmp_path):
    """A cell is (method, scenario, seed, epochs, parameters): each budget sets the method's `epochs`, the
    reference rows are once per split, and every cell has its own hash."""
    p = plan(*config(npz_dir, tmp_path, methods=["rotate", "simple"], scenarios=["random", "class"], seeds=[0, 1],
                    epochs=[2, 3]))
    assert [(s.scenario, s.seed) for s in p.work()] == [("random", 0), ("random", 1), ("class", 0), ("class", 1)]
    cells = p.cells(p.split(0, "class"))
    assert [(c.name, c.budget) for c in cells] == [("original", None), ("retrain", None), ("rotate", 2), ("simple", 2),
                                                   ("rotate", 3), ("simple", 3)]
    assert [c.params.get("epochs") for c in cells[2:]] == [2, 2, 3, 3]
    hashes = [c.hash for s in p.work() for c in p.cells(s)]
    assert len(set(hashes)) == len(hashes) == 4 * 6
    assert p.experiment == "unlearning-random+class" and p.describe()["epochs"] == [2, 3]
    assert plan(*config(npz_dir, tmp_path, methods=["rotate", "simple"], scenarios=["random", "class"], seeds=[0, 1],
                       epochs=[2])).hash != p.hash


@pytest.mark.parametrize("kw, message", [
    (dict(epochs=[2], methods=["simple"], params={"simple": {"epochs": 3}}), "given by --param and by --epochs"),
    (dict(epochs=[0]), "budgets are positive"),
    (dict(epochs=[99]), "--epochs 99"),
    (dict(scenarios=["random", "nope"]), "Valid scenarios"),
    (dict(scenarios=[]), "no scenario given"),
    (dict(scenarios=["random"], scenario_options={"target_clas": "cat"}), "not a parameter of scenario"),
])
def test_bad_budgets_and_scenarios_are_refused_before_any_work(npz_dir, tmp_path, kw, message):
    with pytest.raises(UsageError, match=message):
        plan(*config(npz_dir, tmp_path, **kw))


def test_a_method_without_epochs_runs_once_whatever_the_budgets(npz_dir, tmp_path):
    """A method that does not train by epochs (SSD) is one cell per split beside the budgeted ones, so the
    protocol's `--epochs 2,5` over every method still plans; alone with --epochs it is refused."""
    from harness.host import discover
    from harness.registry import Method

    host = discover()
    host.methods.add(Method("no-epochs", lambda model, data, params, ctx: model))
    p = plan(*config(npz_dir, tmp_path, methods=["no-epochs", "simple"], epochs=[2, 3]), host)
    cells = [(c.name, c.budget) for c in p.cells(p.split(0))]
    assert cells == [("original", None), ("retrain", None), ("no-epochs", None), ("simple", 2), ("simple", 3)]
    with pytest.raises(UsageError, match="has none"):
        plan(*config(npz_dir, tmp_path, methods=["no-epochs"], epochs=[2]), host)


def test_auto_precision_is_measured_once_per_machine(npz_dir, tmp_path, monkeypatch):
    calls = []

    def speeds(factory, device, channels_last=True):
        calls.append(device)
        return {"fp32": 100.0, "bf16": 250.0}

    monkeypatch.setattr(engine, "precision_speeds", speeds)
    first = plan(*config(npz_dir, tmp_path, precision="auto"))
    again = plan(*config(npz_dir, tmp_path, precision="auto"))
    assert first.profile.precision == again.profile.precision == "bf16" and len(calls) == 1
    assert first.precision_speeds == {"fp32": 100.0, "bf16": 250.0}
    assert plan(*config(npz_dir, tmp_path, precision="fp32")).profile.precision == "fp32"


def test_precision_speeds_measures_both():
    from .conftest import tiny_factory

    speeds = engine.precision_speeds(tiny_factory, engine.resolve_device("cpu"), batch_size=16, steps=1)
    assert set(speeds) == {"fp32", "bf16"} and all(v > 0 for v in speeds.values())


def test_warm_up_then_cosine():
    values = [warmup_cosine(e, warmup=2, epochs=10) for e in range(11)]
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert values[2 + 4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert values[10] == pytest.approx(0.0) and all(a >= b for a, b in zip(values[2:], values[3:]))
    assert Recipe(epochs=3).schedule(3) == "cosine"  # no warm-up: the plain cosine, unchanged


def test_usage_errors_come_before_the_data_is_read(tmp_path):
    """A bad name is reported even when the data folder does not exist: validation goes first."""
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        plan(*configure(methods=["nope"], data_dir=str(tmp_path / "missing")))
