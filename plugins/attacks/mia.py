"""The paper's membership-inference attack: can per-sample losses tell forget from test?"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit, cross_val_score

from harness import Choice, Int, Metric, hookimpl
from harness.stats import bootstrap_auc_ci, roc_auc


def loss_mia(inputs, params):
    """Logistic regression on the CE loss, forget = 1 vs test = 0 (the paper: stratified k-fold CV ROC AUC;
    `variant=kit`: the starting kit's class-balanced sets, 10 stratified shuffle splits, accuracy).

    With one feature the fitted attack is monotone in the loss, so its score is about max(A, 1 - A): it
    cannot show over-forgetting. `signed_auc` = AUC of -loss for forget vs test keeps the direction
    (above 0.5: forget samples look like members; below: they look *less* familiar than unseen data),
    with a stratified bootstrap 95% CI to judge whether a difference is noise. `retain_signed_auc` is the
    same on retain vs test: unlearning should leave it where the retrain model has it."""
    target = inputs.target
    forget, test = target.losses("forget").numpy(), target.losses("test").numpy()
    out = {}
    if params["variant"] == "kit":
        out["accuracy"] = _kit_accuracy(forget, test, inputs.seed)
    else:
        x, y = _stack(forget, test)
        folds = min(params["folds"], len(forget), len(test))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=inputs.seed)
        out["auc"] = float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="roc_auc").mean())
    x, y = _stack(forget, test)
    out["signed_auc"] = roc_auc(y, -x[:, 0])
    out["signed_auc_low"], out["signed_auc_high"] = bootstrap_auc_ci(y, -x[:, 0], n_boot=params["bootstrap"],
                                                                     seed=inputs.seed)
    x, y = _stack(target.losses("retain").numpy(), test)
    out["retain_signed_auc"] = roc_auc(y, -x[:, 0])
    return out


def _stack(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members), int), np.zeros(len(nonmembers), int)])
    return x, y


def _kit_accuracy(forget: np.ndarray, test: np.ndarray, seed: int) -> float:
    """The NeurIPS 2023 starting kit's `simple_mia`: the larger set cut to the smaller one's size (seeded),
    so chance is 0.5, then StratifiedShuffleSplit(n_splits=10, random_state=0) accuracy."""
    rng = np.random.default_rng(seed)
    n = min(len(forget), len(test))
    forget, test = rng.permutation(forget)[:n], rng.permutation(test)[:n]
    x, y = _stack(forget, test)
    cv = StratifiedShuffleSplit(n_splits=10, random_state=0)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


@hookimpl
def register_attacks(register):
    register("mia", loss_mia, description="the paper's loss-based MIA: logistic regression, 10-fold CV ROC AUC",
             space={
                 "variant": Choice(["paper", "kit"], default="paper", tune=False,
                                   help="paper: CV ROC AUC; kit: the starting kit's balanced accuracy"),
                 "folds": Int(2, 20, default=10, tune=False, help="cross-validation folds (the paper: 10)"),
                 "bootstrap": Int(100, 10000, default=500, tune=False,
                                  help="bootstrap resamples of the signed AUC's CI"),
             },
             metrics={
                 "auc": Metric(target=0.5, label="MIA AUC",
                               help="the paper's attack: CV ROC AUC of a logistic regression on the loss"),
                 "accuracy": Metric(target=0.5, label="kit MIA acc",
                                    help="variant=kit: the starting kit's attack accuracy on class-balanced sets"),
                 "signed_auc": Metric(target=0.5, label="signed AUC", interval=("signed_auc_low", "signed_auc_high"),
                                      help="AUC of -loss, forget vs test; below 0.5 is over-forgetting"),
                 "signed_auc_low": Metric(summary=False, help="lower bound of the signed AUC's 95% bootstrap CI"),
                 "signed_auc_high": Metric(summary=False, help="upper bound of the signed AUC's 95% bootstrap CI"),
                 "retain_signed_auc": Metric(summary=False, help="AUC of -loss, retain vs test: should stay where "
                                             "the retrain model has it (evaluation.md section 9)"),
             })
