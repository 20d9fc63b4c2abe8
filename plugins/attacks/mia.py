"""The paper's membership-inference attack: can per-sample losses tell forget from test?"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from harness import Int, Metric, hookimpl
from harness.stats import bootstrap_auc_ci, roc_auc


def loss_mia(inputs, params):
    """Logistic regression on the CE loss, forget = 1 vs test = 0, stratified k-fold CV ROC AUC (the paper).

    With one feature the fitted attack is monotone in the loss, so its AUC is about max(A, 1 - A): it
    cannot show over-forgetting. `signed_auc` = AUC of -loss for forget vs test keeps the direction
    (above 0.5: forget samples look like members; below: they look *less* familiar than unseen data),
    with a stratified bootstrap 95% CI to judge whether a difference is noise."""
    target = inputs.target
    forget, test = target.losses("forget").numpy(), target.losses("test").numpy()
    x = np.concatenate([forget, test]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(forget), int), np.zeros(len(test), int)])
    folds = min(params["folds"], len(forget), len(test))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=inputs.seed)
    auc = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="roc_auc").mean()
    signed = roc_auc(y, -x[:, 0])
    low, high = bootstrap_auc_ci(y, -x[:, 0], n_boot=params["bootstrap"], seed=inputs.seed)
    return {"auc": float(auc), "signed_auc": signed, "signed_auc_low": low, "signed_auc_high": high}


@hookimpl
def register_attacks(register):
    register("mia", loss_mia, description="the paper's loss-based MIA: logistic regression, 10-fold CV ROC AUC",
             space={
                 "folds": Int(2, 20, default=10, tune=False, help="cross-validation folds (the paper: 10)"),
                 "bootstrap": Int(100, 10000, default=500, tune=False, help="bootstrap resamples of the signed AUC's CI"),
             },
             metrics={
                 "auc": Metric(target=0.5, label="MIA AUC",
                               help="the paper's attack: CV ROC AUC of a logistic regression on the loss"),
                 "signed_auc": Metric(target=0.5, label="signed AUC",
                                      help="AUC of -loss, forget vs test; below 0.5 is over-forgetting"),
                 "signed_auc_low": Metric(summary=False, help="lower bound of the signed AUC's 95% bootstrap CI"),
                 "signed_auc_high": Metric(summary=False, help="upper bound of the signed AUC's 95% bootstrap CI"),
             })
