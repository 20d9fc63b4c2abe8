"""Statistics used by metrics and attacks: library implementations, wrapped for the shapes we use."""
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
