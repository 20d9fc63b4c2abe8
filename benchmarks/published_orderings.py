"""Rank agreement with a published table: our run's methods in the SalUn paper's terms beside the SalUn
paper's CIFAR-10 random-forgetting table, and Kendall's tau per metric between the two orderings.

    python benchmarks/published_orderings.py [--tracking-uri URI] [--experiment NAME]

Two orderings per metric: by the value itself (UA, RA, TA, MIA-Efficacy; retrain included), and by the
distance to retrain's value on the same split (the methods only; what SalUn's Avg-Gap averages). Tau over
five or six methods is coarse: its p-value is printed beside it. The published figures are marked
UNVERIFIED in the project's reference notes until read in the paper itself; IU is not implemented here.
"""
from __future__ import annotations

import argparse

import pandas as pd
from scipy import stats

from harness.reporting import ranking, run_report
from harness.reporting.tables import markdown_table
from harness.tracking import MlflowStore

# Fan et al., ICLR 2024 (SalUn), ResNet-18 on CIFAR-10, random 10% forgetting (percent; UNVERIFIED).
PUBLISHED = pd.DataFrame(
    [("retrain", 5.24, 100.00, 94.26, 12.88), ("simple", 0.63, 99.88, 94.06, 2.70),
     ("rl", 7.61, 99.67, 92.83, 37.36), ("ga", 0.69, 99.50, 94.01, 1.70), ("l1-sparse", 4.19, 97.74, 91.59, 9.84),
     ("salun", 2.85, 99.62, 93.93, 14.39)],
    columns=["method", "UA", "RA", "TA", "MIA-Efficacy"]).set_index("method")
METRICS = ["UA", "RA", "TA", "MIA-Efficacy"]
PAPER_NAMES = {"simple": "FT", "rl": "RL", "ga": "GA", "l1-sparse": "l1-sparse", "salun": "SalUn", "retrain": "Retrain"}


def ours(uri: str, experiment: str) -> pd.DataFrame:
    store = MlflowStore(uri)
    report = run_report.build(store, store.parent(store.latest_parent(experiment)), with_curves=False)
    terms = ranking.salun_terms(report.frame)
    if terms.empty:
        raise SystemExit(f"{experiment}: no mia-efficacy results, nothing to compare")
    return terms.set_index("method")


def with_gaps(table: pd.DataFrame) -> pd.DataFrame:
    gaps = (table[METRICS] - table.loc["retrain", METRICS]).abs().drop(index="retrain")
    gaps["Avg-Gap"] = gaps[METRICS].mean(axis=1)
    return gaps


def tau(a: pd.Series, b: pd.Series) -> str:
    """Kendall's tau-b of two orderings over their common methods, its p-value and n, as text."""
    common = a.index.intersection(b.index)
    if a[common].nunique() < 2 or b[common].nunique() < 2:
        return f"undefined: one side has every value tied (n={len(common)})"
    result = stats.kendalltau(a[common], b[common])
    return f"{result.statistic:+.2f} (p={result.pvalue:.2f}, n={len(common)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--experiment", default="methods-sota-cpu")
    args = parser.parse_args()
    mine = ours(args.tracking_uri, args.experiment)
    common = [m for m in PUBLISHED.index if m in mine.index]
    missing = [PAPER_NAMES[m] for m in PUBLISHED.index if m not in mine.index]
    mine, paper = mine.loc[common, METRICS], PUBLISHED.loc[common, METRICS]

    print(f"methods in both: {', '.join(PAPER_NAMES[m] + ('' if m == PAPER_NAMES[m] else f' ({m})') for m in common)}"
          + (f"; not in our run: {', '.join(missing)}" if missing else ""))
    print("\nvalues (percent): paper / ours (mean over seeds)\n")
    side = pd.DataFrame({m: [f"{p:.2f} / {o:.2f}" for p, o in zip(paper[m], mine[m])] for m in METRICS}, index=common)
    print(markdown_table(side.rename(index=PAPER_NAMES)))

    paper_gaps, my_gaps = with_gaps(paper), with_gaps(mine)
    print("\nKendall's tau between the paper's ordering and ours\n")
    print("| metric | by value: tau (p, n) | by distance to retrain: tau (p, n) |")
    print("|---|---|---|")
    for metric in [*METRICS, "Avg-Gap"]:
        by_value = "-" if metric == "Avg-Gap" else tau(paper[metric], mine[metric])
        by_gap = tau(paper_gaps[metric], my_gaps[metric])
        print(f"| {metric} | {by_value} | {by_gap} |")
    print("\norderings by distance to retrain, closest first (paper | ours)\n")
    for metric in [*METRICS, "Avg-Gap"]:
        p_order = " < ".join(PAPER_NAMES[m] for m in paper_gaps[metric].sort_values().index)
        o_order = " < ".join(PAPER_NAMES[m] for m in my_gaps[metric].sort_values().index)
        print(f"- {metric}: {p_order} | {o_order}")


if __name__ == "__main__":
    main()
