"""Statistics used by metrics and attacks: library implementations, wrapped for the shapes we use.

Part of the plugin contract (`harness.__api_version__`, since 4): a plugin may import this module, and its
functions change only with a new contract version."""
from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap, rankdata
from sklearn.metrics import roc_auc_score


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` for 0/1 `labels` (scikit-learn's), with a clear error when a class is missing."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("ROC AUC needs both classes")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def _auc(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC = P(pos > neg) + P(tie)/2 (the Mann-Whitney statistic), vectorised over leading axes."""
    n_pos, n_neg = pos.shape[axis], neg.shape[axis]
    ranks = rankdata(np.concatenate([pos, neg], axis=axis), axis=axis)
    pos_ranks = np.take(ranks, np.arange(n_pos), axis=axis).sum(axis=axis)
    return (pos_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, *, n_boot: int = 500, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the ROC AUC, resampling each class separately (stratified), so every
    resample keeps the class sizes of the data (scipy.stats.bootstrap with one sample per class)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    result = bootstrap((scores[labels], scores[~labels]), _auc, n_resamples=n_boot, confidence_level=level,
                       method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k/n: the beta quantiles, with the
    conventional 0 / 1 ends when k is 0 / n."""
    from scipy.stats import beta

    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> tuple[float, int, int]:
    """(TPR, true positives, positives) of the strictest threshold rule `score >= t` whose false-positive
    rate on the negatives is at most `fpr` (the ROC curve's best point left of `fpr`). Higher scores mean
    "member"; the counts feed `clopper_pearson`."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(scores[labels])[::-1], np.sort(scores[~labels])[::-1]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("TPR at FPR needs both classes")
    allowed = int(np.floor(fpr * len(neg) + 1e-9))  # false positives the rule may make
    # the lowest threshold that admits at most `allowed` negatives: strictly above the (allowed+1)-th largest
    if allowed >= len(neg):
        tp = len(pos)
    else:
        tp = int(np.sum(pos > neg[allowed]))
    return tp / len(pos), tp, len(pos)


def bootstrap_ci(statistic, samples: tuple, *, n_boot: int = 500, level: float = 0.95, seed: int = 0,
                 paired: bool = True) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic(*samples)` (scipy.stats.bootstrap). `paired=True` resamples the
    same positions in every sample (values per forget example of two models, say)."""
    result = bootstrap(samples, statistic, n_resamples=n_boot, confidence_level=level, method="percentile",
                       paired=paired, vectorized=False, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
