"""The paper's result figures (Figures 12-14) and per-epoch curves, drawn from result rows.

Every figure puts methods in `analysis.method_order` and draws each in its `analysis.method_colors` colour,
so a method looks the same in all of them; where one method has several boxes (two accuracies, two
scenarios) the fill style tells them apart and the legend says which is which. Only FINISHED rows are
drawn; one panel per epoch budget ("method defaults" when the run had no budgets), reference models in
every panel. Seeds are drawn as dots over the boxes: with the few seeds a benchmark has, the points say
more than the quartiles.
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .analysis import REFERENCE_ROWS, finished, group_title, groups, method_colors, method_order
from .tables import columns, headers

# How the boxes of one method differ when it has several: filled, hatched, dotted, ...
FILLS = ({"alpha": 0.75}, {"hatch": "////"}, {"hatch": "...."}, {"hatch": "xx"})
CURVE_STYLES = {"epoch_acc_validation": ("validation", "-"), "epoch_acc_forget": ("forget", "--"),
                "epoch_acc_retain": ("retain", ":")}
PANEL_WIDTH_PER_BOX = 0.32
PANEL_HEIGHT = 3.4


def _pyplot():
    """pyplot on the Agg backend (files, no display), imported when a figure is drawn, as report.py does."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _budget_key(epochs: float):
    return None if pd.isna(epochs) else epochs


def _grid(frame: pd.DataFrame) -> tuple[list, list, dict]:
    """Scenarios (rows), epoch budgets (columns) and the FINISHED rows of each (scenario, budget) panel."""
    panels = {(s, _budget_key(e)): rows for (s, e), rows in groups(finished(frame))}
    scenarios = list(dict.fromkeys(s for s, _ in panels))
    budgets = sorted({e for _, e in panels}, key=lambda e: math.inf if e is None else e)
    return scenarios, budgets, panels


def _by_budget(frame: pd.DataFrame) -> tuple[list, dict]:
    """Epoch budgets and, for each, the FINISHED rows of every scenario at that budget."""
    scenarios, budgets, panels = _grid(frame)
    return budgets, {e: pd.concat([panels[s, e] for s in scenarios if (s, e) in panels]) for e in budgets}


def _methods(frame: pd.DataFrame, order: list[str], value_columns: list[str], exclude=()) -> list[str]:
    """The methods of `order` with a finite value in one of `value_columns`: the x axis of every panel."""
    done = finished(frame)
    cols = [c for c in value_columns if c in done]
    has = done.loc[done[cols].notna().any(axis=1), "method"] if cols else pd.Series(dtype=str)
    return [m for m in order if m in set(has) and m not in exclude]


def _ink(color: str, fill: dict) -> str:
    """Black, or white on a dark filled box: the colour of the median and the seed dots."""
    r, g, b = to_rgb(color)
    return "white" if "hatch" not in fill and 0.299 * r + 0.587 * g + 0.114 * b < 0.3 else "black"


def _box(ax, x: float, width: float, values: np.ndarray, color: str, fill: dict, jitter) -> None:
    """One box with its seeds as dots; a single seed is a marker (filled or hollow like the box would be)."""
    if len(values) == 1:
        ax.scatter([x], values, s=45, marker="D", color=color if "hatch" not in fill else "white",
                   edgecolors=color if "hatch" in fill else "black", linewidths=1.3, zorder=3)
        return
    box = ax.boxplot(values, positions=[x], widths=width * 0.8, patch_artist=True, showfliers=False,
                     manage_ticks=False)
    for patch in box["boxes"]:
        patch.set(facecolor=color if "hatch" not in fill else "white", edgecolor=color, linewidth=1.2, **fill)
    for line in box["whiskers"] + box["caps"]:
        line.set(color=color, linewidth=1.2)
    for line in box["medians"]:
        line.set(color=_ink(color, fill), linewidth=1.4)
    ax.scatter(x + jitter.uniform(-0.15, 0.15, len(values)) * width, values, s=7, color=_ink(color, fill),
               alpha=0.6, linewidths=0, zorder=3)


def _boxes(ax, rows: pd.DataFrame, methods: list[str], colors: dict, series: list[tuple[str, object]]) -> None:
    """Per method, one box per series (label, rows -> values) side by side."""
    width = 0.8 / len(series)
    jitter = np.random.default_rng(0)
    for i, method in enumerate(methods):
        mine = rows[rows["method"] == method]
        for j, (_, values_of) in enumerate(series):
            values = pd.to_numeric(values_of(mine), errors="coerce").dropna().to_numpy()
            if len(values):
                x = i + (j - (len(series) - 1) / 2) * width
                _box(ax, x, width, values, colors[method], FILLS[j % len(FILLS)], jitter)
    ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def _series_legend(labels: list[str]) -> list[Patch]:
    return [Patch(facecolor="0.55" if "hatch" not in FILLS[j % len(FILLS)] else "white", edgecolor="0.3",
                  label=label, **FILLS[j % len(FILLS)]) for j, label in enumerate(labels)]


def _figure(rows: int, cols: int, boxes: int) -> tuple[Figure, np.ndarray]:
    width = max(4.5, 1.0 + PANEL_WIDTH_PER_BOX * boxes)
    rows, cols = max(rows, 1), max(cols, 1)  # nothing finished: one empty panel, not an error
    return _pyplot().subplots(rows, cols, figsize=(width * cols, PANEL_HEIGHT * rows + 0.6), squeeze=False, sharey=True,
                        layout="constrained")


def _empty(ax, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])


def _done(fig: Figure, title: str, handles: list) -> Figure:
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    _pyplot().close(fig)
    return fig


def _scenario_grid(frame: pd.DataFrame, series: list[tuple[str, str]], methods: list[str], ylabel: str,
                   title: str, lines=None, exclude=()) -> Figure:
    """Scenarios as rows, epoch budgets as columns, boxes of `series` (label, column) per method.
    `lines(ax, rows) -> handles` draws reference lines into each panel."""
    order = methods or method_order(frame)
    series = [(label, col) for label, col in series if col in frame]
    shown = _methods(frame, order, [c for _, c in series], exclude)
    colors = method_colors(order)
    scenarios, budgets, panels = _grid(frame)
    fig, axes = _figure(len(scenarios), len(budgets), len(shown) * len(series))
    handles = _series_legend([label for label, _ in series]) if len(series) > 1 else []
    for r, scenario in enumerate(scenarios):
        for c, budget in enumerate(budgets):
            ax, name = axes[r, c], group_title(scenario, math.nan if budget is None else budget)
            if (scenario, budget) not in panels:
                _empty(ax, name)
                continue
            rows = panels[scenario, budget]
            _boxes(ax, rows, shown, colors, [(label, lambda m, col=col: m[col]) for label, col in series])
            ax.set_title(name, fontsize=10)
            extra = lines(ax, rows) if lines else []
            handles += [h for h in extra if h.get_label() not in {x.get_label() for x in handles}]
        axes[r, 0].set_ylabel(ylabel)
    return _done(fig, title, handles)


def accuracy_boxes(frame: pd.DataFrame, methods: list[str] | None = None) -> Figure:
    """Figure 12 (top): retain and validation accuracy per method; useful unlearning keeps both near the
    original model's."""
    return _scenario_grid(frame, [("retain", "acc_retain"), ("validation", "acc_validation")], methods,
                          "accuracy", "Retain and validation accuracy by method")


def _ratio_lines(ax, rows: pd.DataFrame) -> list:
    ideal = ax.axhline(1.0, color="0.3", ls="--", lw=1, label="ideal (1)")
    retrain = rows.loc[rows["method"] == "retrain", "forget_val_ratio"].dropna()
    if retrain.empty:
        return [ideal]
    median = ax.axhline(retrain.median(), color=method_colors(["retrain"])["retrain"], ls=":", lw=1.5,
                        label="retrain median")
    return [ideal, median]


def ratio_boxes(frame: pd.DataFrame, methods: list[str] | None = None) -> Figure:
    """Figure 12 (bottom): forget / validation accuracy per method; 1 (and retrain) is complete forgetting,
    above it the forget set is still remembered, below it is over-forgotten."""
    return _scenario_grid(frame, [("forget / validation", "forget_val_ratio")], methods,
                          "forget acc. / validation acc.", "Forget / validation accuracy ratio by method",
                          lines=_ratio_lines)


def runtime_boxes(frame: pd.DataFrame, methods: list[str] | None = None) -> Figure:
    """Figure 13: unlearning time as % of retrain's per method (the reference models are left out: retrain
    is 100 by definition, the original has no unlearning time)."""
    return _scenario_grid(frame, [("% of retrain", "pct_retrain_time")], methods, "time, % of retrain",
                          "Unlearning time as % of retraining (retrain = 100%)", exclude=REFERENCE_ROWS)


def mia_boxes(frame: pd.DataFrame, metric: str = "mia/auc", methods: list[str] | None = None, *,
              target: float = 0.5, label: str = "MIA AUC") -> Figure:
    """Figure 14: an attack metric per method, scenarios side by side (random vs targeted forget sets), one
    panel per epoch budget, a dashed line at the attack's ideal (0.5: forget looks like unseen data)."""
    order = methods or method_order(frame)
    colors = method_colors(order)
    scenarios = list(dict.fromkeys(finished(frame)["scenario"]))
    shown = _methods(frame, order, [metric])
    budgets, panels = _by_budget(frame)
    fig, axes = _figure(1, len(budgets), len(shown) * len(scenarios))
    handles = _series_legend(scenarios) if len(scenarios) > 1 else []
    series = [(s, lambda m, s=s: m.loc[m["scenario"] == s, metric]) for s in scenarios]
    for c, budget in enumerate(budgets):
        ax = axes[0, c]
        _boxes(ax, panels[budget], shown, colors, series)
        ax.axhline(target, color="0.3", ls="--", lw=1)
        ax.set_title("method defaults" if budget is None else f"{budget:g} epochs", fontsize=10)
    axes[0, 0].set_ylabel(label)
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1, label=f"ideal ({target:g})"))
    scope = scenarios[0] if len(scenarios) == 1 else " vs ".join(scenarios)
    return _done(fig, f"{label} by method: {scope}", handles)


def epoch_curves(curves: pd.DataFrame, methods: list[str] | None = None) -> Figure:
    """Accuracy after each epoch of a method's main phase: mean over seeds, shaded min-max; forget against
    validation (and retain) shows when a method has forgotten and whether it goes on past retrain's level.
    One row per (scenario, epoch budget), one column per method."""
    order = methods or method_order(curves)
    colors = method_colors(order)
    shown = [m for m in order if m in set(curves["method"])]
    panels = list(groups(curves))
    fig, axes = _pyplot().subplots(len(panels), len(shown), figsize=(2.6 * len(shown) + 0.8, 2.3 * len(panels) + 0.7),
                             squeeze=False, sharey=True, layout="constrained")
    for r, ((scenario, epochs), rows) in enumerate(panels):
        for c, method in enumerate(shown):
            ax = axes[r, c]
            mine = rows[rows["method"] == method]
            for metric, (_, ls) in CURVE_STYLES.items():
                values = mine[mine["metric"] == metric].groupby("step")["value"]
                if values.ngroups:
                    mean = values.mean()
                    ax.plot(mean.index, mean.to_numpy(), ls=ls, color=colors[method], lw=1.6)
                    ax.fill_between(mean.index, values.min().to_numpy(), values.max().to_numpy(),
                                    color=colors[method], alpha=0.12, lw=0)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(method, fontsize=10, color=colors[method], fontweight="bold")
            if r == len(panels) - 1:
                ax.set_xlabel("epoch")
        axes[r, 0].set_ylabel(f"{group_title(scenario, epochs)}\naccuracy", fontsize=9)
    handles = [Line2D([], [], color="0.2", ls=ls, label=label) for label, ls in CURVE_STYLES.values()]
    return _done(fig, "Accuracy per epoch (mean over seeds, shaded min-max)", handles)


def _has(frame: pd.DataFrame, *cols: str) -> bool:
    done = finished(frame)
    return any(c in done and done[c].notna().any() for c in cols)


def all_figures(frame: pd.DataFrame, curves: pd.DataFrame | None, attack_metrics: dict[str, dict]) -> dict[str, Figure]:
    """File name -> figure for every figure the results have columns for (no mia attack: no Figure 14)."""
    order = method_order(frame)
    if curves is not None and not curves.empty:
        order += [m for m in method_order(curves) if m not in order]
    declared, names = dict(columns(attack_metrics)), headers(attack_metrics)
    figures = {}
    if _has(frame, "acc_retain", "acc_validation"):
        figures["fig12_accuracy.png"] = accuracy_boxes(frame, order)
    if _has(frame, "forget_val_ratio"):
        figures["fig12_ratio.png"] = ratio_boxes(frame, order)
    if _has(frame, "pct_retrain_time"):
        figures["fig13_runtime.png"] = runtime_boxes(frame, order)
    for name, metric in (("fig14_mia.png", "mia/auc"), ("fig14_mia_signed.png", "mia/signed_auc")):
        if _has(frame, metric):
            target = declared[metric].target if metric in declared and declared[metric].target is not None else 0.5
            figures[name] = mia_boxes(frame, metric, order, target=target, label=names.get(metric, metric))
    if curves is not None and not curves.empty and curves["metric"].isin(list(CURVE_STYLES)).any():
        figures["epoch_curves.png"] = epoch_curves(curves, order)
    return figures
