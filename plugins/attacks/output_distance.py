"""Output distances on the forget set: to the retrain model (Jensen-Shannon) and to a randomly initialised
model (ZRF, Chundawat et al. 2023).

Both compare whole output distributions, not just the label, so they see confidence the accuracy hides.
Two retrains with different seeds are not at distance 0 from each other: the held-out retrain of
`unlearn check-attacks` shows that floor.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from harness import Int, Metric, hookimpl
from harness.stats import bootstrap_ci


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon divergence in bits (log base 2), in [0, 1]."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2
    kl = lambda a: (xlogy(a, a) - xlogy(a, m)).sum(1)  # noqa: E731 - KL(a || m), 0 log 0 = 0
    return np.clip((kl(p) + kl(q)) / (2 * np.log(2)), 0.0, 1.0)


def _probs(outputs) -> np.ndarray:
    return outputs.probs("forget").double().numpy()


def _mean_ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    return bootstrap_ci(lambda v: v.mean(), (values,), n_boot=n_boot, seed=seed)


def js_retrain(inputs, params):
    """Mean JS divergence between the target's and the retrain model's softmax on forget (0: identical)."""
    if inputs.retrain is None:
        raise ValueError("js-retrain needs the retrain model, which is not loaded here")
    target = _probs(inputs.target)
    per_image = js_divergence(target, _probs(inputs.retrain))
    out = {"js": float(per_image.mean()), "js_original": float(js_divergence(target, _probs(inputs.original)).mean())}
    out["js_low"], out["js_high"] = _mean_ci(per_image, params["bootstrap"], inputs.seed)
    return out


def prepare_zrf(inputs, params):
    """The retrain model's per-image JS to the random model, once per split (None while tuning)."""
    if inputs.retrain is None:
        return None
    return js_divergence(_probs(inputs.retrain), _probs(inputs.random))


def zrf(inputs, params):
    """ZRF = 1 - mean JS(target || random) on forget, and its difference to the retrain model's ZRF (paired
    bootstrap CI over forget images): a model far from random on forget still holds information on it."""
    if inputs.prepared is None:
        raise ValueError("zrf needs the retrain model, which is not loaded here")
    mine, retrain = js_divergence(_probs(inputs.target), _probs(inputs.random)), inputs.prepared
    out = {"zrf": 1 - float(mine.mean()), "zrf_retrain": 1 - float(retrain.mean())}
    out["zrf_diff"] = out["zrf"] - out["zrf_retrain"]
    out["zrf_diff_low"], out["zrf_diff_high"] = bootstrap_ci(
        lambda a, b: b.mean() - a.mean(), (mine, retrain), n_boot=params["bootstrap"], seed=inputs.seed)
    return out


BOOTSTRAP = {"bootstrap": Int(100, 10000, default=500, tune=False, help="bootstrap resamples of the CI")}


@hookimpl
def register_attacks(register):
    register("js-retrain", js_retrain, needs=("retrain",), space=BOOTSTRAP,
             description="mean Jensen-Shannon divergence to the retrain model's outputs on the forget set",
             metrics={
                 "js": Metric(higher_is_better=False, label="JS to retrain", interval=("js_low", "js_high"),
                              help="mean JS divergence (bits) to the retrain model's softmax on forget; two "
                                   "retrains with other seeds are not at 0 (see check-attacks)"),
                 "js_low": Metric(summary=False, help="lower bound of the bootstrap 95% CI of js"),
                 "js_high": Metric(summary=False, help="upper bound of the bootstrap 95% CI of js"),
                 "js_original": Metric(summary=False, help="mean JS divergence to the original's softmax on forget"),
             })
    register("zrf", zrf, prepare=prepare_zrf, needs=("retrain", "random"), space=BOOTSTRAP,
             description="ZRF: 1 - mean JS divergence to a randomly initialised model on forget, against retrain's",
             metrics={
                 "zrf": Metric(label="ZRF", help="1 - mean JS divergence to a random model on forget (compare with "
                               "zrf_retrain)"),
                 "zrf_retrain": Metric(summary=False, help="the retrain model's ZRF on the same split"),
                 "zrf_diff": Metric(target=0.0, label="ZRF - retrain", interval=("zrf_diff_low", "zrf_diff_high"),
                                    help="ZRF minus the retrain model's; below 0: further from random than retrain"),
                 "zrf_diff_low": Metric(summary=False, help="lower bound of the paired bootstrap 95% CI"),
                 "zrf_diff_high": Metric(summary=False, help="upper bound of the paired bootstrap 95% CI"),
             })
