"""Statistics over a benchmark's result rows: per-method summaries with confidence intervals, the gap to
retrain, under-/over-forgetting flags and paired comparisons between methods, for reports and figures.

The input is the frame of result rows (one per evaluated cell: method, scenario, epochs, seed, status,
run_id and metric columns). Only FINISHED rows enter statistics. Rows of methods and of the reference
models ("original", "retrain") with the same (scenario, seed) share a forget split, so comparisons over
common seeds are paired: the split's own effect cancels in the per-seed difference.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import Metric, attack_metric_name
from .tables import column_groups, columns, headers, markdown_table

REFERENCE_ROWS = ("original", "retrain")
FINISHED = "FINISHED"
LEVEL = 0.95
KEYS = ["scenario", "epochs", "method"]
FLAG_COLUMNS = ["under_forgetting", "over_forgetting", "flag_reasons"]

# Colours are fixed by position so that every figure of a run draws a method in the same colour:
# matplotlib's tab10 without its grey (kept for the reference models), then tab20's light shades.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")
REFERENCE_COLORS = {"original": "#222222", "retrain": "#8c8c8c"}

# Which side of its ideal means the forget set still looks trained on, by the metric's own name (so every
# attack that reports it is read alike): +1 when a value above the ideal is under-forgetting, -1 when it is
# over-forgetting. Metrics not listed never flag: two-sided ones (forget_quality/relative falls below 1
# whichever way a model differs from retrain), mia/auc, which is about max(A, 1 - A) and hides the side,
# and zrf_diff: a model that lost accuracy everywhere is closer to a random one on every split, so ZRF
# above retrain's measured general damage, not forgetting, on the cpu protocol (simple at 2 epochs:
# validation 0.31, zrf_diff +0.41).
FORGET_DIRECTION = {
    "forget_val_ratio": +1,  # forget accuracy above what data the model never saw gets
    "signed_auc": +1,  # mia: AUC of -loss, forget vs test
    "auc": +1,  # membership_metrics (lira-offline, rmia, ...): a higher score means "member"
    "tpr_1pct": +1,
    "efficacy_diff": -1,  # svc-efficacy: below 0 = forget still looks trained on
}

FLAG_RULES = """\
Under-/over-forgetting flags (per scenario, epoch budget and method; 95% intervals):
- Evidence comes from the forget/validation accuracy ratio and from attack metrics that declare a target
  and an interval and whose direction is known (signed MIA AUC, membership AUC and TPR@1%, the
  MIA-efficacy difference to retrain). Above the ideal means "the forget set still looks trained on" for
  all of them except the MIA-efficacy difference, where it is the other way round. ZRF is left out: it
  rises with any loss of accuracy, on every split, not only on the forgotten one.
- Each is compared with the retrain model on the same splits when retrain has the metric: with 2 or more
  common seeds, the Student-t interval of the per-seed difference (method - retrain) must exclude 0; with
  one seed, the two runs' own intervals (the metric's _low/_high) must not overlap. Without retrain values
  the metric's declared target is used instead: the t interval of the mean over seeds (2 or more seeds), or
  the run's own interval (one seed), must exclude it. Retrain, not the target, is the reference when it is
  available because a never-trained model need not sit at the target (a targeted forget set is not
  distributed like the test set).
- UNDER-forgetting: some metric lies on the "still trained on" side; OVER-forgetting: some metric lies on
  the other side (the forget set looks less familiar than unseen data: the Streisand effect). Both can
  be set when metrics disagree. Retrain defines correct forgetting and is never flagged. One seed without
  run intervals (the accuracy ratio) gives no verdict.
"""


class Estimate(NamedTuple):
    """A mean over seeds with its spread and 95% interval (NaN where n is too small)."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def finished(frame: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED rows, with `epochs` as floats (a run without budgets stores None)."""
    done = frame[frame["status"] == FINISHED]
    return done.assign(epochs=pd.to_numeric(done["epochs"], errors="coerce"))


def method_order(frame: pd.DataFrame) -> list[str]:
    """The reference models first, then the methods as they first appear: one order for every table and figure."""
    seen = list(dict.fromkeys(frame["method"]))
    return [m for m in REFERENCE_ROWS if m in seen] + [m for m in seen if m not in REFERENCE_ROWS]


def method_colors(methods: list[str]) -> dict[str, str]:
    """Method -> colour: reference models in greys, the others through PALETTE in the given order."""
    others = [m for m in methods if m not in REFERENCE_COLORS]
    return {m: REFERENCE_COLORS.get(m) or PALETTE[others.index(m) % len(PALETTE)] for m in methods}


def group_title(scenario, epochs: float) -> str:
    """How tables and figures name a (scenario, epochs) group."""
    return f"{scenario}, {'method defaults' if pd.isna(epochs) else f'{epochs:g} epochs'}"


def groups(frame: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """((scenario, epochs), rows) per scenario (in order of appearance) and epoch budget (ascending).

    Rows without a budget (the reference models) belong to every budget of their scenario, so each group
    carries its own original and retrain; epochs is NaN only for a scenario that has no budgets at all."""
    frame = frame.assign(epochs=pd.to_numeric(frame["epochs"], errors="coerce"))
    for scenario, rows in frame.groupby("scenario", sort=False, dropna=False):
        budgets = sorted(rows["epochs"].dropna().unique())
        if not budgets:
            yield (scenario, math.nan), rows
        unbudgeted = rows[rows["epochs"].isna()]
        for epochs in budgets:
            yield (scenario, float(epochs)), pd.concat([unbudgeted, rows[rows["epochs"] == epochs]])


def mean_ci(values, level: float = LEVEL) -> Estimate:
    """n, mean, std (ddof=1) and the Student-t interval of the mean of the finite values; NaN where n is
    too small (no std or interval from one value)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if n == 1:
        return Estimate(1, mean, math.nan, math.nan, math.nan)
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def per_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """The finite values of `column`, indexed by seed: subtracting two such series pairs them by split."""
    if column not in rows or rows.empty:
        return pd.Series(dtype=float)
    return rows.groupby("seed")[column].mean().dropna()


def paired_gap(rows: pd.DataFrame, reference: pd.DataFrame, column: str) -> Estimate:
    """Mean and t interval of rows - reference over the seeds both have (paired by split)."""
    return mean_ci((per_seed(rows, column) - per_seed(reference, column)).dropna())


class _SeedMeans:
    """`per_seed` of the same rows for many columns, from one groupby: a summary asks it of every cell for
    every column and check, and one groupby per column and cell was most of a report's time. The values are
    those of `per_seed` (the same per-group mean, in the same order)."""

    def __init__(self, rows: pd.DataFrame, columns: list[str]):
        self.rows = rows
        present = list(dict.fromkeys(c for c in columns if c in rows))
        self.table = rows.groupby("seed")[present].mean() if present and not rows.empty else None

    def __call__(self, column: str) -> pd.Series:
        if self.table is None or column not in self.table:
            return pd.Series(dtype=float)
        return self.table[column].dropna()

    def on_seeds(self, seeds) -> _SeedMeans:
        """The same for the rows of `seeds` only (retrain on a method's splits)."""
        restricted = _SeedMeans.__new__(_SeedMeans)
        restricted.rows = self.rows[self.rows["seed"].isin(seeds)]
        restricted.table = None if self.table is None else self.table[self.table.index.isin(seeds)]
        if restricted.table is not None and restricted.rows.empty:
            restricted.table = None
        return restricted


def _cells(frame: pd.DataFrame) -> Iterator[tuple[str, float, str, pd.DataFrame, pd.DataFrame]]:
    """(scenario, epochs, method, its FINISHED rows, retrain's FINISHED rows) per group and method."""
    order = method_order(frame)
    for (scenario, epochs), rows in groups(finished(frame)):
        retrain = rows[rows["method"] == "retrain"]
        for method in [m for m in order if m in set(rows["method"])]:
            yield scenario, epochs, method, rows[rows["method"] == method], retrain


# -- flags --------------------------------------------------------------------------------------------------
class _Check(NamedTuple):
    column: str
    label: str
    metric: Metric
    direction: int
    interval: tuple[str, str] | None  # the columns of a run's own interval


def _checks(attack_metrics: dict[str, dict]) -> list[_Check]:
    """The summary metrics that can say which way a method misses: a known direction and an ideal to miss."""
    out = []
    names = headers(attack_metrics)
    for column, metric in columns(attack_metrics):
        attack, _, name = column.rpartition("/")
        direction = FORGET_DIRECTION.get(name)
        if direction is None or metric.target is None or (attack and metric.interval is None):
            continue
        interval = tuple(attack_metric_name(attack, b) for b in metric.interval) if metric.interval else None
        out.append(_Check(column, names[column], metric, direction, interval))
    return out


def _run_interval(rows: pd.DataFrame, check: _Check) -> tuple[float, float]:
    """The single run's own interval of the metric, NaN when it logged none."""
    if check.interval is None or not set(check.interval) <= set(rows.columns) or len(rows) != 1:
        return math.nan, math.nan
    return float(rows[check.interval[0]].iloc[0]), float(rows[check.interval[1]].iloc[0])


def _signed(fmt: str, value: float) -> str:
    return fmt.replace("{:", "{:+").format(value)


def _versus_retrain(mine: _SeedMeans, retrain: _SeedMeans, check: _Check):
    """(low, high) of method - retrain, 0 and the evidence's wording; None without a common seed."""
    col, fmt = check.column, check.metric.fmt
    differences = (mine(col) - retrain(col)).dropna()
    gap = mean_ci(differences)
    if gap.n >= 2:
        return gap.low, gap.high, 0.0, (f"{check.label} {{}} retrain (gap {_signed(fmt, gap.mean)}, CI "
                                        f"{_signed(fmt, gap.low)} to {_signed(fmt, gap.high)}, {gap.n} seeds)")
    if gap.n == 1:  # the two runs' own intervals are disjoint exactly when this range excludes 0
        seed = differences.index[0]
        mine, retrain = mine.rows, retrain.rows
        low, high = _run_interval(mine[mine["seed"] == seed], check)
        r_low, r_high = _run_interval(retrain[retrain["seed"] == seed], check)
        return low - r_high, high - r_low, 0.0, (f"{check.label} {{}} retrain (CI {fmt.format(low)} to "
                                                 f"{fmt.format(high)} vs {fmt.format(r_low)} to "
                                                 f"{fmt.format(r_high)}, 1 seed)")
    return None


def _versus_target(mine: _SeedMeans, check: _Check):
    """(low, high) of the metric, its target and the evidence's wording; None without a value."""
    col, fmt, target = check.column, check.metric.fmt, check.metric.target
    est = mean_ci(mine(col))
    if est.n == 0:
        return None
    low, high = (est.low, est.high) if est.n >= 2 else _run_interval(mine.rows[mine.rows[col].notna()], check)
    return low, high, target, (f"{check.label} {{}} {target:g} (mean {fmt.format(est.mean)}, CI "
                               f"{fmt.format(low)} to {fmt.format(high)}, {est.n} seed{'s' * (est.n != 1)})")


def _side(mine: _SeedMeans, same_splits: _SeedMeans, check: _Check) -> tuple[int, str]:
    """+1 / -1 when the metric is surely above / below its reference (retrain on the same splits when it
    has the metric there, else the declared target), 0 when the interval straddles it; and the evidence."""
    if same_splits(check.column).empty:
        evidence = _versus_target(mine, check)
    else:
        evidence = _versus_retrain(mine, same_splits, check)
    if evidence is None:
        return 0, ""
    low, high, centre, text = evidence
    side = 1 if low > centre else -1 if high < centre else 0  # NaN bounds compare False: no verdict
    return side, text.format("above" if side > 0 else "below")


def _flags(method: str, mine: _SeedMeans, retrain: _SeedMeans, checks: list[_Check]) -> dict:
    under, over = [], []
    same_splits = retrain.on_seeds(mine.rows["seed"]) if checks and method != "retrain" else retrain
    for check in checks if method != "retrain" else []:
        side, why = _side(mine, same_splits, check)
        if side * check.direction > 0:
            under.append(why)
        elif side * check.direction < 0:
            over.append(why)
    return {"under_forgetting": bool(under), "over_forgetting": bool(over),
            "flag_reasons": ". ".join(f"{side}: {'; '.join(why)}" for side, why in (("under", under), ("over", over))
                                      if why)}


def forgetting_flags(frame: pd.DataFrame, attack_metrics: dict[str, dict]) -> pd.DataFrame:
    """Per (scenario, epochs, method): under_forgetting, over_forgetting (bools) and flag_reasons (the
    evidence in words), decided from intervals as FLAG_RULES says."""
    checks = _checks(attack_metrics)
    names = [c.column for c in checks]
    rows = [{"scenario": s, "epochs": e, "method": m, **_flags(m, _SeedMeans(mine, names), retrain, checks)}
            for s, e, m, mine, retrain in _means_of_cells(frame, names)]
    return pd.DataFrame(rows, columns=KEYS + FLAG_COLUMNS)


def _means_of_cells(frame: pd.DataFrame, columns: list[str]):
    """_cells, with retrain's rows as _SeedMeans of `columns` (made once per group)."""
    last = None  # (retrain rows, their _SeedMeans): one object per group in _cells
    for scenario, epochs, method, mine, retrain in _cells(frame):
        if last is None or last[0] is not retrain:
            last = (retrain, _SeedMeans(retrain, columns))
        yield scenario, epochs, method, mine, last[1]


# -- summary ------------------------------------------------------------------------------------------------
STATISTICS = ("", "_n", "_std", "_ci_low", "_ci_high", "_gap", "_gap_n", "_gap_ci_low", "_gap_ci_high")


def summary_table(frame: pd.DataFrame, attack_metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per (scenario, epochs, method), wide: what a CSV and the Markdown tables are made of.

    Columns: scenario, epochs (NaN: method defaults), method, seeds (FINISHED runs); then for every summary
    column C of report.columns() the frame has: C (mean over seeds), C_n (seeds with a value), C_std
    (ddof=1), C_ci_low and C_ci_high (95% Student-t interval of the mean; NaN with one seed), C_gap (mean
    of method - retrain over common seeds), C_gap_n, C_gap_ci_low, C_gap_ci_high (its t interval); then
    under_forgetting, over_forgetting and flag_reasons (see FLAG_RULES). Reference rows appear in every
    epochs group. C and C_std match report.format_summary's input."""
    present = [c for c, _ in columns(attack_metrics) if c in frame.columns]
    checks = _checks(attack_metrics)
    needed = present + [c.column for c in checks]
    rows = []
    for scenario, epochs, method, mine, retrain in _means_of_cells(frame, needed):
        row = {"scenario": scenario, "epochs": epochs, "method": method, "seeds": mine["seed"].nunique()}
        mine = _SeedMeans(mine, needed)
        for c in present:
            values = mine(c)
            est, gap = mean_ci(values), mean_ci((values - retrain(c)).dropna())
            values = (est.mean, est.n, est.std, est.low, est.high, gap.mean, gap.n, gap.low, gap.high)
            row.update({c + suffix: v for suffix, v in zip(STATISTICS, values)})
        rows.append(row | _flags(method, mine, retrain, checks))
    stat_columns = [c + s for c in present for s in STATISTICS]
    return pd.DataFrame(rows, columns=[*KEYS, "seeds", *stat_columns, *FLAG_COLUMNS])


def _cell(row: pd.Series, column: str, fmt: str) -> str:
    """mean ± CI half-width; the mean alone when there is no interval; '-' without a value."""
    mean, low, high = row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    if pd.isna(mean):
        return "-"
    return fmt.format(mean) if pd.isna(low) else f"{fmt.format(mean)} ± {fmt.format((high - low) / 2)}"


def _flag_word(row: pd.Series) -> str:
    return " + ".join(w for w, on in (("under", row["under_forgetting"]), ("over", row["over_forgetting"])) if on)


def summary_markdown(table: pd.DataFrame, attack_metrics: dict[str, dict]) -> str:
    """summary_table as Markdown: per (scenario, epochs) group, mean ± 95% CI half-width per method (a table
    per column group of report.column_groups when several have columns), the flags and their evidence."""
    names, metrics = headers(attack_metrics), dict(columns(attack_metrics))
    parts = [c for c in column_groups(attack_metrics) if any(col in table for col in c[1])]
    lines = ["Mean ± half-width of the 95% Student-t interval over seeds (the mean alone with one seed).", ""]
    for (scenario, epochs), rows in table.groupby(["scenario", "epochs"], sort=False, dropna=False):
        lines += [f"### {group_title(scenario, epochs)}", ""]
        for i, (title, group_columns) in enumerate(parts):
            shown = pd.DataFrame(index=pd.Index(rows["method"], name="method"))
            shown["seeds"] = rows["seeds"].to_numpy()
            for c in [c for c in group_columns if c in table]:
                shown[names[c]] = [_cell(r, c, metrics[c].fmt) for _, r in rows.iterrows()]
            if i == 0:
                shown["flag"] = [_flag_word(r) for _, r in rows.iterrows()]
            lines += ([f"#### {title[0].upper()}{title[1:]}", ""] if len(parts) > 1 else [])
            lines += [markdown_table(shown), ""]
        flagged = rows[rows["flag_reasons"] != ""]
        if len(flagged):
            lines += ["Flags:", "", *[f"- {r['method']}: {r['flag_reasons']}" for _, r in flagged.iterrows()], ""]
    return "\n".join(lines)


# -- paired comparisons -------------------------------------------------------------------------------------
def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (len(valid) - rank) * p[i]))
        out[i] = running
    return out


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value (scipy's); 1 when every difference is 0 (nothing to rank)."""
    d = np.asarray(differences, dtype=float)
    return 1.0 if not np.any(d != 0) else float(stats.wilcoxon(d).pvalue)


def bootstrap_mean_ci(differences, *, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences (seeds resampled), reproducible."""
    result = stats.bootstrap((np.asarray(differences, dtype=float),), np.mean, n_resamples=n_boot,
                             confidence_level=level, method="percentile", vectorized=True,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _pairs(methods: list[str], baseline: str | None) -> list[tuple[str, str]]:
    """(versus, method) pairs: every pair in method order, or each method against `baseline`."""
    if baseline is None:
        return list(combinations(methods, 2))
    return [(baseline, m) for m in methods if m != baseline] if baseline in methods else []


def _differences(frame: pd.DataFrame, metrics: list[str], baseline: str | None):
    """(scenario, epochs, metric, versus, method, per-seed differences method - versus) over common seeds."""
    order = method_order(frame)
    for (scenario, epochs), rows in groups(finished(frame)):
        methods = [m for m in order if m in set(rows["method"])]
        means = {m: _SeedMeans(rows[rows["method"] == m], metrics) for m in methods}
        for metric in [m for m in metrics if m in rows]:
            values = {m: means[m](metric) for m in methods}
            for versus, method in _pairs(methods, baseline):
                yield scenario, epochs, metric, versus, method, (values[method] - values[versus]).dropna()


COMPARISON_COLUMNS = ["scenario", "epochs", "metric", "method", "versus", "n", "mean_diff", "ci_low", "ci_high",
                      "p_value", "p_holm"]


def paired_comparisons(frame: pd.DataFrame, metrics: list[str], min_seeds: int = 5, *,
                       baseline: str | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired tests of method - versus per (scenario, epochs) group and metric, over common FINISHED seeds.

    Pairs: every two methods in method_order (the later one is `method`, so a method is compared as
    method - retrain), or with `baseline` (e.g. "retrain") each method against it only: a smaller family,
    so Holm's adjustment costs less. Columns: COMPARISON_COLUMNS; n common seeds, mean_diff, ci_low/ci_high
    (percentile bootstrap of the mean difference, `seed`-ed), p_value (Wilcoxon signed-rank), p_holm (Holm
    within the group and metric). A pair with fewer than `min_seeds` common seeds has no row (see
    comparisons_note)."""
    rows = []
    for scenario, epochs, metric, versus, method, d in _differences(frame, metrics, baseline):
        if len(d) >= min_seeds:
            low, high = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed)
            rows.append({"scenario": scenario, "epochs": epochs, "metric": metric, "method": method, "versus": versus,
                         "n": len(d), "mean_diff": float(d.mean()), "ci_low": low, "ci_high": high,
                         "p_value": wilcoxon_p(d)})
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for _, family in table.groupby(["scenario", "epochs", "metric"], sort=False, dropna=False):
        table.loc[family.index, "p_holm"] = holm(family["p_value"])
    return table


def comparisons_note(frame: pd.DataFrame, metrics: list[str], min_seeds: int = 5, *,
                     baseline: str | None = None) -> str:
    """What a report says next to paired_comparisons: which pairs were left out for want of seeds, and the
    smallest p-value the Wilcoxon test can give at the seeds there are (2 / 2^n, two-sided, no ties)."""
    counts = [len(d) for *_, d in _differences(frame, metrics, baseline)]
    short = [n for n in counts if n < min_seeds]
    notes = []
    if short:
        notes.append(f"Paired comparisons need ≥{min_seeds} common FINISHED seeds: {len(short)} of {len(counts)} "
                     f"method pairs and metrics have fewer (at most {max(short)}) and are left out.")
    enough = [n for n in counts if n >= min_seeds]
    if enough:
        n = min(enough)
        notes.append(f"With {n} seeds the smallest two-sided Wilcoxon p-value is {2 / 2 ** n:.3g}, before Holm's "
                     f"adjustment multiplies it by up to the number of pairs: read the bootstrap interval too.")
    return " ".join(notes)
