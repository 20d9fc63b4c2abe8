"""Offline LiRA and RMIA checked against independent computations: a Gaussian case with a known AUC,
scikit-learn's ROC, scipy's exact binomial interval and brute-force RMIA scores."""
import numpy as np
import pytest
import torch
from scipy.special import expit
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score, roc_curve

from harness import AttackInput, AttackResult, Outputs, PrepareInput, ReferenceOutputs
from harness.evaluation import run_attack
from harness.host import Host
from harness_plugins.attacks import lira, rmia

SPLITS = ("forget", "test")


def phi_logits(phi) -> torch.Tensor:
    """Two-class logits [phi, 0] with label 0: confidence phi exactly, p_y = sigmoid(phi)."""
    phi = torch.as_tensor(np.asarray(phi), dtype=torch.float32)
    return torch.stack([phi, torch.zeros_like(phi)], -1)


def target(phi: dict, offset: int = 1000) -> Outputs:
    """A model under test with the given confidences; forget images named offset + position."""
    return Outputs({s: phi_logits(phi[s]) for s in SPLITS},
                   {s: torch.zeros(len(phi[s]), dtype=torch.long) for s in SPLITS},
                   {"forget": torch.arange(len(phi["forget"])) + offset})


def bank(phi: dict) -> ReferenceOutputs:
    """ReferenceModels with confidences phi[split] of shape (K, n)."""
    return ReferenceOutputs({s: phi_logits(phi[s]) for s in SPLITS},
                            {s: torch.zeros(phi[s].shape[1], dtype=torch.long) for s in SPLITS})


def f32(x) -> np.ndarray:
    """The values as the attack sees them (stored as float32 logits), back in float64."""
    return np.asarray(x, np.float32).astype(np.float64)


def gaussian_case(n_forget=3000, n_test=3000, k=4, sigma=1.0, delta=1.0, member_shift=True, seed=0):
    """Per-example means mu_x; references and non-members N(mu_x, sigma); members N(mu_x + delta, sigma)."""
    rng = np.random.default_rng(seed)
    mu = {"forget": rng.normal(0, 1.5, n_forget), "test": rng.normal(0, 1.5, n_test)}
    refs = {s: mu[s] + sigma * rng.normal(size=(k, len(mu[s]))) for s in SPLITS}
    phi = {s: mu[s] + sigma * rng.normal(size=len(mu[s])) for s in SPLITS}
    if member_shift:
        phi["forget"] = phi["forget"] + delta
    return target(phi), bank(refs), phi, refs


def attack(module, name):
    host = Host()
    assert host.add_plugin(module, name="plugin-under-test").ok
    return host.attacks.get(name)


LIRA, RMIA = attack(lira, "lira-offline"), attack(rmia, "rmia")


def score(component, tgt, refs, original=None, seed=0, **overrides):
    params = component.resolve({"bootstrap": 100, **overrides})
    prepared = None
    if component.prepare is not None:
        prepared = component.prepare(PrepareInput(original or tgt, None, seed, references=refs), params)
    result = component.fn(AttackInput(tgt, original or tgt, None, seed, prepared=prepared, references=refs), params)
    assert isinstance(result, AttackResult)
    return result


def independent_lira(phi, refs):
    """s = (phi_t - mean_k phi_k) / pooled sigma, the pooled variance the mean of per-example ddof=1 variances."""
    var = np.concatenate([np.var(f32(refs[s]), axis=0, ddof=1) for s in SPLITS]).mean()
    return {s: (f32(phi[s]) - f32(refs[s]).mean(0)) / np.sqrt(var) for s in SPLITS}, np.sqrt(var)


def test_lira_gaussian_auc_matches_the_analytic_value_and_sklearn():
    """s_member - delta ~ N(0, sigma^2 (1 + 1/K)) and so is s_nonmember (target noise plus the K-mean's), so
    AUC = P(s_m > s_n) = Phi(delta / (sigma sqrt(2 (1 + 1/K))))."""
    k, sigma, delta = 4, 1.0, 1.0
    tgt, refs, phi, ref_phi = gaussian_case(k=k, sigma=sigma, delta=delta)
    result = score(LIRA, tgt, refs)
    m = result.metrics
    assert m["auc"] == pytest.approx(norm.cdf(delta / (sigma * np.sqrt(2 * (1 + 1 / k)))), abs=0.025)
    s, pooled = independent_lira(phi, ref_phi)
    y = np.r_[np.ones(len(s["forget"])), np.zeros(len(s["test"]))]
    assert m["auc"] == pytest.approx(roc_auc_score(y, np.r_[s["forget"], s["test"]]), abs=1e-12)
    assert m["sigma"] == pytest.approx(pooled, rel=1e-9)
    assert m["sigma"] == pytest.approx(sigma, rel=0.03)  # unbiased pooled estimate
    assert m["auc_low"] < m["auc"] < m["auc_high"]

    table = result.tables["most_exposed"]
    assert list(table.columns) == ["index", "label", "score", "abs_score"] and len(table) == 20
    top = np.argsort(-np.abs(s["forget"]))[:20]
    assert table["index"].tolist() == (top + 1000).tolist()
    assert np.allclose(table["score"], s["forget"][top]) and np.allclose(table["abs_score"], np.abs(s["forget"][top]))
    assert (table["label"] == 0).all()


def test_lira_table_falls_back_to_positions_and_respects_top():
    tgt, refs, _, _ = gaussian_case(n_forget=50, n_test=60)
    bare = Outputs(tgt.logits, tgt.labels)  # no indices
    table = score(LIRA, bare, refs, top=5).tables["most_exposed"]
    assert len(table) == 5 and table["index"].max() < 50
    assert score(LIRA, bare, refs, top=0).tables == {}


def test_tpr_at_low_fpr_matches_roc_curve_and_clopper_pearson_matches_scipy():
    tgt, refs, phi, ref_phi = gaussian_case(delta=1.5, seed=1)
    m = score(LIRA, tgt, refs).metrics
    s, _ = independent_lira(phi, ref_phi)
    y = np.r_[np.ones(len(s["forget"])), np.zeros(len(s["test"]))]
    fpr, tpr, _ = roc_curve(y, np.r_[s["forget"], s["test"]], drop_intermediate=False)
    n_pos = len(s["forget"])
    for name, level in (("tpr_1pct", 0.01), ("tpr_01pct", 0.001)):
        expected = tpr[fpr <= level + 1e-12].max()
        assert m[name] == pytest.approx(expected, abs=1e-12)
        ci = binomtest(round(expected * n_pos), n_pos).proportion_ci(confidence_level=0.95, method="exact")
        assert (m[f"{name}_low"], m[f"{name}_high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert m["tpr_1pct_low"] > 0.01  # a real signal: the blind rate is excluded


def rmia_case(n_forget, n_test, k=2, delta=1.0, seed=0):
    """Confidences as in the Gaussian case; p_y = sigmoid(phi)."""
    tgt, refs, phi, ref_phi = gaussian_case(n_forget, n_test, k=k, delta=delta, seed=seed)
    return tgt, refs, phi, ref_phi


def independent_log_ratio(phi, ref_phi, a):
    """log r = log p_t - log(((1 + a) mean_k p_k + (1 - a)) / 2), from sigmoids in float64."""
    return {s: np.log(expit(f32(phi[s]))) - np.log(((1 + a) * expit(f32(ref_phi[s])).mean(0) + (1 - a)) / 2)
            for s in SPLITS}


def test_rmia_matches_brute_force_scores():
    """Every pair r(x) / r(z) > gamma compared directly, for two gammas."""
    tgt, refs, phi, ref_phi = rmia_case(200, 1001, seed=2)
    log_r = independent_log_ratio(phi, ref_phi, 0.3)
    population, evaluation = rmia.population_split(1001, 7)
    assert len(population) == 500 and len(evaluation) == 501 and not set(population) & set(evaluation)
    r_pop = np.exp(log_r["test"][population])
    for gamma in (1.0, 2.0):
        brute = {s: (np.exp(x)[:, None] / r_pop[None, :] > gamma).mean(1)
                 for s, x in (("forget", log_r["forget"]), ("eval", log_r["test"][evaluation]))}
        m = score(RMIA, tgt, refs, seed=7, calibrate="fixed", a=0.3, gamma=gamma).metrics
        y = np.r_[np.ones(200), np.zeros(501)]
        assert m["auc"] == pytest.approx(roc_auc_score(y, np.r_[brute["forget"], brute["eval"]]), abs=1e-12)
        assert m["a"] == 0.3


def test_rmia_score_auc_equals_the_ratio_auc_with_a_large_population():
    tgt, refs, phi, ref_phi = rmia_case(1000, 20000, seed=3)
    result = score(RMIA, tgt, refs, seed=5, calibrate="fixed", a=0.3)
    log_r = independent_log_ratio(phi, ref_phi, 0.3)
    _, evaluation = rmia.population_split(20000, 5)
    y = np.r_[np.ones(1000), np.zeros(len(evaluation))]
    assert result.metrics["auc"] == pytest.approx(roc_auc_score(y, np.r_[log_r["forget"], log_r["test"][evaluation]]),
                                                  abs=0.01)
    table = result.tables["most_exposed"]
    assert list(table.columns) == ["index", "label", "score", "log_ratio"]
    top = np.argsort(-log_r["forget"])[:20]
    assert table["index"].tolist() == (top + 1000).tolist()
    assert np.allclose(table["log_ratio"], log_r["forget"][top])
    assert table["score"].is_monotonic_decreasing


def test_rmia_scores_binary_search_handles_ties():
    pop = np.array([0.0, 1.0, 1.0, 2.0])
    assert rmia.rmia_scores(np.array([1.0, 1.5, 3.0, -1.0]), pop, 1.0).tolist() == [0.25, 0.75, 1.0, 0.0]


@pytest.mark.parametrize("component", [LIRA, RMIA], ids=["lira", "rmia"])
def test_original_like_model_is_caught_and_a_reference_like_one_is_not(component):
    remembers, refs, _, _ = gaussian_case(500, 2000, delta=1.0, seed=4)
    m = score(component, remembers, refs, seed=4).metrics
    assert m["auc"] > 0.65 and m["auc_low"] > 0.5
    assert m["tpr_1pct_low"] > 0.01
    unseen, _, _, _ = gaussian_case(500, 2000, member_shift=False, seed=4)  # same examples, another retrain
    m = score(component, unseen, refs, original=remembers, seed=4).metrics
    assert abs(m["auc"] - 0.5) < 0.05 and m["auc_low"] <= 0.5 <= m["auc_high"]
    assert m["tpr_1pct_low"] <= 0.01 <= m["tpr_1pct_high"]


def test_rmia_calibrates_a_on_the_original_only():
    original, refs, phi, ref_phi = rmia_case(300, 1200, delta=1.5, seed=6)
    params = RMIA.resolve({"bootstrap": 100})
    prepared = RMIA.prepare(PrepareInput(original, None, 9, references=refs), params)
    other_retrain, _, _, _ = rmia_case(300, 1200, delta=0.0, seed=8)
    assert RMIA.prepare(PrepareInput(original, other_retrain, 9, references=refs), params) == prepared

    # the chosen a maximises the original's AUC over the grid, brute force
    population, evaluation = rmia.population_split(1200, 9)
    aucs = []
    for a in rmia.A_GRID:
        log_r = independent_log_ratio(phi, ref_phi, a)
        r_pop = np.exp(log_r["test"][population])[None, :]
        forget = (np.exp(log_r["forget"])[:, None] > r_pop).mean(1)
        held_out = (np.exp(log_r["test"][evaluation])[:, None] > r_pop).mean(1)
        aucs.append(roc_auc_score(np.r_[np.ones(300), np.zeros(len(evaluation))], np.r_[forget, held_out]))
    assert prepared in rmia.A_GRID
    assert aucs[rmia.A_GRID.index(prepared)] == pytest.approx(max(aucs), abs=1e-12)

    # whatever the target, a is the original's: from prepare, and when fn calibrates itself
    for tgt in (original, other_retrain):
        for given in (prepared, None):
            inputs = AttackInput(tgt, original, None, 9, prepared=given, references=refs)
            assert RMIA.fn(inputs, params).metrics["a"] == prepared
    fixed = RMIA.resolve({"calibrate": "fixed", "a": 0.7, "bootstrap": 100})
    assert RMIA.prepare(PrepareInput(original, None, 9, references=refs), fixed) == 0.7


def test_registration_through_the_host():
    assert LIRA.bank_needed(LIRA.resolve()) >= 2 and RMIA.bank_needed(RMIA.resolve()) >= 1
    assert LIRA.prepare is None and RMIA.prepare is not None
    assert LIRA.resolve() == {"bootstrap": 500, "top": 20}
    assert RMIA.resolve() == {"a": 0.3, "calibrate": "original", "gamma": 1.0, "bootstrap": 500, "top": 20}
    for component in (LIRA, RMIA):
        for name in ("auc", "tpr_1pct"):  # the verdicts of check-attacks
            metric = component.metrics[name]
            assert metric.interval == (f"{name}_low", f"{name}_high")
            assert all(b in component.metrics and not component.metrics[b].summary for b in metric.interval)
        # TPR@0.1% keeps its bounds as metrics but is no verdict: its threshold rests on a few non-members
        assert component.metrics["tpr_01pct"].interval is None and "tpr_01pct_low" in component.metrics
        assert component.metrics["auc"].target == 0.5 and component.metrics["tpr_01pct"].target == 0.001
    assert not RMIA.metrics["a"].summary
    one = ReferenceOutputs({s: torch.zeros(1, 3, 2) for s in SPLITS},
                           {s: torch.zeros(3, dtype=torch.long) for s in SPLITS})
    assert "needs 2 reference" in LIRA.unmet(LIRA.resolve(), retrain=False, bank_size=len(one))
    assert RMIA.unmet(RMIA.resolve(), retrain=False, bank_size=len(one)) is None


@pytest.mark.parametrize("component", [LIRA, RMIA], ids=["lira", "rmia"])
def test_run_attack_returns_only_declared_metrics(component):
    tgt, refs, _, _ = gaussian_case(30, 40, k=2, seed=10)
    params = component.resolve({"bootstrap": 100})
    prepared = component.prepare(PrepareInput(tgt, None, 0, references=refs), params) if component.prepare else None
    result = run_attack(component, params, AttackInput(tgt, tgt, None, 0, prepared=prepared, references=refs))
    assert set(result.metrics) == {f"{component.name}/{m}" for m in component.metrics}
    assert all(isinstance(v, float) and np.isfinite(v) for v in result.metrics.values())
    again = run_attack(component, params, AttackInput(tgt, tgt, None, 0, prepared=prepared, references=refs))
    assert again.metrics == result.metrics
