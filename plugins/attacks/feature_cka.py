"""Feature-level forgetting: linear CKA of penultimate features on the forget set.

After Kim et al. 2025 ("Are We Truly Forgetting?"): several methods reach good accuracy and MIA numbers
by changing the classifier while the features still match the original's. Linear CKA (Kornblith et al.
2019) compares two representations of the same images up to rotation and scale; an unlearned model's
forget features should look more like the retrain model's than like the original's.
"""
from __future__ import annotations

import math

import numpy as np

from harness import Int, Metric, hookimpl


def centred_gram(x: np.ndarray) -> np.ndarray:
    """X X^T of column-centred features (n x n): linear CKA needs only these, so a bootstrap resample is a
    submatrix, re-centred, instead of a new product over the feature dimension."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    return x @ x.T


def _centre(gram: np.ndarray) -> np.ndarray:
    return gram - gram.mean(0) - gram.mean(1)[:, None] + gram.mean()


def cka_from_grams(k: np.ndarray, l_: np.ndarray) -> float:
    """<HKH, HLH> / (||HKH|| ||HLH||): linear CKA from two Gram matrices over the same images."""
    k, l_ = _centre(k), _centre(l_)
    denominator = np.linalg.norm(k) * np.linalg.norm(l_)
    return float((k * l_).sum() / denominator) if denominator > 0 else math.nan


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) with centred columns."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator) if denominator > 0 else float("nan")


def _features(outputs, who: str) -> np.ndarray:
    if outputs is None:
        raise ValueError(f"feature-cka needs the {who} model, which is not loaded here")
    if outputs.features is None:
        raise ValueError(f"feature-cka needs penultimate features; the {who} model has no nn.Linear head")
    return outputs.features["forget"].float().numpy()


def feature_cka(inputs, params):
    """CKA of the target's forget features with the original's and the retrain model's, and their
    difference with a bootstrap CI over forget images (a seeded subsample of at most `max_samples`)."""
    target, original, retrain = (_features(o, w) for o, w in ((inputs.target, "target"),
                                                                (inputs.original, "original"),
                                                                (inputs.retrain, "retrain")))
    rng = np.random.default_rng(inputs.seed)
    n = len(target)
    keep = np.sort(rng.choice(n, params["max_samples"], replace=False)) if n > params["max_samples"] else np.arange(n)
    grams = [centred_gram(f[keep]) for f in (target, original, retrain)]
    k_t, k_o, k_r = grams
    constant = [who for who, g in zip(("target", "original", "retrain"), grams) if not np.linalg.norm(_centre(g)) > 0]
    if constant:
        raise ValueError(f"the {' and '.join(constant)} model's features are the same for every forget image: "
                         f"CKA is undefined")
    cka_original, cka_retrain = cka_from_grams(k_t, k_o), cka_from_grams(k_t, k_r)
    delta = cka_retrain - cka_original
    deltas = []
    for _ in range(params["bootstrap"]):
        pick = rng.integers(0, len(keep), len(keep))
        sub = [g[np.ix_(pick, pick)] for g in grams]
        deltas.append(cka_from_grams(sub[0], sub[2]) - cka_from_grams(sub[0], sub[1]))
    # delta +- 1.96 bootstrap standard errors, not percentiles: a resample repeats images, and CKA over
    # fewer distinct images is biased, so the percentile interval can miss the estimate itself.
    half = 1.96 * float(np.std(deltas, ddof=1))
    return {"cka_original": cka_original, "cka_retrain": cka_retrain, "cka_delta": delta,
            "cka_delta_low": delta - half, "cka_delta_high": delta + half}


@hookimpl
def register_attacks(register):
    register("feature-cka", feature_cka, needs=("retrain",),
             description="linear CKA of penultimate features on forget, against the original and the retrain model",
             space={
                 "max_samples": Int(50, 100000, default=1000, tune=False,
                                    help="forget images compared (a seeded subsample; the cost is quadratic)"),
                 "bootstrap": Int(50, 10000, default=200, tune=False, help="bootstrap resamples of the CI"),
             },
             metrics={
                 "cka_original": Metric(label="CKA orig.", help="linear CKA of forget features with the original's "
                                        "(1: the features did not change)"),
                 "cka_retrain": Metric(label="CKA retrain", help="linear CKA of forget features with the retrain "
                                       "model's"),
                 "cka_delta": Metric(higher_is_better=True, label="CKA retrain - orig.",
                                     interval=("cka_delta_low", "cka_delta_high"),
                                     help="CKA with retrain minus CKA with the original; below 0: the features still "
                                          "look like the original's"),
                 "cka_delta_low": Metric(summary=False, help="cka_delta - 1.96 bootstrap standard errors"),
                 "cka_delta_high": Metric(summary=False, help="cka_delta + 1.96 bootstrap standard errors"),
             })
