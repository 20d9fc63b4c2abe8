"""The methods in the SalUn paper's terms, and ranked with their default parameters.

Papers since SalUn (Fan et al., ICLR 2024) report UA (1 - forget accuracy), RA (retain accuracy), TA
(test accuracy) and MIA-efficacy in percent, and judge a method by its distance to the retrain model on
the same split averaged over the four (Avg-Gap), not by the extremes: a forget accuracy below retrain's
is over-forgetting, however high its UA. These tables put a run in those terms, so that its numbers and
its ordering can be set beside a paper's; the ranking is of methods as they ship (no tuning), which is
what a reader of such a table compares.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import REFERENCE_ROWS, finished, group_title, groups, mean_ci, method_order, per_seed
from .tables import markdown_table

EFFICACY, AVG_GAP = "mia-efficacy/efficacy", "mia-efficacy/avg_gap"
# (column of the paper, result column, its value in the paper's unit)
SALUN_TERMS = (("UA", "acc_forget", lambda v: 100 * (1 - v)), ("RA", "acc_retain", lambda v: 100 * v),
               ("TA", "acc_test", lambda v: 100 * v), ("MIA-Efficacy", EFFICACY, lambda v: 100 * v))
# Criteria ranked beside Avg-Gap: (name, column, distance of a method's per-seed value to its ideal).
# The forget/validation ratio is compared with retrain's on the same split, the loss MIA with chance.
CRITERIA = (("F/V ratio vs retrain", "forget_val_ratio", "retrain"), ("MIA AUC vs 0.5", "mia/auc", 0.5))


def salun_terms(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, epochs, method): UA, RA, TA, MIA-Efficacy (mean and std over seeds, in percent),
    Avg-Gap (points) and runtime as % of retrain (mean and 95% t interval); empty without mia-efficacy."""
    if EFFICACY not in frame:
        return pd.DataFrame()
    rows = []
    order = method_order(frame)
    for (scenario, epochs), group in groups(finished(frame)):
        for method in [m for m in order if m in set(group["method"])]:
            mine = group[group["method"] == method]
            row = {"scenario": scenario, "epochs": epochs, "method": method, "seeds": mine["seed"].nunique()}
            for name, column, unit in SALUN_TERMS:
                est = mean_ci(unit(per_seed(mine, column)))
                row[name], row[f"{name}_std"] = est.mean, est.std
            for name, column in (("Avg-Gap", AVG_GAP), ("% retrain", "pct_retrain_time")):
                est = mean_ci(per_seed(mine, column))
                row[name], row[f"{name}_low"], row[f"{name}_high"] = est.mean, est.low, est.high
            rows.append(row)
    return pd.DataFrame(rows)


def _distance(mine: pd.DataFrame, retrain: pd.DataFrame, column: str, ideal) -> pd.Series:
    values = per_seed(mine, column)
    target = per_seed(retrain, column) if ideal == "retrain" else pd.Series(ideal, index=values.index)
    return (values - target).abs().dropna()


def ranking(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, epochs): the methods (not the reference rows) by mean Avg-Gap, smallest first, with
    its 95% interval over seeds, whether the paired per-seed difference to the first one's excludes 0
    (`tied` when it does not), and each method's rank on the other criteria (smallest distance first)."""
    if AVG_GAP not in frame:
        return pd.DataFrame()
    out = []
    for (scenario, epochs), group in groups(finished(frame)):
        retrain = group[group["method"] == "retrain"]
        methods = [m for m in method_order(group) if m not in REFERENCE_ROWS]
        gaps = {m: per_seed(group[group["method"] == m], AVG_GAP) for m in methods}
        methods = [m for m in methods if len(gaps[m])]
        if not methods:
            continue
        methods.sort(key=lambda m: gaps[m].mean())
        best = gaps[methods[0]]
        distances = {name: {m: _distance(group[group["method"] == m], retrain, column, ideal).mean()
                            for m in methods}
                     for name, column, ideal in CRITERIA if column in group}
        for rank, method in enumerate(methods, 1):
            est = mean_ci(gaps[method])
            versus = mean_ci((gaps[method] - best).dropna())
            tied = rank == 1 or (versus.n >= 2 and versus.low <= 0 <= versus.high)
            row = {"scenario": scenario, "epochs": epochs, "rank": rank, "method": method, "seeds": est.n,
                   "avg_gap": est.mean, "avg_gap_low": est.low, "avg_gap_high": est.high,
                   "tied_with_first": bool(tied)}
            for name, values in distances.items():
                shown = pd.Series(values).dropna()
                row[f"rank: {name}"] = (int(shown.rank(method="min")[method]) if method in shown
                                        else math.nan)
            out.append(row)
    return pd.DataFrame(out)


def _pm(mean: float, spread: float, fmt: str = "{:.2f}") -> str:
    if not np.isfinite(mean):
        return "-"
    return fmt.format(mean) + (f" ± {fmt.format(spread)}" if np.isfinite(spread) else "")


def _interval(mean: float, low: float, high: float, fmt: str = "{:.1f}") -> str:
    if not np.isfinite(mean):
        return "-"
    return fmt.format(mean) + (f" [{fmt.format(low)}, {fmt.format(high)}]" if np.isfinite(low) else "")


def markdown(terms: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
    """salun_terms and ranking tables as report lines; none when the run has no mia-efficacy attack."""
    if terms.empty:
        return []
    lines = ["## In the SalUn paper's terms", "",
             "UA = 100 (1 - forget accuracy), RA = retain and TA = test accuracy, MIA-Efficacy = share of forget "
             "images the SVC attack calls non-members, all in percent (mean ± std over seeds); the goal is "
             "retrain's value, not the extreme. Avg-Gap: mean |method - retrain| over the four on the same "
             "split, in points; % retrain: runtime, mean [95% interval].", ""]
    for (scenario, epochs), rows in terms.groupby(["scenario", "epochs"], sort=False, dropna=False):
        shown = pd.DataFrame({"method": rows["method"], "seeds": rows["seeds"]})
        for name, _, _ in SALUN_TERMS:
            shown[name] = [_pm(m, s) for m, s in zip(rows[name], rows[f"{name}_std"])]
        for name in ("Avg-Gap", "% retrain"):
            shown[name] = [_interval(m, lo, hi) for m, lo, hi in
                           zip(rows[name], rows[f"{name}_low"], rows[f"{name}_high"])]
        lines += [f"### {group_title(scenario, epochs)}", "", markdown_table(shown.set_index("method")), ""]
    if ranked.empty:
        return lines
    lines += ["## Ranking with default parameters", "",
              "Methods as they ship (no tuning), by Avg-Gap to retrain, smallest first, with its 95% interval "
              "over seeds; `tied` where the paired per-seed difference to the first one's interval holds 0. "
              "Beside it, each method's rank by |forget/validation ratio - retrain's| and by |MIA AUC - 0.5|.",
              ""]
    for (scenario, epochs), rows in ranked.groupby(["scenario", "epochs"], sort=False, dropna=False):
        shown = pd.DataFrame({"rank": rows["rank"], "method": rows["method"], "seeds": rows["seeds"]})
        shown["Avg-Gap"] = [_interval(m, lo, hi) for m, lo, hi in
                            zip(rows["avg_gap"], rows["avg_gap_low"], rows["avg_gap_high"])]
        shown["tied with first"] = ["tied" if t else "" for t in rows["tied_with_first"]]
        for column in [c for c in rows if c.startswith("rank: ")]:
            shown[column[len("rank: "):]] = ["-" if pd.isna(v) else str(int(v)) for v in rows[column]]
        lines += [f"### {group_title(scenario, epochs)}", "", markdown_table(shown.set_index("rank")), ""]
    return lines
