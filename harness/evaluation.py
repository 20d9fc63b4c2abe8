"""One evaluation pass per model: logits on retain, forget, validation and test, read by every metric.

Attacks receive the same `Outputs` objects, so adding an attack never adds a forward pass over the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

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
    """float32 logits and int64 labels (CPU) of one model on each split."""

    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]

    def losses(self, split: str) -> torch.Tensor:
        """Per-sample cross-entropy."""
        return F.cross_entropy(self.logits[split], self.labels[split], reduction="none")

    def probs(self, split: str) -> torch.Tensor:
        return self.logits[split].softmax(1)

    def correct(self, split: str) -> torch.Tensor:
        return self.logits[split].argmax(1) == self.labels[split]

    def accuracy(self, split: str) -> float:
        return float(self.correct(split).float().mean())

    def confidence(self, split: str) -> torch.Tensor:
        """Logit-scaled confidence phi = z_y - logsumexp_{j != y} z_j (stable)."""
        z, y = self.logits[split], self.labels[split]
        true = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], float("-inf")).logsumexp(1)
        return true - others


@dataclass(frozen=True)
class PrepareInput:
    """What an attack's `prepare` sees, once per split: the reference models' outputs and the split."""

    original: Outputs
    retrain: Outputs | None  # None while tuning: no tuning signal may come from the retrain model
    seed: int = 0  # the split seed: use it for any randomness of the attack
    scenario: str = ""
    info: dict = field(default_factory=dict)  # what the scenario chose (e.g. the forgotten class)


@dataclass(frozen=True)
class AttackInput:
    """What an attack scores: the model under test and, when known, the original and retrain references.

    `prepared` is what the attack's `prepare` returned for this split (None without one)."""

    target: Outputs
    original: Outputs | None = None
    retrain: Outputs | None = None
    seed: int = 0
    scenario: str = ""
    info: dict = field(default_factory=dict)
    prepared: Any = None


def model_outputs(model: nn.Module, data: ImageData, split: Split, compute: engine.Compute) -> Outputs:
    logits, labels = {}, {}
    for name in SPLIT_NAMES:
        idx = getattr(split, name)
        logits[name] = engine.predict(model, data, idx, compute=compute)
        labels[name] = data.labels[idx.to(data.labels.device)].cpu()
    return Outputs(logits, labels)


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


def run_attack(attack: Attack, params: dict, inputs: AttackInput) -> dict[str, float]:
    """One attack on one model, its metrics namespaced as `attack/metric`; raises what the attack raises,
    or a ValueError if it returns a metric it did not declare."""
    result = attack.fn(inputs, dict(params))
    if not isinstance(result, Mapping):
        raise TypeError(f"attack {attack.name!r} returned {type(result).__name__}, expected a dict of metrics")
    undeclared = sorted(set(result) - set(attack.metrics))
    if undeclared:
        raise ValueError(f"attack {attack.name!r} returned undeclared metric(s) {', '.join(undeclared)}; "
                         f"declared: {', '.join(attack.metrics)}")
    return {attack_metric_name(attack.name, k): float(v) for k, v in result.items()}
