"""What a method receives besides the model: the data it may use and a context of engine helpers.

This is the whole public contract for method authors (version `harness.__api_version__`); built-in
methods use nothing else.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import engine
from .data import ImageData


class CallbackError(BaseException):
    """Carries an exception raised by the caller's epoch callback (a tuner's pruning signal, say) out of
    the method untouched. A BaseException, so a method's own `except Exception` cannot swallow it."""

    def __init__(self, original: BaseException):
        super().__init__(original)
        self.original = original


@dataclass(frozen=True)
class UnlearningData:
    """The index sets of one split and the frozen original model (eval mode: use it, never train it).

    Index tensors are the method's own copies; images and labels are read through `images(idx)` and
    `labels(idx)`, which return copies, so no method can change what the next one sees."""

    retain: torch.Tensor
    forget: torch.Tensor
    validation: torch.Tensor
    original: nn.Module
    dataset: ImageData = field(repr=False)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    def labels(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 labels of `indices`, on the CPU."""
        return self.dataset.labels[indices.to(self.dataset.labels.device)].cpu()

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, 32, 32) images of `indices`, unnormalised, on the CPU."""
        return self.dataset.images[indices.to(self.dataset.images.device)].cpu()


class Context:
    """Device, seed and engine helpers for one method call.

    Per-epoch logging evaluates the model; that time is counted in `overhead_s` and subtracted from the
    method's reported run time, so logging curves never makes a method look slower. `on_epoch(epoch,
    metrics)` is the caller's hook, reached through `fit` and `log_epoch` by every method."""

    def __init__(
        self,
        data: UnlearningData,
        compute: engine.Compute,
        seed: int,
        model_factory: Callable[[], nn.Module],
        on_epoch: Callable[[int, dict], None] | None = None,
        show_progress: bool = True,
        epoch_eval_size: int | None = 2000,
        name: str = "method",
    ):
        self.data = data
        self.compute = compute
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # a CPU generator: data order and augmentation
        self.name = name
        self.show_progress = show_progress
        self.overhead_s = 0.0  # evaluation for curves: not part of the method's cost
        self.history: list[dict] = []
        self._model_factory = model_factory
        self._on_epoch = on_epoch
        # Per-epoch curves are estimated on fixed random subsets so they stay cheap on large splits.
        gen = torch.Generator().manual_seed(seed + 1)
        self._eval_sets = {
            name: idx if epoch_eval_size is None or len(idx) <= epoch_eval_size
            else idx[torch.randperm(len(idx), generator=gen)[:epoch_eval_size]]
            for name, idx in (("retain", data.retain), ("forget", data.forget), ("validation", data.validation))
        }

    @property
    def device(self) -> torch.device:
        return self.compute.device

    def batches(self, indices: torch.Tensor, batch_size: int = 128, *, shuffle: bool = True,
                augment: bool = False, drop_last: bool = False,
                values: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """Normalised (x, y) batches on the device, shuffled with the run's seeded generator.

        `values` (one row per index: teacher logits, pseudo-labels...) makes them (x, y, v) batches,
        each row still beside its sample after shuffling."""
        return engine.iterate(self.data.dataset, indices, batch_size, compute=self.compute,
                              generator=self.generator, shuffle=shuffle, augment_images=augment,
                              drop_last=drop_last, values=values)

    def autocast(self):
        """Mixed precision as the profile asks; wrap forward passes in it."""
        return self.compute.autocast()

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the same architecture, on the device."""
        return self.compute.prepare(self._model_factory())

    def sgd(self, model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        return engine.sgd(model, lr, momentum, weight_decay)

    def train_epoch(self, model: nn.Module, batches, optimizer, loss_fn=None, after_step=None) -> dict:
        """One epoch over `batches`; returns mean loss and accuracy. `loss_fn(logits, y, x)`, or
        `loss_fn(logits, y, x, v)` for (x, y, v) batches, defaults to cross-entropy."""
        return engine.train_epoch(model, batches, optimizer, compute=self.compute, loss_fn=loss_fn,
                                  after_step=after_step)

    def fit(self, model: nn.Module, indices: torch.Tensor, *, epochs: int, lr: float, batch_size: int = 128,
            momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str | Callable[[int], float] = "cosine",
            augment: bool = False, loss_fn: Callable[..., torch.Tensor] | None = None,
            values: torch.Tensor | None = None, before_epoch: Callable[[int], None] | None = None,
            after_step: Callable[[], None] | None = None, log: bool = True, phase: str = "train",
            epoch_offset: int = 0, extra: dict | None = None) -> nn.Module:
        """One training phase with SGD and per-epoch logging (`{phase}_loss`, `lr` and `extra`, at step
        `epoch_offset + epoch`); returns the model in eval mode.

        Cross-entropy by default; `loss_fn(logits, y, x)`, or `loss_fn(logits, y, x, v)` with `values`
        (one row per index, see `batches`). `schedule`: 'cosine' over `epochs`, 'constant' or a function
        of the 0-based epoch giving the lr multiplier. `before_epoch(epoch)` runs before each epoch,
        `after_step()` after every optimiser step (e.g. to put masked weights back: harness.toolkit)."""
        def on_epoch(epoch: int, stats: dict) -> None:
            if log:
                self.log_epoch(epoch_offset + epoch, model,
                               **{f"{phase}_loss": stats["loss"], "lr": stats["lr"], **(extra or {})})

        progress = (lambda it, total: self.progress(it, desc=f"{self.name} {phase}", total=total)) \
            if self.show_progress else None
        return engine.fit(model,
                          lambda: self.batches(indices, batch_size, shuffle=True, augment=augment, values=values),
                          epochs=epochs, lr=lr, compute=self.compute, momentum=momentum,
                          weight_decay=weight_decay, schedule=schedule, loss_fn=loss_fn, before_epoch=before_epoch,
                          after_step=after_step, on_epoch=on_epoch, progress=progress)

    @torch.no_grad()
    def predict(self, model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
        """float32 logits on the CPU (eval mode, no augmentation)."""
        return engine.predict(model, self.data.dataset, indices, compute=self.compute)

    def log_epoch(self, epoch: int, model: nn.Module, **extra: float) -> dict:
        """Accuracy and loss on retain / forget / validation after `epoch`, plus `extra`, logged with
        step=epoch and handed to the caller's epoch hook. Call it once per epoch of the main phase."""
        start = time.perf_counter()
        metrics = {k: float(v) for k, v in extra.items()}
        for name, idx in self._eval_sets.items():
            logits = self.predict(model, idx)
            labels = self.data.labels(idx)
            metrics[f"epoch_acc_{name}"] = float((logits.argmax(1) == labels).float().mean())
            metrics[f"epoch_loss_{name}"] = float(F.cross_entropy(logits, labels))
        self.history.append({"epoch": epoch, **metrics})
        self.overhead_s += time.perf_counter() - start  # before the hook, which may read the method's time so far
        start = time.perf_counter()
        try:
            if self._on_epoch is not None:
                self._on_epoch(epoch, metrics)
        except BaseException as exc:
            raise CallbackError(exc) from exc
        finally:
            self.overhead_s += time.perf_counter() - start
        return metrics

    def progress(self, iterable: Iterable, desc: str | None = None, total: int | None = None):
        """A progress bar labelled with the method's name (silent with --quiet)."""
        return tqdm(iterable, desc=desc or self.name, total=total, leave=False, disable=not self.show_progress)
