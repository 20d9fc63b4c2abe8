"""The SalUn-terms table and the default-parameter ranking, on a hand-made result frame whose answers are
worked out in the comments."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.reporting import ranking


def _frame() -> pd.DataFrame:
    rows = []
    # seed: (acc_forget, acc_retain, acc_test, efficacy, avg_gap, ratio, auc, pct)
    values = {
        "retrain": {0: (0.50, 1.0, 0.50, 0.40, 0.0, 1.00, 0.50, 100), 1: (0.52, 1.0, 0.52, 0.42, 0.0, 1.02, 0.52, 100),
                    2: (0.48, 1.0, 0.48, 0.38, 0.0, 0.98, 0.48, 100)},
        # a: gaps 4, 5, 6 points; ratio 1.2 on every split (distance 0.20, 0.18, 0.22); AUC 0.6
        "a": {s: (0.6, 0.9, 0.45, 0.3, 4.0 + s, 1.2, 0.6, 10.0 + s) for s in range(3)},
        # b: gaps 1, 2, 3 (paired difference to itself is none: it is first); ratio on retrain's; AUC 0.7
        "b": {0: (0.5, 0.9, 0.4, 0.3, 1.0, 1.00, 0.7, 20), 1: (0.5, 0.9, 0.4, 0.3, 2.0, 1.02, 0.7, 20),
              2: (0.5, 0.9, 0.4, 0.3, 3.0, 0.98, 0.7, 20)},
        # c: gaps 1.5, 1.0, 4.0 (mean 2.17): minus b's = +0.5, -1, +1, whose interval holds 0 -> tied with b
        "c": {0: (0.5, 0.9, 0.4, 0.3, 1.5, 1.1, 0.5, 30), 1: (0.5, 0.9, 0.4, 0.3, 1.0, 1.1, 0.5, 30),
              2: (0.5, 0.9, 0.4, 0.3, 4.0, 1.1, 0.5, 30)},
    }
    for method, by_seed in values.items():
        for seed, (f, r, t, e, g, ratio, auc, pct) in by_seed.items():
            rows.append({"method": method, "scenario": "random", "epochs": None, "seed": seed, "status": "FINISHED",
                         "acc_forget": f, "acc_retain": r, "acc_test": t, ranking.EFFICACY: e, ranking.AVG_GAP: g,
                         "forget_val_ratio": ratio, "mia/auc": auc, "pct_retrain_time": pct})
    rows.append({"method": "a", "scenario": "random", "epochs": None, "seed": 3, "status": "FAILED"})
    return pd.DataFrame(rows)


def test_salun_terms_are_percent_of_the_right_columns():
    terms = ranking.salun_terms(_frame()).set_index("method")
    assert terms.loc["retrain", "UA"] == pytest.approx(50.0)  # 100 (1 - mean forget accuracy 0.50)
    assert terms.loc["a", "UA"] == pytest.approx(40.0) and terms.loc["a", "RA"] == pytest.approx(90.0)
    assert terms.loc["a", "TA"] == pytest.approx(45.0) and terms.loc["a", "MIA-Efficacy"] == pytest.approx(30.0)
    assert terms.loc["retrain", "UA_std"] == pytest.approx(2.0)  # 50, 48, 52
    assert terms.loc["a", "seeds"] == 3  # the FAILED seed does not count
    assert terms.loc["a", "Avg-Gap"] == pytest.approx(5.0) and terms.loc["a", "% retrain"] == pytest.approx(11.0)
    assert terms.loc["a", "Avg-Gap_low"] < 5.0 < terms.loc["a", "Avg-Gap_high"]


def test_ranking_by_avg_gap_with_ties_and_the_other_criteria():
    ranked = ranking.ranking(_frame()).set_index("method")
    assert list(ranked.sort_values("rank").index) == ["b", "c", "a"]  # mean gaps 2, 2.17, 5
    assert ranked.loc["b", "tied_with_first"] and ranked.loc["c", "tied_with_first"]
    assert not ranked.loc["a", "tied_with_first"]  # a - b = 3, 3, 3: interval [3, 3] excludes 0
    # |ratio - retrain's|: b 0, c 0.1/0.08/0.12 (0.1), a 0.2 -> ranks 1, 2, 3; |AUC - 0.5|: c 0, a 0.1, b 0.2
    assert ranked["rank: F/V ratio vs retrain"].to_dict() == {"b": 1, "c": 2, "a": 3}
    assert ranked["rank: MIA AUC vs 0.5"].to_dict() == {"b": 3, "c": 1, "a": 2}
    assert "retrain" not in ranked.index


def test_the_tables_are_absent_without_mia_efficacy_and_in_the_report_markdown_with_it():
    frame = _frame()
    assert ranking.salun_terms(frame.drop(columns=[ranking.EFFICACY])).empty
    assert ranking.ranking(frame.drop(columns=[ranking.AVG_GAP])).empty
    lines = "\n".join(ranking.markdown(ranking.salun_terms(frame), ranking.ranking(frame)))
    assert "## In the SalUn paper's terms" in lines and "## Ranking with default parameters" in lines
    assert "| 1 | b | 3 |" in lines and "tied" in lines
    assert not math.isnan(ranking.ranking(frame)["avg_gap_low"].iloc[0])
