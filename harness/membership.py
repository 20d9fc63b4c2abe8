"""Helpers for membership-inference attacks, built-in or third-party: the numbers a per-example attack
reports (AUC with a bootstrap CI, TPR at low FPR with Clopper-Pearson intervals), their declarations,
and the table of the forget samples a model still gives away.

Part of the plugin contract (`harness.__api_version__`, since 4): a plugin may import this module, and its
functions change only with a new contract version."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import Metric
from .params import Int
from .stats import bootstrap_auc_ci, clopper_pearson, roc_auc, tpr_at_fpr

# The operating points reported as TPR at a low FPR (metric name stem -> FPR), as in Carlini et al. 2022.
FPRS = {"tpr_1pct": 0.01, "tpr_01pct": 0.001}


def membership_metrics(members: np.ndarray, nonmembers: np.ndarray, *, n_boot: int, seed: int) -> dict[str, float]:
    """AUC (stratified bootstrap CI) and TPR at 1% / 0.1% FPR (Clopper-Pearson CI on the true positives) of
    a score where higher means "member": the numbers and intervals shared by the reference-bank attacks."""
    members, nonmembers = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    labels = np.r_[np.ones(len(members), int), np.zeros(len(nonmembers), int)]
    scores = np.r_[members, nonmembers]
    out = {"auc": roc_auc(labels, scores)}
    out["auc_low"], out["auc_high"] = bootstrap_auc_ci(labels, scores, n_boot=n_boot, seed=seed)
    for name, fpr in FPRS.items():
        out[name], tp, n_pos = tpr_at_fpr(labels, scores, fpr)
        out[f"{name}_low"], out[f"{name}_high"] = clopper_pearson(tp, n_pos)
    return out


def membership_declarations(attack: str) -> dict[str, Metric]:
    """The declarations of `membership_metrics`' numbers; a blind attack's TPR equals the FPR, its target."""
    metrics = {
        "auc": Metric(target=0.5, label=f"{attack} AUC", interval=("auc_low", "auc_high"),
                      help="ROC AUC, forget (members) vs test; 0.5: the forget set looks like unseen data"),
        "auc_low": Metric(summary=False, help="lower bound of the AUC's 95% stratified bootstrap CI"),
        "auc_high": Metric(summary=False, help="upper bound of the AUC's 95% stratified bootstrap CI"),
    }
    for name, fpr in FPRS.items():
        pct = f"{100 * fpr:g}%"
        # Only TPR@1% is a verdict in check-attacks: at 0.1% FPR the threshold rests on a handful of
        # non-members, so the interval (forget sampling only) undercovers and the original rarely clears it.
        metrics[name] = Metric(target=fpr, label=f"{attack} TPR@{pct}", summary=fpr >= 0.01, fmt="{:.4f}",
                               interval=(f"{name}_low", f"{name}_high") if fpr >= 0.01 else None,
                               help=f"TPR on forget at {pct} FPR on test; {fpr:g} is what a blind guess gets")
        metrics[f"{name}_low"] = Metric(summary=False, fmt="{:.4f}",
                                        help=f"lower bound of the TPR@{pct}'s 95% Clopper-Pearson interval")
        metrics[f"{name}_high"] = Metric(summary=False, fmt="{:.4f}",
                                         help=f"upper bound of the TPR@{pct}'s 95% Clopper-Pearson interval")
    return metrics


def exposed_table(target, scores: np.ndarray, key: np.ndarray, top: int, **extra: np.ndarray) -> pd.DataFrame:
    """The `top` forget samples with the largest `key`, named by their data-set index (position in the forget
    split when the outputs carry none), so a report can show which images the model still gives away."""
    n = len(scores)
    index = target.indices.get("forget") if target.indices else None
    index = np.arange(n) if index is None else np.asarray(index)
    order = np.argsort(-np.asarray(key), kind="stable")[:top]
    columns = {"index": index[order].astype(np.int64),
               "label": np.asarray(target.labels["forget"])[order].astype(np.int64),
               "score": np.asarray(scores, np.float64)[order]}
    columns.update({name: np.asarray(values, np.float64)[order] for name, values in extra.items()})
    return pd.DataFrame(columns)


def membership_result(target, members: np.ndarray, nonmembers: np.ndarray, params, seed: int, *, key: np.ndarray,
                      extra_metrics: dict[str, float], **columns: np.ndarray):
    """What a per-example membership attack returns: `membership_metrics` (resamples from
    `membership_space`'s bootstrap), the attack's own `extra_metrics`, and the most_exposed table of
    `exposed_table` ordered by `key` (no table with top 0)."""
    from .evaluation import AttackResult

    metrics = {**membership_metrics(members, nonmembers, n_boot=params["bootstrap"], seed=seed), **extra_metrics}
    tables = ({"most_exposed": exposed_table(target, members, key, params["top"], **columns)}
              if params["top"] > 0 else {})
    return AttackResult(metrics, tables)


def membership_space(order: str) -> dict:
    """The parameters of `membership_metrics` and `exposed_table`: bootstrap resamples and table size;
    `order` says which forget samples the table lists first."""
    return {
        "bootstrap": Int(100, 10000, default=500, tune=False, help="bootstrap resamples of the AUC's CI"),
        "top": Int(0, 10000, default=20, tune=False,
                   help=f"forget samples listed in the most_exposed table ({order}); 0: no table"),
    }
