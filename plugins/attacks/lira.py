"""Offline LiRA with a fixed variance (Carlini et al. 2022), scored against the retrain reference bank.

Every reference is a retrain that never saw the forget or the test set, so the references' confidences
on an example describe how a model that did not train on it behaves there: the per-example mean removes
what makes an example easy or hard, and the target's deviation from it is the membership signal.
"""
from __future__ import annotations

import numpy as np

from harness import Metric, hookimpl
from harness.membership import membership_declarations, membership_result, membership_space


def lira_offline(inputs, params):
    """s(x) = (phi_t(x) - mu_R(x)) / sigma, forget = 1 vs test = 0, with mu_R(x) the references' mean
    logit-scaled confidence on x and one pooled sigma.

    One global sigma (the fixed-variance variant) because a per-example variance from a handful of
    references is too noisy; it is the unbiased pooled variance of the references around their
    per-example means, over forget and test (K - 1 degrees of freedom per example). |s| is a two-sided
    deviation from retrain: the table lists the forget samples where it is largest."""
    refs = inputs.references
    if refs is None or len(refs) < 2:
        raise ValueError(f"lira-offline needs at least 2 reference models, got {0 if refs is None else len(refs)}")
    target = inputs.target
    centred, spread = {}, []
    for split in ("forget", "test"):
        ref_phi = refs.confidence(split).double().numpy()  # (K, n)
        mu = ref_phi.mean(0)
        spread.append((ref_phi - mu) ** 2)
        centred[split] = target.confidence(split).double().numpy() - mu
    k = len(refs)
    n = sum(s.shape[1] for s in spread)
    sigma = float(np.sqrt(sum(s.sum() for s in spread) / (n * (k - 1))))
    # Identical references (sigma 0): the raw deviation ranks examples the same way; AUC and TPR are scale-free.
    scale = sigma if sigma > 0 else 1.0
    forget, test = centred["forget"] / scale, centred["test"] / scale
    return membership_result(target, forget, test, params, inputs.seed, key=np.abs(forget),
                             extra_metrics={"sigma": sigma}, abs_score=np.abs(forget))


@hookimpl
def register_attacks(register):
    metrics = membership_declarations("LiRA")
    metrics["sigma"] = Metric(summary=False, help="pooled std of the references' confidence around their "
                              "per-example mean (the score's scale)")
    register("lira-offline", lira_offline,
             description="offline LiRA, fixed variance: the target's confidence against K retrain references",
             space=membership_space("largest |s|"),
             metrics=metrics, references=2)
