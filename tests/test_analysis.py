"""Statistics of harness.reporting.analysis on small synthetic result frames (no training)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.reporting import analysis
from harness.reporting.tables import headers

from .support import FRAME_METRICS as ATTACK_METRICS
from .support import PROFILES, synthetic_frame


def row(table: pd.DataFrame, method: str, scenario="random", epochs=5.0) -> pd.Series:
    same_epochs = table["epochs"].isna() if pd.isna(epochs) else table["epochs"] == epochs
    return table[(table["method"] == method) & (table["scenario"] == scenario) & same_epochs].squeeze()


# -- order, colours, groups ---------------------------------------------------------------------------------
def test_method_order_puts_references_first_and_colours_are_stable():
    frame = synthetic_frame()
    order = analysis.method_order(frame.iloc[::-1])
    assert order[:2] == ["original", "retrain"] and set(order[2:]) == {"finetune", "rotate", "pruning"}
    assert analysis.method_order(frame) == ["original", "retrain", "finetune", "rotate", "pruning"]
    colors = analysis.method_colors(analysis.method_order(frame))
    assert len(set(colors.values())) == 5
    assert colors["original"] == analysis.REFERENCE_COLORS["original"]
    assert colors == analysis.method_colors(analysis.method_order(frame))


def test_groups_put_reference_rows_in_every_epoch_group():
    frame = synthetic_frame()
    found = list(analysis.groups(frame))
    assert [key for key, _ in found] == [("random", 5.0), ("random", 9.0), ("targeted-red", 5.0), ("targeted-red", 9.0)]
    for (scenario, epochs), rows in found:
        assert (rows["scenario"] == scenario).all()
        assert set(rows["method"]) == set(PROFILES)
        assert len(rows[rows["method"] == "retrain"]) == 5
        assert set(rows["epochs"].dropna()) == {epochs}


def test_groups_without_budgets_is_one_group_per_scenario():
    frame = synthetic_frame(budgets=())
    keys = [key for key, _ in analysis.groups(frame)]
    assert len(keys) == 2 and all(math.isnan(e) for _, e in keys)
    assert analysis.group_title("random", math.nan) == "random, method defaults"
    assert analysis.group_title("random", 9.0) == "random, 9 epochs"


# -- intervals and gaps -------------------------------------------------------------------------------------
def test_mean_ci_matches_a_hand_computed_student_t_interval():
    values = [1.0, 2.0, 3.0, 4.0, 6.0, math.nan]
    est = analysis.mean_ci(values)
    v = np.array(values[:5])
    half = stats.t.ppf(0.975, 4) * v.std(ddof=1) / math.sqrt(5)
    assert est.n == 5 and est.mean == pytest.approx(3.2) and est.std == pytest.approx(v.std(ddof=1))
    assert (est.low, est.high) == pytest.approx((3.2 - half, 3.2 + half))
    one = analysis.mean_ci([0.7])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.std)


def test_summary_gap_is_the_mean_of_per_seed_differences_to_retrain():
    frame = synthetic_frame()
    table = analysis.summary_table(frame, ATTACK_METRICS)
    method = frame[(frame["method"] == "finetune") & (frame["scenario"] == "random") & (frame["epochs"] == 5)]
    retrain = frame[(frame["method"] == "retrain") & (frame["scenario"] == "random")]
    diffs = method.set_index("seed")["acc_forget"] - retrain.set_index("seed")["acc_forget"]
    r = row(table, "finetune")
    assert r["acc_forget_gap"] == pytest.approx(diffs.mean())
    assert r["acc_forget_gap_n"] == 5
    expected = analysis.mean_ci(diffs)
    assert (r["acc_forget_gap_ci_low"], r["acc_forget_gap_ci_high"]) == pytest.approx((expected.low, expected.high))
    assert r["acc_forget"] == pytest.approx(method["acc_forget"].mean())
    assert r["acc_forget_std"] == pytest.approx(method["acc_forget"].std(ddof=1))
    assert r["seeds"] == 5 and r["acc_forget_n"] == 5


def test_summary_table_layout_has_references_in_each_group():
    table = analysis.summary_table(synthetic_frame(), ATTACK_METRICS)
    assert list(table.columns[:4]) == ["scenario", "epochs", "method", "seeds"]
    assert list(table.columns[-3:]) == analysis.FLAG_COLUMNS
    assert "mia/signed_auc_ci_low" in table and "mia/signed_auc_low" not in table  # run intervals are not summaries
    assert len(table) == 2 * 2 * 5
    assert list(table[(table["scenario"] == "random") & (table["epochs"] == 9)]["method"]) == \
        ["original", "retrain", "finetune", "rotate", "pruning"]


def test_failed_rows_are_ignored():
    frame = synthetic_frame()
    bad = frame[frame["method"] == "finetune"].head(2).assign(status="FAILED", acc_forget=0.0, seed=[98, 99])
    killed = frame[frame["method"] == "rotate"].head(1).assign(status="KILLED", acc_forget=0.0)
    frame_with = pd.concat([frame, bad, killed.assign(seed=97)], ignore_index=True)
    pd.testing.assert_frame_equal(analysis.summary_table(frame_with, ATTACK_METRICS),
                                  analysis.summary_table(frame, ATTACK_METRICS))
    pd.testing.assert_frame_equal(analysis.paired_comparisons(frame_with, ["acc_forget"]),
                                  analysis.paired_comparisons(frame, ["acc_forget"]))


def test_summary_markdown_has_one_table_per_group_with_report_headers():
    table = analysis.summary_table(synthetic_frame(), ATTACK_METRICS)
    text = analysis.summary_markdown(table, ATTACK_METRICS)
    names = headers(ATTACK_METRICS)
    assert sum(line.startswith("### ") for line in text.splitlines()) == 4 and "### targeted-red, 9 epochs" in text
    assert f"| {names['forget_val_ratio']} |" in text or f" {names['forget_val_ratio']} |" in text
    assert "±" in text and "under" in text
    assert "- original: under:" in text  # the original model has not forgotten anything


# -- flags --------------------------------------------------------------------------------------------------
SIGNED = {"retrain": [0.50, 0.51, 0.49, 0.50, 0.50], "above": [0.60, 0.62, 0.59, 0.61, 0.60],
          "below": [0.40, 0.42, 0.41, 0.39, 0.40], "straddle": [0.46, 0.55, 0.50, 0.53, 0.47]}


def flag_frame(methods=SIGNED, seeds=5, ratio=1.0) -> pd.DataFrame:
    """Only the signed AUC differs between methods; every forget/validation ratio is the same."""
    return pd.DataFrame([{"method": m, "scenario": "random", "epochs": math.nan, "seed": s, "status": "FINISHED",
                          "run_id": f"{m}{s}", "forget_val_ratio": ratio, "mia/signed_auc": v[s],
                          "mia/signed_auc_low": v[s] - 0.02, "mia/signed_auc_high": v[s] + 0.02}
                         for m, v in methods.items() for s in range(seeds)])


def verdicts(frame: pd.DataFrame) -> dict[str, tuple[bool, bool]]:
    flags = analysis.forgetting_flags(frame, ATTACK_METRICS)
    return {r["method"]: (r["under_forgetting"], r["over_forgetting"]) for _, r in flags.iterrows()}


def test_flags_from_the_signed_auc_against_retrain():
    found = verdicts(flag_frame())
    assert found == {"retrain": (False, False), "above": (True, False), "below": (False, True),
                     "straddle": (False, False)}
    reasons = analysis.forgetting_flags(flag_frame(), ATTACK_METRICS).set_index("method")["flag_reasons"]
    assert reasons["above"].startswith("under: signed AUC above retrain")
    assert reasons["below"].startswith("over: signed AUC below retrain") and reasons["straddle"] == ""


def test_flags_against_the_target_without_retrain_rows():
    frame = flag_frame({k: v for k, v in SIGNED.items() if k != "retrain"})
    assert verdicts(frame) == {"above": (True, False), "below": (False, True), "straddle": (False, False)}


def test_flags_with_one_seed_use_the_runs_own_intervals():
    one = {"retrain": [0.50], "above": [0.56], "below": [0.44], "straddle": [0.53]}
    assert verdicts(flag_frame(one, seeds=1)) == {"retrain": (False, False), "above": (True, False),
                                                  "below": (False, True), "straddle": (False, False)}


def test_flags_from_the_forget_validation_ratio():
    frame = synthetic_frame(scenarios=("random",), budgets=(5,))
    found = verdicts(frame)
    assert found["original"] == (True, False) and found["finetune"][0]  # forget accuracy far above validation
    assert found["pruning"][1] and not found["rotate"][0]
    reasons = analysis.forgetting_flags(frame, ATTACK_METRICS).set_index("method")["flag_reasons"]
    assert "F/V ratio above retrain" in reasons["finetune"]
    assert "F/V ratio below retrain" in reasons["pruning"]


# -- paired comparisons -------------------------------------------------------------------------------------
def test_holm_on_a_known_example():
    adjusted = analysis.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = analysis.holm([0.01, math.nan, 0.5])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.5)


def test_wilcoxon_p_matches_scipy_and_handles_all_zero_differences():
    frame = synthetic_frame()
    table = analysis.paired_comparisons(frame, ["acc_forget"])
    r = table[(table["scenario"] == "random") & (table["epochs"] == 5) & (table["method"] == "finetune")
              & (table["versus"] == "retrain")].squeeze()
    a = frame[(frame["method"] == "finetune") & (frame["scenario"] == "random") & (frame["epochs"] == 5)]
    b = frame[(frame["method"] == "retrain") & (frame["scenario"] == "random")]
    diffs = (a.set_index("seed")["acc_forget"] - b.set_index("seed")["acc_forget"]).to_numpy()
    assert r["p_value"] == pytest.approx(stats.wilcoxon(diffs).pvalue)
    assert r["n"] == 5 and r["mean_diff"] == pytest.approx(diffs.mean())
    assert analysis.wilcoxon_p(np.zeros(6)) == 1.0


def test_holm_is_applied_within_each_group_and_metric():
    table = analysis.paired_comparisons(synthetic_frame(), ["acc_forget", "acc_retain"])
    assert len(table) == 4 * 2 * 10  # groups x metrics x pairs of 5 methods
    for _, family in table.groupby(["scenario", "epochs", "metric"]):
        assert family["p_holm"].to_numpy() == pytest.approx(analysis.holm(family["p_value"]))
    assert (table["p_holm"] >= table["p_value"]).all()


def test_bootstrap_interval_is_reproducible_and_contains_the_mean():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.06])
    first = analysis.bootstrap_mean_ci(d, seed=3)
    assert first == analysis.bootstrap_mean_ci(d, seed=3)
    assert first[0] < d.mean() < first[1]
    assert first != analysis.bootstrap_mean_ci(d, seed=4)
    table = analysis.paired_comparisons(synthetic_frame(), ["acc_forget"])
    assert ((table["ci_low"] <= table["mean_diff"]) & (table["mean_diff"] <= table["ci_high"])).all()
    pd.testing.assert_frame_equal(table, analysis.paired_comparisons(synthetic_frame(), ["acc_forget"]))


def test_fewer_than_min_seeds_gives_no_comparison_and_a_note():
    frame = synthetic_frame(seeds=range(4))
    assert analysis.paired_comparisons(frame, ["acc_forget"]).empty
    assert "≥5" in analysis.comparisons_note(frame, ["acc_forget"])
    # retrain loses a seed to a failure: only its pairs drop out
    frame = synthetic_frame(scenarios=("random",), budgets=(5,))
    frame.loc[(frame["method"] == "retrain") & (frame["seed"] == 0), "status"] = "FAILED"
    table = analysis.paired_comparisons(frame, ["acc_forget"])
    assert "retrain" not in set(table["versus"]) | set(table["method"]) and len(table) == 6
    assert "4 of 10" in analysis.comparisons_note(frame, ["acc_forget"])


def test_comparisons_against_a_baseline_only():
    table = analysis.paired_comparisons(synthetic_frame(), ["acc_forget"], baseline="retrain")
    assert set(table["versus"]) == {"retrain"} and len(table) == 4 * 4
    assert "smallest two-sided Wilcoxon p-value is 0.0625" in analysis.comparisons_note(
        synthetic_frame(), ["acc_forget"], baseline="retrain")
