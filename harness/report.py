"""Tables and figures of results, shared by the terminal, MLflow and the docs generator."""
from __future__ import annotations

import pandas as pd

COLUMNS = [  # (column, header, format)
    ("acc_retain", "retain", "{:.3f}"),
    ("acc_forget", "forget", "{:.3f}"),
    ("acc_validation", "valid", "{:.3f}"),
    ("acc_test", "test", "{:.3f}"),
    ("forget_val_ratio", "F/V ratio", "{:.3f}"),
    ("mia_auc", "MIA AUC", "{:.3f}"),
    ("mia_signed_auc", "signed AUC", "{:.3f}"),
    ("unlearn_seconds", "time s", "{:.1f}"),
    ("pct_retrain_time", "% retrain", "{:.1f}"),
]


def format_summary(summary: pd.DataFrame, with_std: bool = True) -> pd.DataFrame:
    """Mean (± std over seeds) as strings, one row per method."""
    out = pd.DataFrame(index=summary.index)
    out["seeds"] = summary["seeds"]
    for col, header, fmt in COLUMNS:
        if col not in summary.columns:
            continue
        mean, std = summary[col], summary.get(f"{col}_std")
        cells = []
        for m, s in zip(mean, std if std is not None else [None] * len(mean)):
            if pd.isna(m):
                cells.append("-")
            elif with_std and s is not None and int(out["seeds"].max()) > 1:
                cells.append(f"{fmt.format(m)} ± {fmt.format(s)}")
            else:
                cells.append(fmt.format(m))
        out[header] = cells
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    headers = [frame.index.name or "method", *frame.columns]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def summary_figure(summary: pd.DataFrame):
    """Forget/validation ratio against MIA AUC per method: the ideal is (1, 0.5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    if "forget_val_ratio" in summary and "mia_auc" in summary:
        for method, row in summary.iterrows():
            ax.errorbar(row["forget_val_ratio"], row["mia_auc"], xerr=row.get("forget_val_ratio_std", 0),
                        yerr=row.get("mia_auc_std", 0), fmt="o", capsize=3)
            ax.annotate(str(method), (row["forget_val_ratio"], row["mia_auc"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("forget / validation accuracy (ideal 1)")
    ax.set_ylabel("MIA AUC (ideal 0.5)")
    ax.set_title("Forgetting by method (mean ± std over seeds)")
    fig.tight_layout()
    plt.close(fig)
    return fig
