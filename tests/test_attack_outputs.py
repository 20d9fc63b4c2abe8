"""mia-efficacy, js-retrain, zrf and feature-cka against independent computations (scipy, an explicit HSIC
with centring matrices, a loop over Song & Mittal's formula) and on synthetic models with a known answer."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from harness.evaluation import AttackInput, Outputs, run_attack
from harness.host import Host
from harness_plugins.attacks import feature_cka, output_distance, svc_efficacy

SPLITS = ("retain", "forget", "validation", "test")
HOST = Host()
for module, name in ((svc_efficacy, "svc"), (output_distance, "distance"), (feature_cka, "cka")):
    assert HOST.add_plugin(module, name=name).ok


def outputs(logits: dict, labels: dict, features: dict | None = None) -> Outputs:
    return Outputs({k: torch.as_tensor(v, dtype=torch.float32) for k, v in logits.items()},
                   {k: torch.as_tensor(v) for k, v in labels.items()}, {},
                   None if features is None else {k: torch.as_tensor(v).half() for k, v in features.items()})


def model(rng, member_conf: float, sizes=(400, 200, 50, 400), classes=5, features=None, forget_conf=None,
          labels=None):
    """Logits whose true-class margin is about `member_conf` on retain, `forget_conf` (default: the same)
    on forget and 1 on unseen images; `labels` fixes the images' labels across models."""
    forget_conf = member_conf if forget_conf is None else forget_conf
    logits, out_labels = {}, {}
    for split, n in zip(SPLITS, sizes):
        y = rng.integers(0, classes, n) if labels is None else labels[split].numpy()
        z = rng.normal(0, 1, (n, classes))
        margin = {"retain": member_conf, "forget": forget_conf}.get(split, 1.0)
        z[np.arange(n), y] += margin + rng.normal(0, 1, n)
        logits[split], out_labels[split] = z, y
    return outputs(logits, out_labels, features)


def test_js_divergence_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7), 50), rng.dirichlet(np.ones(7), 50)
    expected = np.array([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)])
    np.testing.assert_allclose(output_distance.js_divergence(p, q), expected, atol=1e-12)
    assert output_distance.js_divergence(p, p).max() < 1e-12
    onehot = np.eye(3)
    np.testing.assert_allclose(output_distance.js_divergence(onehot, onehot[[1, 2, 0]]), 1.0)


def test_linear_cka_matches_hsic_with_centring_matrices_and_its_invariances():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 5))
    y[:, :3] += x[:, :3]
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    expected = hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))
    assert feature_cka.linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert feature_cka.cka_from_grams(feature_cka.centred_gram(x),
                                      feature_cka.centred_gram(y)) == pytest.approx(expected)
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert feature_cka.linear_cka(x, 3.0 * x @ rotation + 2.0) == pytest.approx(1.0)
    # a bootstrap resample of the Gram (duplicate rows) equals CKA of the resampled features
    pick = rng.integers(0, n, n)
    sub = feature_cka.cka_from_grams(k[np.ix_(pick, pick)], l_[np.ix_(pick, pick)])
    assert sub == pytest.approx(feature_cka.linear_cka(x[pick], y[pick]))


def test_modified_entropy_matches_song_and_mittal():
    rng = np.random.default_rng(2)
    out = model(rng, 3.0)
    p = out.logits["test"].double().softmax(1).numpy()
    y = out.labels["test"].numpy()
    expected = []
    for row, label in zip(p, y):
        value = -(1 - row[label]) * np.log(row[label])
        value -= sum(row[j] * np.log(1 - row[j]) for j in range(len(row)) if j != label)
        expected.append(value)
    np.testing.assert_allclose(svc_efficacy.feature(out, "test", "m_entropy"), expected, rtol=1e-9)
    np.testing.assert_allclose(svc_efficacy.feature(out, "test", "confidence"), p[np.arange(len(y)), y])
    # a saturated prediction: 1 - p rounds to 0 in floating point, the logsumexp form stays exact
    saturated = outputs({s: [[60.0, 0.0, 0.0]] for s in SPLITS}, {s: [1] for s in SPLITS})
    value = svc_efficacy.feature(saturated, "test", "m_entropy")[0]
    # -(1 - p_y) log p_y ~ 60, and -p_0 log(1 - p_0) ~ -log(2 e^-60) = 60 - log 2
    assert np.isfinite(value) and value == pytest.approx(120.0 - np.log(2), rel=1e-6)


def attack(name, target, original=None, retrain=None, random=None, seed=0, **params):
    component = HOST.attacks.get(name)
    params = component.resolve(params)
    from harness.evaluation import PrepareInput

    prepared = component.prepare(PrepareInput(original, retrain, seed, random=random), params) \
        if component.prepare else None
    inputs = AttackInput(target, original, retrain, seed, prepared=prepared, random=random)
    return {k.split("/", 1)[1]: v for k, v in run_attack(component, params, inputs).metrics.items()}


def test_mia_efficacy_sees_a_remembering_model_and_not_a_fresh_retrain():
    rng = np.random.default_rng(3)
    retrain = model(rng, 6.0, forget_conf=1.0)  # fits retain; forget is unseen
    remembering = model(rng, 6.0, labels=retrain.labels)  # forget looks like retain
    other = model(rng, 6.0, forget_conf=1.0, labels=retrain.labels)  # another retrain
    original = remembering
    seen = attack("mia-efficacy", remembering, original, retrain, bootstrap=200)
    fresh = attack("mia-efficacy", other, original, retrain, bootstrap=200)
    assert seen["efficacy"] < 0.2 and seen["efficacy_diff_high"] < 0
    assert fresh["efficacy_diff_low"] <= 0 <= fresh["efficacy_diff_high"]
    assert 0 <= fresh["avg_gap"] < seen["avg_gap"]
    assert seen["correctness_efficacy"] == pytest.approx(1 - remembering.accuracy("forget"))


def test_js_retrain_and_zrf_on_known_models():
    rng = np.random.default_rng(4)
    retrain = model(rng, 2.0)
    random = outputs({s: np.zeros((len(retrain.labels[s]), 5)) for s in SPLITS}, retrain.labels)  # uniform
    same = attack("js-retrain", retrain, retrain, retrain, bootstrap=200)
    assert same["js"] == pytest.approx(0.0, abs=1e-12)
    confident = outputs({s: retrain.logits[s].numpy() * 4 for s in SPLITS}, retrain.labels)
    far = attack("js-retrain", confident, retrain, retrain, bootstrap=200)
    assert far["js_low"] > 0.05 and far["js_low"] <= far["js"] <= far["js_high"]
    z_same = attack("zrf", retrain, retrain, retrain, random, bootstrap=200)
    assert (z_same["zrf_diff"] == pytest.approx(0.0, abs=1e-12)
            and z_same["zrf_diff_low"] <= 0 <= z_same["zrf_diff_high"])
    z_far = attack("zrf", confident, retrain, retrain, random, bootstrap=200)
    assert z_far["zrf"] < z_far["zrf_retrain"] and z_far["zrf_diff_high"] < 0  # further from random than retrain
    expected = 1 - np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in
                            zip(confident.probs("forget").double().numpy(), random.probs("forget").double().numpy())])
    assert z_far["zrf"] == pytest.approx(expected, abs=1e-6)  # scipy renormalises the float32 softmax


def test_feature_cka_tells_original_features_from_retrain_features():
    rng = np.random.default_rng(5)
    n = {"retain": 10, "forget": 300, "validation": 10, "test": 10}
    base = {s: rng.normal(size=(k, 12)) for s, k in n.items()}
    other = {s: rng.normal(size=(k, 12)) for s, k in n.items()}
    blank = lambda f: model(rng, 1.0, sizes=tuple(n.values()), features=f)  # noqa: E731
    original, retrain = blank(base), blank({s: 0.3 * base[s] + other[s] for s in n})
    kept = attack("feature-cka", blank({s: 2 * base[s] for s in n}), original, retrain)  # only the scale changed
    assert kept["cka_original"] == pytest.approx(1.0, abs=1e-3) and kept["cka_delta_high"] < 0
    moved = attack("feature-cka", blank({s: other[s] + 0.05 * rng.normal(size=other[s].shape) for s in n}),
                   original, retrain)
    assert moved["cka_retrain"] > moved["cka_original"] and moved["cka_delta_low"] > 0
    with pytest.raises(ValueError, match="needs penultimate features"):
        attack("feature-cka", model(rng, 1.0), original, retrain)


def test_registration_declares_needs_and_verdicts():
    for name, needs, verdict in (("mia-efficacy", ("retrain",), "efficacy_diff"), ("js-retrain", ("retrain",), "js"),
                                 ("zrf", ("retrain", "random"), "zrf_diff"),
                                 ("feature-cka", ("retrain",), "cka_delta")):
        component = HOST.attacks.get(name)
        assert component.needs == needs and component.metrics[verdict].interval is not None
        assert "retrain" in component.unmet(component.resolve(), retrain=False, bank_size=0)
