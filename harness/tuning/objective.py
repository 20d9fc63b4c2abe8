"""What a trial is scored on, and which configuration is recommended.

Objectives (both minimised), from signals a real user has: no retrain model is involved.
- `ratio`: |acc_forget / acc_validation - 1|; a model that forgot looks at its forget set as at unseen data.
- `attack`: the distance of an attack metric to its declared ideal (default `mia/signed_auc`, ideal 0.5).

Constraints (feasible when <= 0), set with `trial.set_constraint`:
- `utility`: validation accuracy may drop at most `tolerance` below the original's. Without it the search
  finds models that are simply broken (a ratio of 1 and an AUC of 0.5 at chance accuracy).
- `time`: the unlearning time at most `time_budget` % of a retrain.

`score` mode folds them into one number for single-objective studies with a pruner:
    score = ratio + 2 * attack + 10 * (max(0, utility) + max(0, time))
(2 puts an AUC at 0 or 1 level with a ratio of 2, the cpu original's; 10 makes any violation cost more
than any gain.)

The recommended trial of a Pareto study is, among the feasible trials of the front, the one with the
smallest normalised distance sqrt((ratio / ratio_0)^2 + (attack / attack_0)^2), where ratio_0 and
attack_0 are the original model's distances on the same split: the share of the original's gap left.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..metrics import UTILITY, Metric

PARETO, SCORE = "pareto", "score"
ATTACK_WEIGHT, PENALTY = 2.0, 10.0


@dataclass(frozen=True)
class Signals:
    ratio: float
    attack: float
    utility: float  # constraint: > 0 is infeasible
    time: float  # constraint: > 0 is infeasible
    score: float

    @property
    def feasible(self) -> bool:
        return self.utility <= 0 and self.time <= 0

    def as_dict(self) -> dict:
        return {"objective/ratio": self.ratio, "objective/attack": self.attack, "constraint/utility": self.utility,
                "constraint/time": self.time, "objective/score": self.score}


@dataclass(frozen=True)
class Objective:
    kind: str  # PARETO or SCORE
    attack_metric: str  # "attack/metric", as logged
    declaration: Metric
    tolerance: float = 0.03  # accuracy (fraction) the validation accuracy may lose against the original's
    time_budget: float = 20.0  # % of retrain

    @property
    def names(self) -> list[str]:
        return ["ratio", "attack"] if self.kind == PARETO else ["score"]

    @property
    def directions(self) -> list[str]:
        return ["minimize"] * len(self.names)

    def signals(self, metrics: dict, original_validation: float) -> Signals:
        ratio = UTILITY["forget_val_ratio"].distance(metrics.get("forget_val_ratio", math.inf))
        attack = self.declaration.distance(metrics[self.attack_metric])
        utility = (original_validation - self.tolerance) - metrics["acc_validation"]
        time = (metrics["pct_retrain_time"] - self.time_budget) / 100.0
        score = ratio + ATTACK_WEIGHT * attack + PENALTY * (max(0.0, utility) + max(0.0, time))
        return Signals(ratio, attack, utility, time, score)

    def reference(self, original: dict) -> Signals:
        """The original model's signals on a split (no time cost): what distances are normalised by."""
        return self.signals({**original, "pct_retrain_time": 0.0}, original["acc_validation"])

    def values(self, s: Signals) -> list[float]:
        return [s.ratio, s.attack] if self.kind == PARETO else [s.score]

    def intermediate(self, epoch_metrics: dict, original_validation: float) -> float:
        """The score as far as an epoch shows it (for the pruner): ratio and utility on the epoch's evaluation
        subsets, and time so far; the attack is only run at the end."""
        valid = epoch_metrics.get("epoch_acc_validation", 0.0)
        ratio = abs(epoch_metrics.get("epoch_acc_forget", 0.0) / valid - 1) if valid > 0 else 1.0
        utility = (original_validation - self.tolerance) - valid
        time = (epoch_metrics.get("epoch_pct_retrain", 0.0) - self.time_budget) / 100.0
        return ratio + PENALTY * (max(0.0, utility) + max(0.0, time))

    def describe(self) -> dict:
        return {"kind": self.kind, "names": self.names, "attack_metric": self.attack_metric,
                "tolerance": self.tolerance, "time_budget": self.time_budget}


def normalised_distance(ratio: float, attack: float, ratio_0: float, attack_0: float) -> float:
    """sqrt((ratio / ratio_0)^2 + (attack / attack_0)^2): 0 is ideal, sqrt(2) is as far as the original."""
    return math.hypot(ratio / max(ratio_0, 1e-9), attack / max(attack_0, 1e-9))


def pareto_front(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point dominates (all objectives minimised)."""
    front = []
    for i, p in enumerate(points):
        if not any(all(q_k <= p_k for q_k, p_k in zip(q, p)) and q != p for q in points):
            front.append(i)
    return front
