"""Small statistics used by metrics and attacks, written to be checked against scikit-learn."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); labels are 0/1."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, *, n_boot: int = 500, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the AUC, resampling each class separately (stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    n_pos, n_neg = len(pos), len(neg)
    both = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        sample = np.concatenate([pos[rng.integers(0, n_pos, n_pos)], neg[rng.integers(0, n_neg, n_neg)]])
        ranks = rankdata(sample)
        aucs[b] = (ranks[both].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    alpha = (1 - level) / 2
    low, high = np.quantile(aucs, [alpha, 1 - alpha])
    return float(low), float(high)
