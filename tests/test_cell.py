"""evaluate_cell, the one step the runner, a tuner and a worker call: callbacks, hashing, results."""
import optuna
import pytest

from harness import Int
from harness.cell import Callbacks, Cell, Configured, evaluate_cell
from harness.host import default_host
from harness.profiles import PROFILES, Recipe
from harness.reference_models import ReferenceModels
from harness.registry import Method
from harness.splits import make_split

from .conftest import CPU, synthetic_data, tiny_factory

HOST = default_host()


@pytest.fixture(scope="module")
def refs():
    data = synthetic_data(500, 450)
    split = make_split(data, PROFILES["smoke"], HOST.scenarios.get("random"), 0)
    service = ReferenceModels(data, CPU, "tiny-cnn", tiny_factory, Recipe(epochs=1, batch_size=64, augment=False), None,
                         show_progress=False, calibration_steps=2, warmup_steps=1)
    return service.for_split(split)


def cell(refs, method, params=None, attacks=()):
    method = HOST.methods.get(method) if isinstance(method, str) else method
    return Cell(method.name, method, method.resolve(params), refs.split, tuple(attacks), {"profile": "smoke"})


def test_a_finished_cell_has_utility_time_and_attack_metrics_and_its_curve(refs):
    mia = HOST.attacks.get("mia")
    seen = []
    result = evaluate_cell(cell(refs, "simple", {"epochs": 2}, [Configured(mia, mia.resolve())]), refs,
                           Callbacks(on_epoch=lambda epoch, metrics: seen.append((epoch, metrics["epoch_acc_forget"]))))
    assert result.ok and result.error is None
    assert [e for e, _ in seen] == [1, 2] and [h["epoch"] for h in result.history] == [1, 2]
    assert {"acc_forget", "gap_acc_forget", "unlearn_seconds", "retrain_seconds", "mia/auc"} <= set(result.metrics)
    assert result.metrics["pct_retrain_time"] == pytest.approx(
        100 * result.metrics["unlearn_seconds"] / result.metrics["retrain_seconds"])


@pytest.mark.parametrize("signal", [optuna.TrialPruned, KeyboardInterrupt])
def test_what_the_epoch_callback_raises_reaches_the_caller(refs, signal):
    """A tuner's pruning signal ends the cell and propagates; it is never a FAILED method."""
    def on_epoch(epoch, metrics):
        raise signal()

    with pytest.raises(signal):
        evaluate_cell(cell(refs, "simple", {"epochs": 2}), refs, Callbacks(on_epoch=on_epoch))


def test_a_method_cannot_swallow_the_pruning_signal(refs):
    def stubborn(model, data, params, ctx):
        try:
            return ctx.fit(model, data.retain, epochs=2, lr=0.01)
        except Exception:  # would hide an ordinary exception
            return model.eval()

    def prune(epoch, metrics):
        raise optuna.TrialPruned()

    method = Method("stubborn", stubborn, space={"epochs": Int(1, 3, default=1)})
    with pytest.raises(optuna.TrialPruned):
        evaluate_cell(cell(refs, method), refs, Callbacks(on_epoch=prune))


def test_reference_rows_come_from_the_service(refs):
    original = evaluate_cell(Cell("original", None, {}, refs.split, ()), refs)
    retrain = evaluate_cell(Cell("retrain", None, {}, refs.split, ()), refs)
    assert original.ok and retrain.ok
    assert original.metrics["acc_forget"] == refs.original_out.accuracy("forget")
    assert retrain.metrics["pct_retrain_time"] == 100.0 and retrain.metrics["gap_acc_forget"] == 0.0
    assert original.history and original.info["cached"] is False


def test_cell_hash_is_stable_and_covers_what_decides_the_result(refs):
    a, b = cell(refs, "simple"), cell(refs, "simple")
    assert a.hash == b.hash and len(a.hash) == 16
    assert cell(refs, "simple", {"epochs": 3}).hash != a.hash
    assert Cell("simple", a.method, a.params, a.split, (), {"profile": "cpu"}).hash != a.hash
    mia = HOST.attacks.get("mia")
    assert cell(refs, "simple", attacks=[Configured(mia, mia.resolve({"folds": 5}))]).hash != a.hash
