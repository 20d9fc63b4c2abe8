"""`unlearn check-attacks`: can each attack tell a model that saw the forget set from one that did not?

An attack that cannot is no evidence of forgetting, whatever it says about a method. The check scores
two models the answer is known for, on one split of the plan:

- the original, trained on the forget set: its verdict metric must sit clearly on the "remembers" side;
- a held-out retrain (the recipe of the original on the retain set, with a seed that is neither the gold
  retrain's nor any reference's): its verdict metric must be within its interval of the ideal.

An attack's verdict metrics are the ones it declares with an `interval` (a 95% CI). For a metric with a
target (an AUC's 0.5) the original's interval must exclude the target and the held-out retrain's must
contain it; for a direction-only metric (lower is better, say) the original's interval must lie wholly
on the worse side of the held-out retrain's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .cell import FINISHED, Cell, CellResult, Configured, run_attacks
from .evaluation import Outputs, model_outputs
from .metrics import Metric
from .plan import Plan
from .reference_models import SplitModels, witness_seed

PASS, FAIL, SKIPPED, ERROR, UNCHECKED = "PASS", "FAIL", "SKIPPED", "ERROR", "NO VERDICT"


@dataclass
class Verdict:
    attack: str
    status: str
    metric: str = ""
    ideal: str = ""
    original: tuple[float, float, float] | None = None  # value, low, high
    witness: tuple[float, float, float] | None = None
    why: str = ""
    seconds: float = 0.0  # the attack on both models, reference preparation included


@dataclass
class CheckResult:
    verdicts: list[Verdict]
    split_seed: int
    references: int
    witness_seed: int
    setup_seconds: float

    @property
    def ok(self) -> bool:
        return all(v.status in (PASS, SKIPPED) for v in self.verdicts)


def check_attacks(plan: Plan) -> CheckResult:
    """Score every attack of `plan` on the original and a held-out retrain of its first split."""
    start = time.perf_counter()
    service = plan.reference_models()
    split = plan.split(plan.seeds[0])
    refs = service.for_split(split, bank_size=plan.bank_size)
    seed = witness_seed(split.seed)
    witness = service.train(split.retain, seed, desc="held-out retrain")
    witness_out = model_outputs(witness.model, service.data, split, service.compute)
    setup = time.perf_counter() - start
    verdicts: list[Verdict] = []
    for attack in plan.attacks:
        verdicts.extend(_check_one(attack, refs, witness_out))
    return CheckResult(verdicts, split.seed, refs.bank_size, seed, setup)


def _check_one(attack: Configured, refs: SplitModels, witness: Outputs) -> list[Verdict]:
    """Both models through the cell's own attack step (skips, reruns, errors and timing as in a run)."""
    scored, seconds = {}, 0.0
    for label, target, row in (("original", refs.original_out, "original"), ("witness", witness, "retrain")):
        result = CellResult(Cell(label, None, {}, refs.split, (attack,)), FINISHED)
        run_attacks(result, refs, target, lambda n, row=row: refs.reference_reruns(row, n))
        if attack.name in result.skipped:
            return [Verdict(attack.name, SKIPPED, why=result.skipped[attack.name])]
        seconds += result.metrics.pop(f"attack_seconds/{attack.name}", 0.0)
        if attack.name in result.attack_errors:
            return [Verdict(attack.name, ERROR, why=result.attack_errors[attack.name].splitlines()[0],
                            seconds=seconds)]
        scored[label] = result.metrics
    component = attack.component
    checked = {name: m for name, m in component.metrics.items() if m.interval}
    if not checked:
        return [Verdict(attack.name, UNCHECKED, why="declares no metric with an interval, so nothing to judge",
                        seconds=seconds)]
    out = []
    for name, metric in checked.items():
        triples = {label: _triple(attack.name, name, metric, values) for label, values in scored.items()}
        status, why = judge(metric, triples["original"], triples["witness"])
        out.append(Verdict(attack.name, status, name, metric.ideal, triples["original"], triples["witness"], why,
                           seconds))
    return out


def _triple(attack: str, name: str, metric: Metric, values: dict) -> tuple[float, float, float] | None:
    keys = [f"{attack}/{k}" for k in (name, *metric.interval)]
    if not all(k in values for k in keys):
        return None
    return tuple(float(values[k]) for k in keys)


def judge(metric: Metric, original, witness) -> tuple[str, str]:
    """(status, why) of one verdict metric from (value, low, high) on the original and the held-out retrain."""
    if original is None or witness is None:
        return FAIL, "the attack did not return this metric and its interval for both models"
    if any(math.isnan(v) for v in (*original, *witness)):
        return FAIL, "NaN in a value or interval"
    (_, o_lo, o_hi), (_, w_lo, w_hi) = original, witness
    if metric.target is not None:
        t = metric.target
        problems = []
        if o_lo <= t <= o_hi:
            problems.append(f"the original's interval [{o_lo:.3f}, {o_hi:.3f}] contains the ideal {t:g}: "
                            f"the attack cannot see that the original remembers")
        if not w_lo <= t <= w_hi:
            problems.append(f"the held-out retrain's interval [{w_lo:.3f}, {w_hi:.3f}] misses the ideal {t:g}: "
                            f"the attack flags a model that never saw the forget set")
        return ((FAIL, "; ".join(problems)) if problems
                else (PASS, "original outside, held-out retrain inside the ideal"))
    if metric.higher_is_better is not None:
        worse = o_hi < w_lo if metric.higher_is_better else o_lo > w_hi
        side = "below" if metric.higher_is_better else "above"
        if worse:
            return PASS, f"the original's interval lies wholly {side} the held-out retrain's"
        return FAIL, (f"the original's interval [{o_lo:.3f}, {o_hi:.3f}] is not wholly {side} the held-out "
                      f"retrain's [{w_lo:.3f}, {w_hi:.3f}]")
    return UNCHECKED, "the metric declares no ideal (target or direction)"


def format_verdicts(result: CheckResult) -> str:
    """The terminal table of `unlearn check-attacks`."""
    def triple(t):
        return "-" if t is None else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"

    rows = [("attack", "verdict metric", "ideal", "original [95% CI]", "held-out retrain [95% CI]", "s", "result")]
    for v in result.verdicts:
        rows.append((v.attack, v.metric or "-", v.ideal or "-", triple(v.original), triple(v.witness),
                     f"{v.seconds:.1f}", v.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {v.attack}{f' {v.metric}' if v.metric else ''}: {v.why}" for v in result.verdicts
             if v.status != PASS]
    return "\n".join(lines + (["", "why:"] + notes if notes else []))
