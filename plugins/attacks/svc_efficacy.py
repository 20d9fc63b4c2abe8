"""MIA-efficacy: the SVC membership attack of the SalUn and sparsity-unlearning papers (Fan et al. 2024,
Jia et al. 2023), and their Avg-Gap to the retrain model.

An SVC learns, from the model's own retain (members) and test (non-members) outputs, what a training
image looks like to this model; MIA-efficacy is the share of forget images it calls non-members. Its
ideal is not 100% but the retrain model's value (a retrain still recognises some forget images as
"easy"), so the verdict is the difference to retrain.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC

from harness import Choice, Int, Metric, hookimpl
from harness.stats import bootstrap_ci

FEATURES = ("confidence", "entropy", "m_entropy")


def feature(outputs, split: str, kind: str) -> np.ndarray:
    """One number per image: p_y (confidence), the prediction's entropy, or Song & Mittal's (2021)
    modified entropy -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j), which uses the label."""
    z = outputs.logits[split].double()
    y = outputs.labels[split]
    log_p = z.log_softmax(1)
    rows = torch.arange(len(y))
    if kind == "confidence":
        return log_p[rows, y].exp().numpy()
    if kind == "entropy":
        return -(log_p.exp() * log_p).sum(1).numpy()
    if kind == "m_entropy":
        # log(1 - p_j) = logsumexp of the other logits - logsumexp of all: exact where p_j rounds to 1
        eye = torch.eye(z.shape[1], dtype=torch.bool)
        log_rest = z[:, None, :].masked_fill(eye, float("-inf")).logsumexp(2) - z.logsumexp(1, keepdim=True)
        p = log_p.exp()
        others = (p * log_rest).masked_fill(eye[y], 0.0).sum(1)
        return (-log_rest[rows, y].exp() * log_p[rows, y] - others).numpy()
    raise ValueError(f"unknown feature {kind!r}; valid: {', '.join(FEATURES)}")


def predicted_nonmember(outputs, kind: str, max_train: int, seed: int) -> np.ndarray:
    """0/1 per forget image: 1 where an SVC(C=3, gamma='auto', rbf) trained on an equal number of this
    model's retain (member) and test (non-member) images calls it a non-member."""
    retain, test = feature(outputs, "retain", kind), feature(outputs, "test", kind)
    n = min(len(retain), len(test), max_train)
    rng = np.random.default_rng(seed)
    x = np.concatenate([retain[rng.choice(len(retain), n, replace=False)],
                        test[rng.choice(len(test), n, replace=False)]]).reshape(-1, 1)
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return (attack.predict(feature(outputs, "forget", kind).reshape(-1, 1)) == 0).astype(np.float64)


def _utility(outputs) -> dict[str, float]:
    return {"UA": 1 - outputs.accuracy("forget"), "RA": outputs.accuracy("retain"), "TA": outputs.accuracy("test")}


def prepare(inputs, params):
    """The retrain model's own predictions and accuracies, once per split (None while tuning)."""
    if inputs.retrain is None:
        return None
    return {"nonmember": predicted_nonmember(inputs.retrain, params["feature"], params["max_train"], inputs.seed),
            "utility": _utility(inputs.retrain)}


def mia_efficacy(inputs, params):
    """MIA-efficacy of the target, its difference to the retrain model's (paired bootstrap CI over forget
    images) and the Avg-Gap over UA, RA, TA and MIA-efficacy in percentage points."""
    nonmember = predicted_nonmember(inputs.target, params["feature"], params["max_train"], inputs.seed)
    out = {"efficacy": float(nonmember.mean()), "correctness_efficacy": 1 - inputs.target.accuracy("forget")}
    reference = inputs.prepared
    if reference is None:
        raise ValueError("mia-efficacy needs the retrain model, which is not loaded here")
    other = reference["nonmember"]
    out["efficacy_retrain"] = float(other.mean())
    out["efficacy_diff"] = out["efficacy"] - out["efficacy_retrain"]
    out["efficacy_diff_low"], out["efficacy_diff_high"] = bootstrap_ci(
        lambda a, b: a.mean() - b.mean(), (nonmember, other), n_boot=params["bootstrap"], seed=inputs.seed)
    mine, theirs = _utility(inputs.target), reference["utility"]
    gaps = [abs(mine[k] - theirs[k]) for k in ("UA", "RA", "TA")] + [abs(out["efficacy_diff"])]
    out["avg_gap"] = 100 * float(np.mean(gaps))
    return out


@hookimpl
def register_attacks(register):
    register("mia-efficacy", mia_efficacy, prepare=prepare, needs=("retrain",),
             description="SalUn's SVC attack (retain vs test) applied to forget, compared with the retrain model",
             space={
                 "feature": Choice(FEATURES, default="confidence", tune=False,
                                   help="what the SVC sees: p_y, entropy or Song & Mittal's modified entropy"),
                 "max_train": Int(100, 100000, default=2000, tune=False,
                                  help="retain and test images (each) the SVC trains on"),
                 "bootstrap": Int(100, 10000, default=500, tune=False, help="bootstrap resamples of the CI"),
             },
             metrics={
                 "efficacy": Metric(label="MIA-eff.", help="share of forget images the SVC calls non-members "
                                    "(compare with efficacy_retrain: the ideal is the retrain model's)"),
                 "efficacy_retrain": Metric(summary=False, help="the retrain model's MIA-efficacy on the same split"),
                 "efficacy_diff": Metric(target=0.0, label="MIA-eff. - retrain",
                                         interval=("efficacy_diff_low", "efficacy_diff_high"),
                                         help="efficacy minus the retrain model's; below 0: forget still looks "
                                              "trained on"),
                 "efficacy_diff_low": Metric(summary=False, help="lower bound of the paired bootstrap 95% CI"),
                 "efficacy_diff_high": Metric(summary=False, help="upper bound of the paired bootstrap 95% CI"),
                 "avg_gap": Metric(higher_is_better=False, label="Avg-Gap", fmt="{:.1f}",
                                   help="mean |method - retrain| over UA, RA, TA and MIA-efficacy, in points"),
                 "correctness_efficacy": Metric(summary=False, help="share of forget images misclassified (the "
                                                "correctness threshold attack's efficacy, = UA)"),
             })
