"""Tables and figures of results, shared by the terminal, MLflow and the docs generator.

Which columns appear, their headers, formats and ideals come from metric declarations (the harness's
own in `metrics.UTILITY`, each attack's from its registration, as logged in the parent's config.json),
so a third-party attack's metrics are shown exactly like the built-in ones.
"""
from __future__ import annotations

import pandas as pd

from ..metrics import UTILITY, Metric, attack_metric_name

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


def forget_grid(images, labels, classes, title: str, limit: int = 32, cols: int = 8):
    """The first `limit` forget images with their labels: what a scenario chose, at a glance.

    One image: the pictures are tiled into a single array (a white gap and a caption band each) and drawn
    by one `imshow`, with the labels as text above each tile. A new parent draws one per split, so this is
    a few milliseconds, not the second that 32 matplotlib axes and a tight layout took."""
    import numpy as np
    from matplotlib.figure import Figure

    n = min(limit, len(images))
    rows = max(1, -(-n // cols))
    tiles = images[:n].permute(0, 2, 3, 1).cpu().numpy()  # (n, H, W, C)
    h, w, c = tiles.shape[1:] if n else (32, 32, 3)
    gap, band = max(2, w // 8), max(8, h // 3)  # between tiles; above each tile, for its label
    cell_h, cell_w = band + h + gap, w + gap
    white = 255 if tiles.dtype == np.uint8 else 1.0
    mosaic = np.full((rows * cell_h, cols * cell_w, c), white, dtype=tiles.dtype if n else np.uint8)
    for i in range(n):
        top, left = (i // cols) * cell_h + band, (i % cols) * cell_w + gap // 2
        mosaic[top:top + h, left:left + w] = tiles[i]
    fig = Figure(figsize=(cols * 1.1, rows * 1.25 + 0.4))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.01 - 0.4 / (rows * 1.25 + 0.4)))
    ax.imshow(mosaic.squeeze(-1) if c == 1 else mosaic, cmap="gray" if c == 1 else None,
              interpolation="nearest")
    ax.axis("off")
    for i in range(n):
        ax.text((i % cols) * cell_w + cell_w / 2, (i // cols) * cell_h + band - 1, classes[int(labels[i])],
                fontsize=7, ha="center", va="bottom")
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / (rows * 1.25 + 0.4))
    return fig
