"""Metrics checked against reference implementations (scikit-learn) and hand-computed values."""
import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from harness import Metric
from harness.evaluation import AttackInput, Outputs, run_attack, utility_metrics
from harness.host import default_host
from harness.registry import Attack
from harness.stats import _auc, bootstrap_auc_ci, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_auc_matches_sklearn(seed):
    """The rank statistic the bootstrap resamples, checked against scikit-learn (ties included)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = rng.normal(size=300) + y * 0.5
    scores[:50] = np.round(scores[:50])  # ties
    assert _auc(scores[y], scores[~y]) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    batch = np.stack([scores, scores[::-1]])
    assert _auc(batch[:, y], batch[:, ~y]).tolist() == pytest.approx(
        [roc_auc_score(y, scores), roc_auc_score(y, scores[::-1])], abs=1e-12)


def test_bootstrap_ci_brackets_auc_and_shrinks_with_n():
    rng = np.random.default_rng(0)

    def ci(n):
        y = np.r_[np.ones(n), np.zeros(n)]
        s = rng.normal(size=2 * n) + y * 0.3
        return roc_auc(y, s), bootstrap_auc_ci(y, s, n_boot=300)
    auc, (lo, hi) = ci(200)
    assert lo < auc < hi
    _, (lo2, hi2) = ci(2000)
    assert hi2 - lo2 < hi - lo


def test_bootstrap_ci_covers_the_true_auc():
    """Two normals a distance d apart have AUC Phi(d / sqrt 2); a 95% CI must contain it about 95% of the time."""
    rng = np.random.default_rng(1)
    truth = norm.cdf(0.5 / np.sqrt(2))
    hits = 0
    for rep in range(100):
        y = np.r_[np.ones(60), np.zeros(90)]
        s = rng.normal(size=150) + 0.5 * y
        lo, hi = bootstrap_auc_ci(y, s, n_boot=300, seed=rep)
        hits += lo <= truth <= hi
    assert hits >= 88, hits


def outputs(logits_by_split, labels_by_split):
    return Outputs({k: torch.tensor(v, dtype=torch.float32) for k, v in logits_by_split.items()},
                   {k: torch.tensor(v) for k, v in labels_by_split.items()})


def test_utility_metrics_and_confidence():
    logits = {"retain": [[2.0, 0.0], [0.0, 2.0]], "forget": [[3.0, 0.0], [0.0, 1.0]],
              "validation": [[1.0, 0.0], [1.0, 0.0]], "test": [[0.0, 1.0], [1.0, 0.0]]}
    labels = {"retain": [0, 1], "forget": [0, 1], "validation": [0, 1], "test": [1, 1]}
    out = outputs(logits, labels)
    m = utility_metrics(out, retrain=out)
    assert m["acc_forget"] == 1.0 and m["acc_validation"] == 0.5 and m["forget_val_ratio"] == 2.0
    assert m["acc_test"] == 0.5 and m["gap_acc_forget"] == 0.0
    assert m["loss_retain"] == pytest.approx(float(np.log1p(np.exp(-2.0))))
    p = torch.tensor(logits["forget"]).softmax(1)[[0, 1], [0, 1]]
    torch.testing.assert_close(out.confidence("forget"), torch.log(p) - torch.log1p(-p))


def mia_on(forget_losses, test_losses, **params):
    """Outputs whose per-sample CE losses on forget/test are the given values (2 classes)."""
    def logits(losses):
        # CE of logits [z, 0] with label 0 is log(1 + exp(-z)); invert for z.
        z = -np.log(np.expm1(np.asarray(losses)))
        return np.stack([z, np.zeros_like(z)], 1)
    out = outputs({"forget": logits(forget_losses), "test": logits(test_losses),
                   "retain": [[1.0, 0.0]], "validation": [[1.0, 0.0]]},
                  {"forget": [0] * len(forget_losses), "test": [0] * len(test_losses), "retain": [0],
                   "validation": [0]})
    mia = default_host().attacks.get("mia")
    result = run_attack(mia, mia.resolve(params), AttackInput(out, seed=0))
    return {k.split("/", 1)[1]: v for k, v in result.metrics.items()}


def test_mia_detects_members_and_is_chance_on_identical_distributions():
    rng = np.random.default_rng(0)
    separable = mia_on(rng.uniform(0.01, 0.1, 400), rng.uniform(1.0, 3.0, 800))
    assert separable["auc"] > 0.99 and separable["signed_auc"] > 0.99
    same = mia_on(rng.uniform(0.1, 2.0, 400), rng.uniform(0.1, 2.0, 800))
    assert abs(same["auc"] - 0.5) < 0.1
    assert same["signed_auc_low"] < 0.5 < same["signed_auc_high"]


def test_mia_signed_auc_shows_over_forgetting():
    """Forget losses *higher* than test: the CV AUC stays above 0.5, the signed AUC goes below."""
    rng = np.random.default_rng(1)
    over = mia_on(rng.uniform(2.0, 4.0, 400), rng.uniform(0.1, 2.0, 800))
    assert over["auc"] > 0.9 and over["signed_auc"] < 0.1


def test_run_attack_namespaces_and_refuses_undeclared_metrics():
    out = outputs({"forget": [[1.0, 0.0]], "test": [[0.0, 1.0]], "retain": [[1.0, 0.0]], "validation": [[1.0, 0.0]]},
                  {"forget": [0], "test": [0], "retain": [0], "validation": [0]})
    attack = Attack("a", lambda inputs, params: {"acc_forget": 0.25}, metrics={"acc_forget": Metric()})
    assert run_attack(attack, {}, AttackInput(out)).metrics == {"a/acc_forget": 0.25}
    sneaky = Attack("b", lambda inputs, params: {"auc": 0.5, "extra": 1.0}, metrics={"auc": Metric(target=0.5)})
    with pytest.raises(ValueError, match="undeclared metric\\(s\\) extra; declared: auc"):
        run_attack(sneaky, {}, AttackInput(out))


def test_mia_kit_variant_balances_the_sets_and_scores_accuracy():
    """The starting kit's variant: chance is 0.5 however unbalanced forget and test are, and it equals
    scikit-learn's StratifiedShuffleSplit accuracy on the balanced sets computed here independently."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(2)
    forget, test = rng.uniform(0.01, 0.6, 100), rng.uniform(0.3, 3.0, 900)
    kit = mia_on(forget, test, variant="kit")
    assert "auc" not in kit and 0.8 < kit["accuracy"] <= 1.0
    picker = np.random.default_rng(0)
    f, t = picker.permutation(forget)[:100], picker.permutation(test)[:100]
    x = np.concatenate([f, t]).reshape(-1, 1)
    y = np.r_[np.ones(100), np.zeros(100)]
    expected = cross_val_score(LogisticRegression(), x, y, cv=StratifiedShuffleSplit(n_splits=10, random_state=0),
                               scoring="accuracy").mean()
    assert kit["accuracy"] == pytest.approx(expected, abs=1e-6)
    same = mia_on(rng.uniform(0.1, 2.0, 100), rng.uniform(0.1, 2.0, 900), variant="kit")
    assert abs(same["accuracy"] - 0.5) < 0.12


def test_mia_retain_signed_auc_is_the_auc_of_retain_against_test():
    rng = np.random.default_rng(3)
    out = mia_on(rng.uniform(0.1, 2.0, 50), rng.uniform(0.1, 2.0, 50))
    assert 0.0 <= out["retain_signed_auc"] <= 1.0


def test_run_attack_passes_tables_and_refuses_other_table_types():
    import pandas as pd

    from harness.evaluation import AttackResult

    out = outputs({"forget": [[1.0, 0.0]], "test": [[0.0, 1.0]], "retain": [[1.0, 0.0]], "validation": [[1.0, 0.0]]},
                  {"forget": [0], "test": [0], "retain": [0], "validation": [0]})
    table = pd.DataFrame({"index": [3], "score": [1.5]})
    good = Attack("t", lambda i, p: AttackResult({"x": 1.0}, {"top": table}), metrics={"x": Metric()})
    result = run_attack(good, {}, AttackInput(out))
    assert result.metrics == {"t/x": 1.0} and result.tables["top"].equals(table)
    bad = Attack("u", lambda i, p: AttackResult({"x": 1.0}, {"top": [1, 2]}), metrics={"x": Metric()})
    with pytest.raises(TypeError, match="table 'top' is list, expected a DataFrame"):
        run_attack(bad, {}, AttackInput(out))
