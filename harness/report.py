"""Tables and figures of results, shared by the terminal, MLflow and the docs generator.

Which columns appear, their headers, formats and ideals come from metric declarations (the harness's
own in `metrics.UTILITY`, each attack's from its registration, as logged in the parent's config.json),
so a third-party attack's metrics are shown exactly like the built-in ones.
"""
from __future__ import annotations

import pandas as pd

from .metrics import UTILITY, Metric, attack_metric_name

UTILITY_COLUMNS = ["acc_retain", "acc_forget", "acc_validation", "acc_test", "forget_val_ratio"]
TIME_COLUMNS = ["unlearn_seconds", "pct_retrain_time"]


def columns(attack_metrics: dict[str, dict]) -> list[tuple[str, Metric]]:
    """(column, declaration) of the summary, in order: utility, each attack's summary metrics, time.

    `attack_metrics`: {attack: {metric: Metric or its as_dict()}} (config.json's "metrics")."""
    out = [(c, UTILITY[c]) for c in UTILITY_COLUMNS]
    for attack, declared in attack_metrics.items():
        for name, metric in declared.items():
            metric = metric if isinstance(metric, Metric) else Metric(**metric)
            if metric.summary:
                out.append((attack_metric_name(attack, name), metric))
    return out + [(c, UTILITY[c]) for c in TIME_COLUMNS]


def column_groups(attack_metrics: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """The summary's columns split into tables a page can hold: utility and time, then one per attack."""
    cols = columns(attack_metrics)
    groups = [("utility and time", [c for c, _ in cols if "/" not in c])]
    for attack in attack_metrics:
        mine = [c for c, _ in cols if c.startswith(f"{attack}/")]
        if mine:
            groups.append((f"attack {attack}", mine))
    return groups


def _header(column: str, metric: Metric) -> str:
    return metric.label or column


def headers(attack_metrics: dict[str, dict]) -> dict[str, str]:
    """Column -> header: the metric's label, or the column name where two labels would collide."""
    cols = columns(attack_metrics)
    labels = [_header(c, m) for c, m in cols]
    return {c: label if labels.count(label) == 1 else c for (c, _), label in zip(cols, labels)}


def format_summary(summary: pd.DataFrame, attack_metrics: dict[str, dict], with_std: bool = True) -> pd.DataFrame:
    """Mean (± std over seeds) as strings, one row per method."""
    out = pd.DataFrame(index=summary.index)
    out["seeds"] = summary["seeds"]
    several = int(out["seeds"].max()) > 1 if len(out) else False
    names = headers(attack_metrics)
    for col, metric in columns(attack_metrics):
        if col not in summary.columns:
            continue
        std = summary.get(f"{col}_std")
        cells = []
        for i, m in enumerate(summary[col]):
            s = None if std is None else std.iloc[i]
            if pd.isna(m):
                cells.append("-")
            elif with_std and several and s is not None and not pd.isna(s):
                cells.append(f"{metric.fmt.format(m)} ± {metric.fmt.format(s)}")
            else:
                cells.append(metric.fmt.format(m))
        out[names[col]] = cells
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    headers = [frame.index.name or "method", *frame.columns]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def primary_attack_metric(attack_metrics: dict[str, dict]) -> tuple[str, Metric] | None:
    """The first summary metric with a target value (for the paper's figure: the MIA AUC)."""
    return next(((c, m) for c, m in columns(attack_metrics) if "/" in c and m.target is not None), None)


def summary_figure(summary: pd.DataFrame, attack_metrics: dict[str, dict]):
    """Forget/validation ratio against the primary attack metric per method: the ideal is (1, its target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    primary = primary_attack_metric(attack_metrics)
    if primary is not None and "forget_val_ratio" in summary and primary[0] in summary:
        col, metric = primary
        for method, row in summary.iterrows():
            ax.errorbar(row["forget_val_ratio"], row[col], xerr=row.get("forget_val_ratio_std", 0),
                        yerr=row.get(f"{col}_std", 0), fmt="o", capsize=3)
            ax.annotate(str(method), (row["forget_val_ratio"], row[col]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.axhline(metric.target, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(f"{_header(col, metric)} (ideal {metric.ideal})")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("forget / validation accuracy (ideal 1)")
    ax.set_title("Forgetting by method (mean ± std over seeds)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def results_markdown(summary: pd.DataFrame, frame: pd.DataFrame, attack_metrics: dict[str, dict], *, title: str,
                     command: str | None, facts: dict[str, str], failures: list[dict] | None = None,
                     preamble: str | None = None) -> str:
    """The results document: how to regenerate it, what it ran on, mean ± std per method, every run.
    `preamble`: hand-written markdown placed after the title."""
    lines = [f"# {title}", "", *([preamble, ""] if preamble else []),
             "Generated by `unlearn report`; do not edit by hand.", ""]
    if command:
        lines += ["Regenerate with:", "", "```bash", command, "```", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
    summary_text = format_summary(summary, attack_metrics)
    cols = [c for c, _ in columns(attack_metrics) if c in frame.columns]
    per_seed = frame[["method", "seed", "status", *cols]].copy()
    for col, metric in columns(attack_metrics):
        if col in per_seed:
            per_seed[col] = per_seed[col].map(lambda v, f=metric.fmt: "-" if pd.isna(v) else f.format(v))
    per_seed = per_seed.set_index("method")
    groups = column_groups(attack_metrics)
    if len(groups) <= 2:  # one table each is still readable
        lines += ["## Mean ± std over seeds", "", markdown_table(summary_text), ""]
        lines += ["## Every run", "", markdown_table(per_seed), ""]
    else:
        names = headers(attack_metrics)
        lines += ["## Mean ± std over seeds", ""]
        for title, group in groups:
            shown = [names[c] for c in group if names[c] in summary_text]
            lines += [f"### {title[0].upper()}{title[1:]}", "", markdown_table(summary_text[["seeds", *shown]]), ""]
        lines += ["## Every run", ""]
        for title, group in groups:
            lines += [f"### {title[0].upper()}{title[1:]}", "",
                      markdown_table(per_seed[["seed", "status", *[c for c in group if c in per_seed]]]), ""]
    if failures:
        lines += ["## Failures", ""] + [f"- {f['method']} seed={f['seed']}: {f['error']}" for f in failures] + [""]
    lines += ["Columns (ideal in brackets):", ""]
    lines += [f"- `{c}` ({_header(c, m)}): {m.help or 'see the plugin'}{f' [{m.ideal}]' if m.ideal else ''}"
              for c, m in columns(attack_metrics)]
    return "\n".join(lines) + "\n"


def forget_grid(images, labels, classes, title: str, limit: int = 32):
    """The first `limit` forget images with their labels: what a scenario chose, at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(limit, len(images))
    cols = 8
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).cpu().numpy())
            ax.set_title(classes[int(labels[i])], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
