"""Metric declarations: what each logged number means and which value is ideal.

Reports, the terminal summary and (later) the tuner read these declarations instead of special-casing
names, so a third-party attack's metrics are shown and judged exactly like the built-in ones (the
torchmetrics `higher_is_better` idea, plus a target for numbers such as an AUC whose ideal is 0.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: its ideal (a `target` value or a direction) and how reports show it.

    Give `target` (e.g. 0.5 for a membership-inference AUC), or `higher_is_better`, or neither for a
    number that is context, not a score (a confidence bound, a count). `label` is the column header;
    `summary=False` keeps it out of the terminal table and the report's summary (it is still logged).
    `interval=(low, high)` names the two sibling metrics that hold its 95% confidence interval: such a
    metric is the attack's verdict in `unlearn check-attacks`."""

    target: float | None = None
    higher_is_better: bool | None = None
    label: str = ""
    summary: bool = True
    fmt: str = "{:.3f}"
    help: str = ""
    interval: tuple[str, str] | None = None

    def __post_init__(self):
        if self.target is not None and self.higher_is_better is not None:
            raise ValueError("a metric declares a target or a direction, not both")
        if self.interval is not None and (len(self.interval) != 2
                                          or not all(isinstance(b, str) for b in self.interval)):
            raise ValueError("interval names two metrics: (low, high)")
        if self.interval is not None:
            object.__setattr__(self, "interval", tuple(self.interval))  # from JSON it comes back a list

    @property
    def ideal(self) -> str:
        if self.target is not None:
            return f"{self.target:g}"
        if self.higher_is_better is not None:
            return "higher" if self.higher_is_better else "lower"
        return ""

    def distance(self, value: float) -> float:
        """How far `value` is from ideal (0 is ideal; larger is worse), for ranking; NaN without an ideal."""
        if self.target is not None:
            return abs(value - self.target)
        if self.higher_is_better is not None:
            return -value if self.higher_is_better else value
        return math.nan

    def as_dict(self) -> dict:
        return {"target": self.target, "higher_is_better": self.higher_is_better, "label": self.label,
                "summary": self.summary, "fmt": self.fmt, "help": self.help,
                "interval": list(self.interval) if self.interval else None}


def attack_metric_name(attack: str, metric: str) -> str:
    """Attack metrics are logged as `attack/metric`: two attacks can never overwrite each other or the
    harness's own metrics, and MLflow's UI groups each attack's charts under its name."""
    return f"{attack}/{metric}"


# The harness's own metrics, declared like an attack's.
UTILITY: dict[str, Metric] = {
    "acc_retain": Metric(higher_is_better=True, label="retain", help="accuracy on the retain set"),
    "acc_forget": Metric(label="forget", help="accuracy on the forget set; ideal: the validation accuracy"),
    "acc_validation": Metric(higher_is_better=True, label="valid", help="accuracy on the validation set"),
    "acc_test": Metric(higher_is_better=True, label="test", help="accuracy on the test set"),
    "forget_val_ratio": Metric(target=1.0, label="F/V ratio",
                               help="forget / validation accuracy (the paper's Figure 12); below 1 is over-forgetting"),
    "unlearn_seconds": Metric(higher_is_better=False, label="time s", fmt="{:.1f}",
                              help="wall-clock of the unlearning call, per-epoch evaluation excluded"),
    "pct_retrain_time": Metric(higher_is_better=False, label="% retrain", fmt="{:.1f}",
                               help="unlearning time as % of a retrain timed on the same device in the same process"),
}
