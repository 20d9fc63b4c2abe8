"""One evaluation pass per model: logits and penultimate features on retain, forget, validation and test,
read by every metric.

Attacks receive the same `Outputs` objects, so adding an attack never adds a forward pass over the data;
reference models (the bank) reach them as cached logits, never as models.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import engine
from .data import ImageData
from .metrics import attack_metric_name
from .registry import Attack
from .splits import SPLIT_NAMES, Split


@dataclass(frozen=True)
class Outputs:
    """float32 logits and int64 labels (CPU) of one model on each split; `indices` are the images' positions
    in the data set (to name an exposed sample); `features` the input of the model's last linear
    layer (penultimate features; float16 where every value fits, else float32: `engine.compact`), or None
    for a model without one."""

    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    indices: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[str, torch.Tensor] | None = None

    def losses(self, split: str) -> torch.Tensor:
        """Per-sample cross-entropy."""
        return F.cross_entropy(self.logits[split], self.labels[split], reduction="none")

    def probs(self, split: str) -> torch.Tensor:
        return self.logits[split].softmax(1)

    def correct(self, split: str) -> torch.Tensor:
        return self.logits[split].argmax(1) == self.labels[split]

    def accuracy(self, split: str) -> float:
        return float(self.correct(split).float().mean())

    def true_probs(self, split: str) -> torch.Tensor:
        """p_y: the probability given to the true label."""
        return true_probs(self.logits[split], self.labels[split])

    def confidence(self, split: str) -> torch.Tensor:
        """Logit-scaled confidence phi = z_y - logsumexp_{j != y} z_j (stable)."""
        return confidence(self.logits[split], self.labels[split])


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """phi = z_y - logsumexp_{j != y} z_j = log p_y - log(1 - p_y), over the last axis of `logits`."""
    y = labels.expand(logits.shape[:-1])[..., None]
    true = logits.gather(-1, y).squeeze(-1)
    others = logits.scatter(-1, y, float("-inf")).logsumexp(-1)
    return true - others


def true_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p_y over the last axis of `logits`."""
    probs = logits.softmax(-1)
    return probs.gather(-1, labels.expand(probs.shape[:-1])[..., None]).squeeze(-1)


@dataclass(frozen=True)
class ReferenceOutputs:
    """The reference bank's outputs: K retrain models (the recipe of the original, on the same retain set,
    K seeds other than the gold retrain's) whose logits are cached (float16 where they fit). `logits[split]` is
    (K, n, C) float32; forget, validation and test images are non-members of every one of them."""

    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    seeds: tuple[int, ...] = ()

    def __len__(self) -> int:
        return next(iter(self.logits.values())).shape[0] if self.logits else 0

    def confidence(self, split: str) -> torch.Tensor:
        """(K, n) logit-scaled confidences phi."""
        return confidence(self.logits[split], self.labels[split])

    def true_probs(self, split: str) -> torch.Tensor:
        """(K, n) probabilities of the true label."""
        return true_probs(self.logits[split], self.labels[split])

    def model(self, i: int) -> Outputs:
        """Reference model `i` as an `Outputs` (no features: the bank keeps logits only)."""
        return Outputs({k: v[i] for k, v in self.logits.items()}, dict(self.labels))

    def subset(self, models: Sequence[int] | slice) -> ReferenceOutputs:
        keep = list(range(len(self)))[models] if isinstance(models, slice) else list(models)
        return ReferenceOutputs({k: v[keep] for k, v in self.logits.items()}, dict(self.labels),
                                tuple(self.seeds[i] for i in keep) if self.seeds else ())


@dataclass(frozen=True)
class PrepareInput:
    """What an attack's `prepare` sees, once per split: the reference models' outputs and the split."""

    original: Outputs
    retrain: Outputs | None  # None while tuning: no tuning signal may come from the retrain model
    seed: int = 0  # the split seed: use it for any randomness of the attack
    scenario: str = ""
    info: dict = field(default_factory=dict)  # what the scenario chose (e.g. the forgotten class)
    references: ReferenceOutputs | None = None  # the bank (None without --references)
    random: Outputs | None = None  # a randomly initialised model, for an attack that needs "random"


@dataclass(frozen=True)
class AttackInput:
    """What an attack scores: the model under test and, when known, the original and retrain references.

    `prepared` is what the attack's `prepare` returned for this split (None without one). `references`
    and `random` are given to attacks that declared they need them. `reruns` holds the outputs of the
    same method run again on the same split with other seeds (for an attack that declared `reruns`):
    for the retrain row they are the bank's last models, for the original row copies of the original,
    whose recipe is deterministic."""

    target: Outputs
    original: Outputs | None = None
    retrain: Outputs | None = None
    seed: int = 0
    scenario: str = ""
    info: dict = field(default_factory=dict)
    prepared: Any = None
    references: ReferenceOutputs | None = None
    random: Outputs | None = None
    reruns: tuple[Outputs, ...] = ()


@dataclass(frozen=True)
class AttackResult:
    """What an attack may return instead of a plain dict of metrics: the metrics and named tables (e.g. the
    most exposed samples), each logged as an artifact `attacks/<attack>/<name>.json` of the cell's run."""

    metrics: Mapping[str, float]
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)


def model_outputs(model: nn.Module, data: ImageData, split: Split, compute: engine.Compute) -> Outputs:
    """The evaluation pass: logits and penultimate features on every split, in one prediction
    over all their images (a few large batches on a GPU rather than a partial batch per split)."""
    parts = [getattr(split, name).cpu() for name in SPLIT_NAMES]
    logits, features = engine.predict(model, data, torch.cat(parts), compute=compute, features=True)
    sizes = [len(p) for p in parts]
    own = lambda t: dict(zip(SPLIT_NAMES, (part.clone() for part in t.split(sizes))))  # noqa: E731  (no shared storage)
    labels = {name: data.labels[idx.to(data.labels.device)].cpu() for name, idx in zip(SPLIT_NAMES, parts)}
    return Outputs(own(logits), labels, dict(zip(SPLIT_NAMES, parts)), None if features is None else own(features))


def utility_metrics(out: Outputs, retrain: Outputs | None = None) -> dict[str, float]:
    """Accuracy and mean loss per split, the forget/validation ratio and the gaps to retrain."""
    metrics: dict[str, float] = {}
    for name in SPLIT_NAMES:
        metrics[f"acc_{name}"] = out.accuracy(name)
        metrics[f"loss_{name}"] = float(out.losses(name).mean())
    if metrics["acc_validation"] > 0:
        metrics["forget_val_ratio"] = metrics["acc_forget"] / metrics["acc_validation"]
    if retrain is not None:
        for name in SPLIT_NAMES:
            metrics[f"gap_acc_{name}"] = abs(metrics[f"acc_{name}"] - retrain.accuracy(name))
    return metrics


def run_attack(attack: Attack, params: dict, inputs: AttackInput) -> AttackResult:
    """One attack on one model, its metrics namespaced as `attack/metric`; raises what the attack raises,
    a ValueError if it returns a metric it did not declare, a FloatingPointError if one is not finite."""
    returned = attack.fn(inputs, dict(params))
    result, tables = (returned.metrics, returned.tables) if isinstance(returned, AttackResult) else (returned, {})
    if not isinstance(result, Mapping):
        raise TypeError(f"attack {attack.name!r} returned {type(result).__name__}, expected a dict of metrics")
    undeclared = sorted(set(result) - set(attack.metrics))
    if undeclared:
        raise ValueError(f"attack {attack.name!r} returned undeclared metric(s) {', '.join(undeclared)}; "
                         f"declared: {', '.join(attack.metrics)}")
    for name, table in tables.items():
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"attack {attack.name!r}: table {name!r} is {type(table).__name__}, expected a DataFrame")
    values = {k: float(v) for k, v in result.items()}
    bad = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"attack {attack.name!r} returned non-finite {', '.join(bad)}: a metric is a number "
                                 f"(leave out one that is undefined here; it is then not logged)")
    return AttackResult({attack_metric_name(attack.name, k): v for k, v in values.items()}, dict(tables))
