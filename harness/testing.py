"""Conformance checks every registered method, attack and scenario must pass, the built-ins and yours
(the timm pattern: one suite, parametrised over everything registered).

Run them on your plugin with one command: `unlearn check NAME [NAME ...]` (on tiny synthetic data, in
seconds). The project's own test suite calls the same functions. Part of the plugin contract (since 4):
a plugin's own tests may import this module.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from . import engine
from .cell import method_arguments
from .data import CLASSES, ImageData, _to_image_data
from .evaluation import Outputs, model_outputs, run_attack
from .metrics import attack_metric_name
from .params import Float, Int, ParamError
from .profiles import Recipe
from .reference_models import ReferenceModels
from .registry import Attack, Method, Scenario
from .splits import Pool, Split

CPU = engine.Compute(torch.device("cpu"), precision="fp32", channels_last=False)


class ConformanceError(AssertionError):
    """A component does not do what the contract says. Raised by the checks themselves, never by `assert`,
    so `unlearn check` fails a broken plugin under `python -O` too."""


def require(condition: object, message: str) -> None:
    """Raise ConformanceError(message) unless `condition` holds."""
    if not condition:
        raise ConformanceError(message)


def synthetic_arrays(n_train: int = 120, n_test: int = 80, seed: int = 0) -> dict:
    """CIFAR-shaped uint8 images whose mean colour depends on the class, so a model can learn something."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % len(CLASSES)
        rng.shuffle(y)
        base = (y[:, None, None, None] * 23 % 256).astype(np.int16)
        x = np.clip(base + rng.integers(-40, 40, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
        out[f"x_{part}"], out[f"y_{part}"] = x, y.astype(np.int64)
    return out


def synthetic_data(n_train: int = 120, n_test: int = 80, seed: int = 0) -> ImageData:
    return _to_image_data(synthetic_arrays(n_train, n_test, seed), f"synthetic-{seed}")


@dataclass
class Bench:
    """Tiny data, an original trained on it for two epochs, and fixed index sets: what the checks run on."""

    data: ImageData
    model_factory: Callable[[], nn.Module]
    original: nn.Module
    retain: torch.Tensor
    forget: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    service: ReferenceModels  # trains the bench's retrain and reference-bank models (the harness's own path)

    @classmethod
    def build(cls, model_factory: Callable[[], nn.Module], data: ImageData | None = None) -> Bench:
        data = data or synthetic_data()
        train, heldout = torch.arange(data.n_train), torch.arange(data.n_train, len(data.labels))
        refs = ReferenceModels(data, CPU, "bench", model_factory, Recipe(epochs=2, batch_size=32, augment=False),
                          cache=None, show_progress=False, calibration_steps=2, warmup_steps=1)
        original = refs.train(train, seed=0).model
        return cls(data, model_factory, original, train[24:], train[:24], heldout[:40], heldout[40:], refs)

    def references(self, k: int = 0):
        """The bench split's SplitModels (original, retrain, a bank of `k`), as a run builds them."""
        return self.service.for_split(self.split(), bank_size=k)

    def method_arguments(self, seed: int = 0, on_epoch=None):
        """(model, data, ctx) as the harness hands them to a method, on this bench."""
        return method_arguments(self.original, self.data, self.retain, self.forget, self.validation, seed, CPU,
                                self.model_factory, on_epoch=on_epoch, show_progress=False, epoch_eval_size=None)

    def run(self, method: Method, seed: int = 0, **params) -> tuple[nn.Module, list[int]]:
        """The method's result and the epochs it reported, with its fastest `epochs` unless given."""
        reported: list[int] = []
        model, data, ctx = self.method_arguments(seed, on_epoch=lambda epoch, m: reported.append(epoch))
        return method.fn(model, data, fast_params(method, **params), ctx), reported

    def split(self) -> Split:
        return Split("bench", 0, self.retain, self.forget, self.validation, self.test, "bench", "bench")

    def outputs(self, model: nn.Module) -> Outputs:
        return model_outputs(model, self.data, self.split(), CPU)


def fast_params(method: Method, **overrides) -> dict:
    """The method's defaults with its main phase as short as its space allows (unless overridden)."""
    epochs = method.space.get("epochs")
    fast = {"epochs": max(1, epochs.low)} if isinstance(epochs, (Int, Float)) else {}
    return method.resolve({**fast, **overrides})


def count_batches(ctx) -> dict:
    """Make `ctx.batches` count the batches it yields; returns the counter ({"n": ...})."""
    counter = {"n": 0}
    batches = ctx.batches

    def counting(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            counter["n"] += 1
            yield batch

    ctx.batches = counting
    return counter


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- methods -------------------------------------------------------------------------------------------
def check_method_contract(method: Method, bench: Bench) -> None:
    """Returns the same architecture in eval mode with changed, finite weights; leaves the original alone."""
    before = _state(bench.original)
    out, _ = bench.run(method)
    require(isinstance(out, nn.Module), f"returned {type(out).__name__}, expected a torch.nn.Module")
    require(type(out) is type(bench.original), "must return the same architecture")
    require({k: v.shape for k, v in out.state_dict().items()} == {k: v.shape for k, v in before.items()},
            "the returned model's parameter shapes differ from the original's")
    require(not out.training, "must return the model in eval mode (ctx.fit does)")
    changed = [k for k, v in out.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    require(changed, "the method changed no weight")
    require(all(torch.isfinite(v).all() for v in out.state_dict().values() if v.is_floating_point()),
            "non-finite weights")
    require(all(torch.equal(v, before[k]) for k, v in bench.original.state_dict().items()),
            "the original model was modified")


def check_method_repeatable(method: Method, bench: Bench) -> None:
    """The same seed gives the same weights (on the CPU)."""
    a, _ = bench.run(method, seed=3)
    b, _ = bench.run(method, seed=3)
    differ = [k for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()) if not torch.equal(va, vb)]
    require(not differ, f"two runs with the same seed differ in {', '.join(differ[:3])}")


def check_method_epochs(method: Method, bench: Bench) -> None:
    """Exposes `epochs`, does more work with more of them, and reports each epoch to the caller's hook
    (ctx.fit or ctx.log_epoch) at least `epochs` times, so a tuner can prune it. A method that does not
    train by epochs (SSD dampens weights once) declares no `epochs`: it is run once whatever the budget,
    and reports at most one epoch."""
    if "epochs" not in method.space:
        reported: list[int] = []
        model, data, ctx = bench.method_arguments(on_epoch=lambda epoch, m: reported.append(epoch))
        method.fn(model, data, method.resolve(), ctx)
        require(len(reported) <= 1, f"a method without `epochs` reported {len(reported)} epochs; declare `epochs` "
                                    f"(the paper compares budgets of 5, 9 and 20) if it trains by epochs")
        return
    declared = method.space["epochs"]
    require(isinstance(declared, (Int, Float)), "`epochs` is an Int or Float parameter")
    low = max(cast("Int | Float", declared).low, 1)
    work = []
    for epochs in (low, low + 1):
        reported = []
        model, data, ctx = bench.method_arguments(on_epoch=lambda epoch, m, reported=reported: reported.append(epoch))
        batches = count_batches(ctx)
        method.fn(model, data, method.resolve({"epochs": epochs}), ctx)
        require(len(reported) >= epochs, f"epochs={epochs} reported {len(reported)} epoch(s) to the epoch hook; "
                                         f"call ctx.log_epoch once per epoch (ctx.fit does)")
        work.append(batches["n"])
    require(work[1] > work[0], f"epochs={low + 1} did no more work than epochs={low}")


def check_method_parameters(method: Method, bench: Bench | None = None) -> None:
    """Unknown and out-of-range parameters are refused with their name and range."""
    try:
        method.resolve({"no_such_param": 1})
    except ParamError as exc:
        require("no_such_param" in str(exc), str(exc))
    else:
        raise ConformanceError("an unknown parameter was accepted")
    for name, param in method.space.items():
        if isinstance(param, (Int, Float)):
            try:
                method.resolve({name: param.high + 1000})
            except ParamError as exc:
                require(name in str(exc) and "out of range" in str(exc), str(exc))
            else:
                raise ConformanceError(f"{name}={param.high + 1000} was accepted above its range")


METHOD_CHECKS = [check_method_contract, check_method_repeatable, check_method_epochs, check_method_parameters]


# -- attacks -------------------------------------------------------------------------------------------
def check_attack(attack: Attack, bench: Bench) -> None:
    """With the reference models it declares (bank, random model, reruns), returns exactly floats for
    declared metrics and DataFrames as tables, the same twice for the same seed, on the original and on a
    fresh (untrained) model."""
    params = attack.resolve()
    refs = bench.references(attack.bank_needed(params))
    require(refs.unmet(attack, params) is None, refs.unmet(attack, params))
    engine.seed_everything(0)
    fresh = bench.outputs(CPU.prepare(bench.model_factory()).eval())
    prepared = refs.prepared(attack, params)
    for target in (refs.original_out, fresh):
        inputs = refs.attack_input(attack, target, prepared, (target,) * attack.reruns_needed(params))
        first = run_attack(attack, params, inputs)
        require(first.metrics, "returned no metric")
        undeclared = set(first.metrics) - {attack_metric_name(attack.name, m) for m in attack.metrics}
        require(not undeclared, f"returned undeclared metric(s) {', '.join(sorted(undeclared))}")
        require(all(isinstance(v, float) for v in first.metrics.values()), "returned metrics that are not floats")
        again = run_attack(attack, params, inputs).metrics
        require(all(v == again[k] or (math.isnan(v) and math.isnan(again[k])) for k, v in first.metrics.items()),
                f"not repeatable under the same seed: {first.metrics} vs {again}")


ATTACK_CHECKS = [check_attack]


# -- scenarios -----------------------------------------------------------------------------------------
def check_scenario(scenario: Scenario, bench: Bench) -> None:
    """Returns unique positions inside the pool, non-empty and not the whole pool, the same for the same
    seed, with its default options."""
    positions = torch.arange(bench.data.n_train)
    pool = Pool(positions, bench.data.labels[positions], bench.data.images[positions], bench.data.classes, 0.1, 0)
    params = scenario.resolve()
    chosen = [scenario.fn(pool, torch.Generator().manual_seed(0), **params) for _ in range(2)]
    chosen = [c[0] if isinstance(c, tuple) else c for c in chosen]
    first = torch.as_tensor(chosen[0]).flatten()
    require(len(first) > 0, "chose an empty forget set")
    require(len(first) < len(pool), "chose the whole pool")
    require(int(first.min()) >= 0 and int(first.max()) < len(pool), "positions outside the pool")
    require(len(torch.unique(first)) == len(first), "duplicate positions")
    require(torch.equal(first, torch.as_tensor(chosen[1]).flatten()), "not repeatable under the same seed")


SCENARIO_CHECKS = [check_scenario]
