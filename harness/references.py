"""The reference models every cell is measured against, built once per split and shared.

Per split: the original model (trained on retain + forget) and the retrain model (trained on retain
only), both with the profile's recipe, their evaluation outputs, each attack's one-time preparation,
and the cost of a retrain on this device *now*. Models are cached on disk under a lock, so two
processes asking for the same one train it once.

Why the retrain cost is measured, not recalled: a cached retrain carries the time it took on another
day, load or machine, and identical runs measured anywhere from 92% to 736% "of retrain" against it.
A `RetrainClock` times a few steps of the retrain recipe in the calling process, half right before the
method runs and half right after, and scales them to the recipe's length: method and reference then
share the device, the precision and the load.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import engine
from .cache import ModelCache, cache_key
from .data import ImageData
from .evaluation import AttackInput, Outputs, PrepareInput, model_outputs
from .hashing import stable_hash
from .profiles import Recipe
from .splits import Split

log = logging.getLogger(__name__)
ORIGINAL_SEED = 0  # one original model per (data, training pool, model, recipe): shared by all split seeds


@dataclass(frozen=True)
class Trained:
    """A reference model (eval mode, frozen) and how it was made: train_seconds, train_device, history,
    cached, cache_key, epochs, seed."""

    model: nn.Module
    meta: dict


@dataclass
class SplitReferences:
    """The references of one split, shared (read-only) by every cell of that split."""

    split: Split
    original: Trained
    retrain: Trained | None  # None when asked without it (tuning: a real user has no retrain model)
    original_out: Outputs
    retrain_out: Outputs | None
    service: "References"
    _prepared: dict = field(default_factory=dict, repr=False)

    def prepared(self, attack, params: dict) -> Any:
        """What `attack.prepare` returns for this split and these parameters, computed once; a failure
        is kept and raised again for every model, so each cell reports it."""
        if attack.prepare is None:
            return None
        key = (attack.name, stable_hash(params))
        if key not in self._prepared:
            try:
                inputs = PrepareInput(self.original_out, self.retrain_out, self.split.seed, self.split.scenario,
                                      dict(self.split.info))
                self._prepared[key] = (attack.prepare(inputs, dict(params)), None)
            except Exception as exc:
                self._prepared[key] = (None, exc)
        value, error = self._prepared[key]
        if error is not None:
            raise error
        return value

    def attack_input(self, target: Outputs, prepared: Any = None) -> AttackInput:
        return AttackInput(target, self.original_out, self.retrain_out, self.split.seed, self.split.scenario,
                           dict(self.split.info), prepared)


class References:
    """Trains, caches and serves reference models for the splits of one run (one data set, model,
    recipe and device)."""

    def __init__(self, data: ImageData, compute: engine.Compute, model_name: str, model_factory: Callable[[], nn.Module],
                 recipe: Recipe, cache: ModelCache | None, *, show_progress: bool = True,
                 calibration_steps: int = 20, warmup_steps: int = 3):
        self.data, self.compute, self.recipe, self.cache = data, compute, recipe, cache
        self.model_name, self.model_factory, self.show_progress = model_name, model_factory, show_progress
        self.calibration_steps, self.warmup_steps = calibration_steps, warmup_steps
        self.device_name = engine.device_name(compute.device)
        # A pristine copy of the shared tensors: a method that writes into them is caught and undone.
        self._pristine = (data.images.clone(), data.labels.clone())
        self._splits: dict[str, SplitReferences] = {}
        self._models: dict[str, Trained] = {}

    # -- models ------------------------------------------------------------------------------------------
    def key(self, indices: torch.Tensor, seed: int, epochs: int) -> str:
        recipe = {**self.recipe.as_dict(), "epochs": epochs}
        return cache_key(data=self.data.fingerprint, train=stable_hash(torch.sort(indices.cpu()).values),
                         model=self.model_name, recipe=recipe, seed=seed, precision=self.compute.precision)

    def train(self, indices: torch.Tensor, seed: int, *, epochs: int | None = None, desc: str = "training") -> Trained:
        """A model trained from scratch on `indices` with the recipe, seeded by `seed`: from this process's
        memory, the disk cache, or trained now (under the cache's lock)."""
        epochs = self.recipe.epochs if epochs is None else epochs
        key = self.key(indices, seed, epochs)
        if key not in self._models:
            if self.cache is None:
                self._models[key] = self._train(key, indices, seed, epochs, desc)
            else:
                with self.cache.lock(key):
                    model = self.compute.prepare(self.model_factory())
                    meta = self.cache.load(key, model)
                    if meta is not None:
                        self._models[key] = Trained(_freeze(model), {**meta, "cached": True, "cache_key": key})
                    else:
                        self._models[key] = self._train(key, indices, seed, epochs, desc)
        return self._models[key]

    def _train(self, key: str, indices: torch.Tensor, seed: int, epochs: int, desc: str) -> Trained:
        generator = engine.seed_everything(seed)
        model = self.compute.prepare(self.model_factory())  # initialised under the seed
        history: list[dict] = []
        clock = engine.Stopwatch(self.compute.device)
        start = clock.now()
        r = self.recipe
        make_batches = lambda: engine.iterate(self.data, indices, r.batch_size, compute=self.compute,  # noqa: E731
                                              generator=generator, shuffle=True, augment_images=r.augment)
        engine.fit(model, make_batches, epochs=epochs, lr=r.lr, compute=self.compute, momentum=r.momentum,
                   weight_decay=r.weight_decay, schedule=r.schedule(epochs),
                   on_epoch=lambda e, s: history.append({"epoch": e, **s}),
                   progress=lambda it, total: tqdm(it, total=total, desc=desc, leave=False,
                                                   disable=not self.show_progress))
        meta = {"train_seconds": clock.now() - start, "train_device": self.device_name, "epochs": epochs,
                "seed": seed, "n_train": len(indices), "history": history, "created": time.time()}
        if self.cache is not None:
            self.cache.save(key, model, meta)
        return Trained(_freeze(model), {**meta, "cached": False, "cache_key": key})

    # -- splits ------------------------------------------------------------------------------------------
    def for_split(self, split: Split, *, retrain: bool = True) -> SplitReferences:
        """The original and (unless `retrain=False`) retrain models of `split` and their outputs, built on
        first use. Without the retrain model, gaps to retrain are not computed and attacks see None: what
        a tuner optimises then cannot depend on a model a real user would not have."""
        key = (split.hash, retrain)
        if key not in self._splits:
            original = self.train(split.train, ORIGINAL_SEED, desc="original")
            known = self._splits.get((split.hash, not retrain))
            original_out = known.original_out if known else model_outputs(original.model, self.data, split, self.compute)
            trained = self.train(split.retain, split.seed, desc="retrain") if retrain else None
            retrain_out = model_outputs(trained.model, self.data, split, self.compute) if trained else None
            self._splits[key] = SplitReferences(split, original, trained, original_out, retrain_out, self)
        return self._splits[key]

    def retrain_clock(self, split: Split) -> "RetrainClock":
        return RetrainClock(self, split)

    def retrain_seconds(self, split: Split) -> float:
        """What retraining on `split.retain` costs on this device now: `calibration_steps` timed steps of
        the recipe scaled to the recipe's number of steps."""
        clock = self.retrain_clock(split)
        clock.sample(self.calibration_steps)
        return clock.estimate

    # -- isolation ---------------------------------------------------------------------------------------
    def restore_data(self) -> bool:
        """Whether the shared images or labels were changed in place since the start; if so they are
        restored, so the next cell sees the real data."""
        images, labels = self._pristine
        if torch.equal(self.data.images, images) and torch.equal(self.data.labels, labels):
            return False
        with torch.no_grad():
            self.data.images.copy_(images)
            self.data.labels.copy_(labels)
        return True


class RetrainClock:
    """Times steps of the retrain recipe (a fresh model, the recipe's optimiser and batches) in the calling
    process. Sampled before and after a method, it brackets the method's run: a load that comes or goes
    meanwhile weighs on both alike. Runs under a forked RNG, so the caller's random state is untouched."""

    def __init__(self, service: References, split: Split):
        r, self.service = service.recipe, service
        self.total_steps = math.ceil(len(split.retain) / r.batch_size) * r.epochs
        self.seconds, self.steps = 0.0, 0
        with self._rng():
            self.model = service.compute.prepare(service.model_factory())
            generator = torch.Generator().manual_seed(split.seed)
            self.batches = itertools.chain.from_iterable(
                engine.iterate(service.data, split.retain, r.batch_size, compute=service.compute, generator=generator,
                               shuffle=True, augment_images=r.augment) for _ in itertools.count())
            self.optimizer = engine.sgd(self.model, r.lr, r.momentum, r.weight_decay)
            self._steps(service.warmup_steps)  # untimed: first steps pay for allocation and kernel choice

    def _rng(self):
        device = self.service.compute.device
        return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])

    def _steps(self, n: int) -> None:
        engine.train_epoch(self.model, itertools.islice(self.batches, n), self.optimizer, compute=self.service.compute)

    def sample(self, steps: int) -> None:
        with self._rng():
            clock = engine.Stopwatch(self.service.compute.device)
            start = clock.now()
            self._steps(steps)
            self.seconds += clock.now() - start
            self.steps += steps

    @property
    def estimate(self) -> float:
        """Seconds a whole retrain would take at the sampled rate."""
        return self.seconds / max(self.steps, 1) * self.total_steps


def _freeze(model: nn.Module) -> nn.Module:
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()
