"""After the trials: choose a configuration, judge it against the defaults on held-out seeds, recommend.

The held-out splits are other forget sets (other seeds), and their validation and test images come
from the half of the held-out images that no trial saw ("judge" splits; trials read the "tune" half).
So neither the validation accuracy, nor the attack's non-members, nor distillation's training images
of the judging splits were ever part of a signal a trial optimised. A configuration is recommended only
if, on those splits, it is feasible and closer to ideal than the defaults.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..cell import Cell
from ..recorder import Recorder
from ..tracking import FINISHED
from .objective import PARETO, normalised_distance, pareto_front

log = logging.getLogger(__name__)
CONFIGS = ("original", "retrain", "default", "tuned")


def trial_rows(study) -> list[dict]:
    """Every trial as plain data (the report's table, tuning.json)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        a = t.user_attrs
        rows.append({
            "number": t.number, "state": t.state.name, "params": dict(t.params),
            "values": list(t.values) if t.values else None,
            "constraints": {k: a.get(f"constraint/{k}") for k in ("utility", "time")},
            "feasible": (a.get("constraint/utility", 1) <= 0 and a.get("constraint/time", 1) <= 0)
            if t.state.name == "COMPLETE" else None,
            "metrics": {k: v for k, v in a.items()
                        if isinstance(v, float) and not k.startswith(("objective/", "constraint/"))},
            "objective": {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("objective/")},
            "seconds": t.duration.total_seconds() if t.duration else None,
            "reason": a.get("reason") or a.get("error"), "baseline": a.get("baseline"),
            "mlflow_run_id": a.get("mlflow_run_id"), "worker": a.get("worker"),
        })
    return rows


def choose(rows: list[dict], kind: str, original: dict) -> dict | None:
    """The configuration to judge on held-out seeds: the feasible Pareto trial with the smallest normalised
    distance (Pareto studies), or the feasible trial with the lowest score (score studies).

    With no feasible trial, the complete trial that breaks the constraints least is returned, marked
    `infeasible`: it is shown on the held-out seeds for the record (what the search got to), never
    recommended. None when no trial completed."""
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    feasible = [r for r in complete if r["feasible"]]
    if not feasible:
        if not complete:
            return None
        violation = lambda r: sum(max(0.0, v) for v in r["constraints"].values() if v is not None)  # noqa: E731
        return {**min(complete, key=lambda r: (violation(r), r["values"])), "infeasible": True}
    if kind == PARETO:
        front = [feasible[i] for i in pareto_front([tuple(r["values"]) for r in feasible])]
        for r in front:
            r["distance"] = normalised_distance(r["objective"]["ratio"], r["objective"]["attack"],
                                                original["objective/ratio"], original["objective/attack"])
        best = min(front, key=lambda r: r["distance"])
        best["front"] = [r["number"] for r in front]
        return best
    return min(feasible, key=lambda r: r["values"][0])


def evaluate_holdout(tuner, study, tuned: dict[str, Any] | None, parent) -> list[dict]:
    """original, retrain, default and (if any) tuned on every held-out seed, each a cell recorded under the
    study's parent; a cell FINISHED before (this command run again, another study of the same experiment,
    tuned parameters equal to the defaults) is reused."""
    hp = tuner.holdout_plan
    method = next(m for m in hp.methods if m.name == study.method)
    configs = {"default": study.space.defaults, **({"tuned": tuned} if tuned is not None else {})}
    recorder = Recorder(tuner.tracker, parent, hp, tags={"study_name": study.optuna.study_name})
    service = hp.reference_models()
    rows = []
    for seed in hp.seeds:
        split = hp.split(seed)
        cells = {c.name: c for c in hp.cells(split)[:2]}  # the original and retrain rows
        for label, params in configs.items():
            cells[label] = Cell(method.name, method.component, dict(params), split, hp.attacks, hp.setting)
        done = recorder.finished(cells.values())
        for label, cell in cells.items():
            recorded = done.get(cell.hash)
            if recorded is None:
                models = service.for_split(split, retrain=True, bank_size=hp.bank_size)
                recorded = recorder.record(cell, models, name=f"held-out {label} seed={seed}",
                                           tags={"config": label, "heldout_part": "judge"})
                done[cell.hash] = recorded
                log.info("held-out %s seed=%d: %s", label, seed, _line(recorded.metrics, tuner.objective.attack_metric))
            rows.append({"config": label, "seed": seed, "status": recorded.status, "error": recorded.error,
                         **recorded.metrics})
    return rows


def _line(m: dict, attack_metric: str) -> str:
    parts = [f"{k} {m[k]:.3f}" for k in ("acc_retain", "acc_validation", "forget_val_ratio", attack_metric) if k in m]
    if "pct_retrain_time" in m:
        parts.append(f"{m['pct_retrain_time']:.1f}% of retrain")
    return ", ".join(parts)


def judge(rows: list[dict], objective, chosen: dict | None) -> dict:
    """Per config: mean and std over held-out seeds of the metrics and of the normalised distance (each
    seed normalised by that seed's original); the verdict and the recommended config."""
    by = {c: [r for r in rows if r["config"] == c and r["status"] == FINISHED] for c in CONFIGS}
    originals = {r["seed"]: r for r in by["original"]}
    keys = ["acc_retain", "acc_forget", "acc_validation", "acc_test", "forget_val_ratio", objective.attack_metric,
            "pct_retrain_time", "unlearn_seconds", "gap_acc_forget", "gap_acc_validation"]
    # each default / tuned row against its own seed's original: signals and normalised distance, once
    judged = {}
    for config in ("default", "tuned"):
        for r in by[config]:
            o = originals.get(r["seed"])
            if o is not None:
                s, so = objective.signals(r, o["acc_validation"]), objective.reference(o)
                judged[config, r["seed"]] = (s, normalised_distance(s.ratio, s.attack, so.ratio, so.attack))
    summary = {}
    for config, items in by.items():
        if not items:
            continue
        stats = {k: _mean_std([r[k] for r in items if k in r]) for k in keys}
        mine = [v for (c, _), v in judged.items() if c == config]
        if mine:
            stats["distance"] = _mean_std([dist for _, dist in mine])
            stats["feasible_seeds"] = int(sum(s.feasible for s, _ in mine))
            stats["feasible"] = float(np.mean([s.utility for s, _ in mine])) <= 0 and \
                float(np.mean([s.time for s, _ in mine])) <= 0
        summary[config] = stats
    d, t = summary.get("default"), summary.get("tuned")
    if chosen is None:
        verdict, recommended = "no trial completed: nothing to recommend; the defaults stay", "default"
    elif chosen.get("infeasible"):
        verdict, recommended = (f"no trial was feasible on the tuning seeds: nothing to recommend, the defaults stay "
                                f"(trial {chosen['number']}, the one closest to the constraints, is shown as 'tuned' "
                                f"for the record)"), "default"
    elif d is None or t is None or "distance" not in t:
        verdict, recommended = "the held-out evaluation failed: nothing recommended", "default"
    elif not t["feasible"]:
        verdict, recommended = ("the tuned configuration breaks a constraint on the held-out seeds (mean validation "
                                "accuracy or time): the defaults stay"), "default"
    elif t["distance"][0] < d["distance"][0]:
        seeds = [seed for c, seed in judged if c == "tuned" and ("default", seed) in judged]
        wins = sum(judged["tuned", seed][1] < judged["default", seed][1] for seed in seeds)
        better = f"{wins} of {len(seeds)} seeds"
        verdict = (f"tuned is closer to ideal on the held-out seeds (normalised distance {t['distance'][0]:.3f} vs "
                   f"{d['distance'][0]:.3f} for the defaults; better on {better}) and feasible: recommended")
        recommended = "tuned"
    else:
        verdict = (f"tuned is NOT better than the defaults on the held-out seeds (normalised distance "
                   f"{t['distance'][0]:.3f} vs {d['distance'][0]:.3f}): the defaults stay")
        if not d.get("feasible"):
            verdict += (" although they break a constraint (mean validation accuracy or time) there: no "
                        "configuration found meets the constraints and forgets as well")
        recommended = "default"
    return {"summary": summary, "verdict": verdict, "recommended": recommended}


def _mean_std(values: list[float]) -> list[float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return [math.nan, math.nan]
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]
