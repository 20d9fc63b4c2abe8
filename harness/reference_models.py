"""The reference models every cell is measured against, built once per split and shared.

Per split: the original model (trained on retain + forget) and the gold retrain model (trained on retain
only), both with the profile's recipe, their evaluation outputs, each attack's one-time preparation,
and the cost of a retrain on this device *now*. On request also the reference bank (K more retrains
with other seeds, for per-example attacks such as LiRA and RMIA; only their logits are kept, float16 where
they fit) and a randomly initialised model's outputs. Models and bank logits are cached on disk under a lock, so
two processes asking for the same one train it once, and every method, attack and later run reuses it.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import engine, graphs, isolation
from .cache import ModelCache, cache_key
from .data import ImageData
from .evaluation import (
    AttackInput,
    Outputs,
    PrepareInput,
    ReferenceOutputs,
    model_outputs,
)
from .hashing import stable_hash
from .profiles import Recipe
from .splits import SPLIT_NAMES, Split

log = logging.getLogger(__name__)
ORIGINAL_SEED = 0  # one original model per (data, training pool, model, recipe): shared by all split seeds
BANK_SEED_BASE = 1_000_000  # the bank's training seeds count up from here, skipping the split's own seed
WITNESS_SEED = BANK_SEED_BASE - 1  # check-attacks' held-out retrain: in no bank, never the gold retrain
RANDOM_SEED = 7  # the randomly initialised model some attacks compare with (ZRF)


def bank_seeds(split_seed: int, k: int) -> list[int]:
    """Training seeds of a bank of `k` references: never the gold retrain's (the split seed), and the first
    k of a larger bank, so growing --references reuses every model already trained."""
    return list(itertools.islice((s for s in itertools.count(BANK_SEED_BASE) if s != split_seed), k))


def witness_seed(split_seed: int) -> int:
    return WITNESS_SEED if split_seed != WITNESS_SEED else WITNESS_SEED - 1


@dataclass(frozen=True)
class Trained:
    """A reference model (eval mode, frozen) and how it was made: train_seconds, train_device, history,
    cached, cache_key, epochs, seed."""

    model: nn.Module
    meta: dict


@dataclass
class SplitModels:
    """The reference models of one split and their outputs, shared by every cell of that split."""

    split: Split
    original: Trained
    retrain: Trained | None  # None when asked without it (tuning: a real user has no retrain model)
    original_out: Outputs
    retrain_out: Outputs | None
    service: ReferenceModels
    bank: ReferenceOutputs | None = None  # K retrains with other seeds (None: --references 0)
    _prepared: dict = field(default_factory=dict, repr=False)
    _random_out: Outputs | None = field(default=None, repr=False)
    _pristine: isolation.Pristine | None = field(default=None, repr=False)

    @property
    def bank_size(self) -> int:
        return len(self.bank) if self.bank is not None else 0

    def unmet(self, attack, params: dict) -> str | None:
        """Why `attack` cannot run on this split (None if it can)."""
        return attack.unmet(params, retrain=self.retrain_out is not None, bank_size=self.bank_size)

    @property
    def random_out(self) -> Outputs:
        """Outputs of a randomly initialised model (seeded; built on first use, under a forked RNG)."""
        if self._random_out is None:
            service = self.service
            device = service.compute.device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                engine.seed_everything(RANDOM_SEED)
                model = _freeze(service.compute.prepare(service.model_factory()))
            self._random_out = model_outputs(model, service.data, self.split, service.compute)
            if self._pristine is not None:
                self._pristine.add(random=self._random_out)
        return self._random_out

    def pristine(self) -> isolation.Pristine:
        """A copy of everything of this split that attacks read (the original's, retrain's, bank's and random
        model's outputs), to undo what one attack changes in place before the next reads it."""
        if self._pristine is None:
            self._pristine = isolation.Pristine(original=self.original_out, retrain=self.retrain_out,
                                                references=self.bank, random=self._random_out)
        return self._pristine

    def prepared(self, attack, params: dict) -> Any:
        """What `attack.prepare` returns for this split and these parameters, computed once; a failure
        is kept and raised again for every model, so each cell reports it."""
        if attack.prepare is None:
            return None
        key = (attack.name, stable_hash(params))
        if key not in self._prepared:
            try:
                inputs = PrepareInput(self.original_out, self.retrain_out, self.split.seed, self.split.scenario,
                                      dict(self.split.info), self.bank,
                                      self.random_out if "random" in attack.needs else None)
                shared = self.pristine()
                try:
                    with isolation.guarded() as guard:
                        value = attack.prepare(inputs, dict(params))
                finally:
                    changed = shared.restore()
                if changed:
                    raise isolation.SharedInputChanged(
                        f"attack {attack.name!r}: its prepare changed its inputs in place: {', '.join(changed[:4])} "
                        f"(undone for every attack after it)")
                if guard.changes:
                    raise isolation.GlobalStateChanged(guard.describe(f"attack {attack.name!r}'s prepare"))
                self._prepared[key] = (value, None)
            except Exception as exc:
                self._prepared[key] = (None, exc)
        value, error = self._prepared[key]
        if error is not None:
            raise error
        return value

    def attack_input(self, attack, target: Outputs, prepared: Any = None,
                     reruns: tuple[Outputs, ...] = ()) -> AttackInput:
        return AttackInput(target, self.original_out, self.retrain_out, self.split.seed, self.split.scenario,
                           dict(self.split.info), prepared, self.bank,
                           self.random_out if "random" in attack.needs else None, tuple(reruns))

    def reference_reruns(self, name: str, n: int) -> tuple[Outputs, ...]:
        """`n` more runs of a reference row, for attacks that compare several runs of one method: the
        original's recipe is deterministic (the same seed gives the same model), so its reruns are
        copies; the retrain row's are the bank's last `n` models (retrains with other seeds)."""
        if n == 0:
            return ()
        if name == "original":
            return (self.original_out,) * n
        if self.bank is None or len(self.bank) < n:
            raise ValueError(f"the retrain row needs {n} bank model(s) as reruns; the bank has {self.bank_size}")
        return tuple(self.bank.model(i) for i in range(len(self.bank) - n, len(self.bank)))


class ReferenceModels:
    """Trains, caches and serves reference models for the splits of one run (one data set, model,
    recipe and device)."""

    def __init__(self, data: ImageData, compute: engine.Compute, model_name: str,
                 model_factory: Callable[[], nn.Module], recipe: Recipe, cache: ModelCache | None, *,
                 show_progress: bool = True, calibration_steps: int = 20, warmup_steps: int = 3):
        self.data, self.compute, self.recipe, self.cache = data, compute, recipe, cache
        self.model_name, self.model_factory, self.show_progress = model_name, model_factory, show_progress
        self.calibration_steps, self.warmup_steps = calibration_steps, warmup_steps
        self.device_name = engine.device_name(compute.device)
        # A pristine copy of the shared tensors: a method that writes into them is caught and undone.
        self._pristine = (data.images.clone(), data.labels.clone())
        self._splits: dict[tuple, SplitModels] = {}
        self._models: dict[str, Trained] = {}
        self._logits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # bank: key -> (indices, logits)

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

    # -- the reference bank ------------------------------------------------------------------------------
    def bank(self, split: Split, k: int) -> ReferenceOutputs | None:
        """K retrain models of `split` (the recipe of the original, seeds from `bank_seeds`) as their logits
        on the split's images; None for k = 0. Logits are cached beside the models (`engine.compact`), so a later
        run loads a few MB instead of a model per reference."""
        if k <= 0:
            return None
        seeds = bank_seeds(split.seed, k)
        logits = [self.reference_logits(split, seed, desc=f"reference {i + 1}/{k}") for i, seed in enumerate(seeds)]
        labels = {name: self.data.labels[getattr(split, name).to(self.data.labels.device)].cpu()
                  for name in SPLIT_NAMES}
        return ReferenceOutputs({name: torch.stack([lg[name] for lg in logits]) for name in SPLIT_NAMES}, labels,
                                tuple(seeds))

    def reference_logits(self, split: Split, seed: int, desc: str = "reference") -> dict[str, torch.Tensor]:
        """float32 logits per split of a retrain of `split` with training seed `seed`, from this process's
        memory, the cache, or computed now (training the model first if it is not cached)."""
        key = self.key(split.retain, seed, self.recipe.epochs)
        wanted = torch.unique(torch.cat([getattr(split, name).cpu() for name in SPLIT_NAMES]))
        known = self._logits.get(key)
        if known is None and self.cache is not None:
            known = self.cache.load_logits(key)
        if known is None or not bool(torch.isin(wanted, known[0]).all()):
            cover = wanted if known is None else torch.unique(torch.cat([known[0], wanted]))
            had = key in self._models
            model = self.train(split.retain, seed, desc=desc).model
            logits = engine.predict(model, self.data, cover, compute=self.compute)
            if not bool(torch.isfinite(logits).all()):
                raise FloatingPointError(f"reference model (training seed {seed}) gives non-finite logits: its "
                                         f"training diverged under the profile's recipe")
            known = (cover, engine.compact(logits))
            if not had:
                self._models.pop(key, None)  # the bank keeps logits only: K models would not fit on a small GPU
            if self.cache is not None:
                with self.cache.lock(key):
                    self.cache.save_logits(key, *known)
        self._logits[key] = known
        indices, values = known
        position = torch.full((int(indices.max()) + 1,), -1, dtype=torch.long)
        position[indices] = torch.arange(len(indices))
        return {name: values[position[getattr(split, name).cpu()]].float() for name in SPLIT_NAMES}

    # -- splits ------------------------------------------------------------------------------------------
    def for_split(self, split: Split, *, retrain: bool = True, bank_size: int = 0) -> SplitModels:
        """The original and (unless `retrain=False`) retrain models of `split`, their outputs and a bank of
        `bank_size` more retrains, built on first use. Without the retrain model, gaps to retrain are not
        computed and attacks see None: what a tuner optimises then cannot depend on a model a real user
        would not have."""
        key = (split.hash, retrain, bank_size)
        if key not in self._splits:
            original = self.train(split.train, ORIGINAL_SEED, desc="original")
            # other bank sizes, with/without retrain
            same = [v for (h, *_), v in self._splits.items() if h == split.hash]
            original_out = (same[0].original_out if same
                            else model_outputs(original.model, self.data, split, self.compute))
            trained = self.train(split.retain, split.seed, desc="retrain") if retrain else None
            retrain_out = next((v.retrain_out for v in same if v.retrain_out is not None), None) if trained else None
            if trained is not None and retrain_out is None:
                retrain_out = model_outputs(trained.model, self.data, split, self.compute)
            self._splits[key] = SplitModels(split, original, trained, original_out, retrain_out, self,
                                                self.bank(split, bank_size))
        return self._splits[key]

    def retrain_clock(self, split: Split) -> RetrainClock:
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

    def __init__(self, service: ReferenceModels, split: Split):
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
            # Untimed: first steps pay for allocation and kernel choice, and with CUDA graphs for the recording.
            self._steps(service.warmup_steps + (graphs.WARMUP_STEPS + 1 if service.compute.capture else 0))

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
