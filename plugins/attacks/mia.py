"""The paper's membership-inference attack: can per-sample losses tell forget from test?"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from harness import hookimpl
from harness.stats import bootstrap_auc_ci, roc_auc

FOLDS = 10


def loss_mia(inputs):
    """Logistic regression on the CE loss, forget = 1 vs test = 0, stratified 10-fold CV ROC AUC (the paper).

    With one feature the fitted attack is monotone in the loss, so its AUC is about max(A, 1 - A): it
    cannot show over-forgetting. `mia_signed_auc` = AUC of -loss for forget vs test keeps the direction
    (above 0.5: forget samples look like members; below: they look *less* familiar than unseen data),
    with a stratified bootstrap 95% CI to judge whether a difference is noise."""
    target = inputs.target
    forget, test = target.losses("forget").numpy(), target.losses("test").numpy()
    x = np.concatenate([forget, test]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(forget), int), np.zeros(len(test), int)])
    folds = min(FOLDS, len(forget), len(test))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=inputs.seed)
    auc = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="roc_auc").mean()
    signed = roc_auc(y, -x[:, 0])
    low, high = bootstrap_auc_ci(y, -x[:, 0], seed=inputs.seed)
    return {"mia_auc": float(auc), "mia_signed_auc": signed, "mia_signed_auc_low": low, "mia_signed_auc_high": high}


@hookimpl
def register_attacks(register):
    register("mia", loss_mia, description="the paper's loss-based MIA: logistic regression, 10-fold CV ROC AUC")
