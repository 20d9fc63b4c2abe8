"""One evaluation pass per model: logits on retain, forget, validation and test, read by every metric.

Attacks receive the same `Outputs` objects, so adding an attack never adds a forward pass over the data.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import engine
from .data import ImageData
from .registry import Attack
from .splits import SPLIT_NAMES, Split

log = logging.getLogger(__name__)


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
class AttackInput:
    """What an attack sees: the model under test and, when known, the original and retrain references."""

    target: Outputs
    original: Outputs | None = None
    retrain: Outputs | None = None
    seed: int = 0
    scenario: str = ""
    info: dict = field(default_factory=dict)


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


def run_attacks(attacks: list[Attack], inputs: AttackInput) -> tuple[dict[str, float], dict[str, str]]:
    """All attacks on one model; an attack that raises is reported and the others still run."""
    metrics: dict[str, float] = {}
    errors: dict[str, str] = {}
    for attack in attacks:
        try:
            result = attack.fn(inputs)
            metrics.update({k: float(v) for k, v in result.items()})
        except Exception as exc:
            log.warning("attack %s failed: %s: %s", attack.name, type(exc).__name__, exc)
            errors[attack.name] = traceback.format_exc()
    return metrics, errors
