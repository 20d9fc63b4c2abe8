"""Offline RMIA (Zarifzadeh et al. 2024): the target's likelihood ratio on x against a population of
held-out test images, with retrain references standing in for the unknown "OUT" models."""
from __future__ import annotations

import math

import numpy as np
import torch

from harness import Choice, Float, Metric, hookimpl
from harness.membership import membership_declarations, membership_result, membership_space
from harness.stats import roc_auc

A_GRID = tuple(i / 10 for i in range(11))  # the values of `a` that calibrate="original" tries


def population_split(n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(population, evaluation) positions in the test split: a seeded random half is the population z,
    the rest are the non-members scored against forget, so no test image is compared with itself."""
    if n_test < 2:
        raise ValueError(f"rmia needs at least 2 test samples (a population half and an evaluation half), got {n_test}")
    order = np.random.default_rng(seed).permutation(n_test)
    return np.sort(order[: n_test // 2]), np.sort(order[n_test // 2:])


def log_true_probs(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """log p_y in float64 over the last axis: p_t / Pr is formed in log space, so true-label probabilities
    that round to 1 (or 0) in float32 still rank apart."""
    logp = torch.log_softmax(logits.double(), -1)
    return logp.gather(-1, labels.expand(logp.shape[:-1])[..., None]).squeeze(-1).numpy()


def log_prior(ref_log_probs: np.ndarray, a: float) -> np.ndarray:
    """log Pr(x) = log(((1 + a) P_ref(x) + (1 - a)) / 2), P_ref the references' mean p_y; the (1 - a) term is
    the paper's linear approximation of the missing IN models (a = 1: the references' mean alone)."""
    log_mean = np.logaddexp.reduce(ref_log_probs, axis=0) - math.log(ref_log_probs.shape[0])
    return np.logaddexp(math.log1p(a) + log_mean, math.log1p(-a) if a < 1 else -math.inf) - math.log(2)


def rmia_scores(log_ratio: np.ndarray, population_log_ratio: np.ndarray, gamma: float) -> np.ndarray:
    """Fraction of population points z with r(x) / r(z) > gamma, by binary search in the sorted population
    (log r(z) < log r(x) - log gamma), O((n + m) log m) instead of comparing every pair."""
    ordered = np.sort(population_log_ratio)
    return np.searchsorted(ordered, np.asarray(log_ratio) - math.log(gamma), side="left") / len(ordered)


def _log_probs(outputs) -> dict[str, np.ndarray]:
    return {s: log_true_probs(outputs.logits[s], outputs.labels[s]) for s in ("forget", "test")}


def _score(target_lp: dict, ref_lp: dict, a: float, gamma: float, seed: int):
    """(forget scores, evaluation-half scores, forget log-ratios) of one model."""
    log_r = {s: target_lp[s] - log_prior(ref_lp[s], a) for s in ("forget", "test")}
    population, evaluation = population_split(len(log_r["test"]), seed)
    pop = log_r["test"][population]
    return rmia_scores(log_r["forget"], pop, gamma), rmia_scores(log_r["test"][evaluation], pop, gamma), log_r["forget"]


def calibrate_a(original, references, gamma: float, seed: int) -> float:
    """The `a` of A_GRID that maximises the original model's AUC (forget vs the evaluation half of test):
    the original is known to have seen the forget set, and the model under test never tunes its own attack.
    Ties go to the smallest `a`."""
    target_lp, ref_lp = _log_probs(original), {s: log_true_probs(references.logits[s], references.labels[s])
                                               for s in ("forget", "test")}
    aucs = []
    for a in A_GRID:
        forget, held_out, _ = _score(target_lp, ref_lp, a, gamma, seed)
        aucs.append(roc_auc(np.r_[np.ones(len(forget)), np.zeros(len(held_out))], np.r_[forget, held_out]))
    return A_GRID[int(np.argmax(aucs))]


def prepare_rmia(inputs, params) -> float:
    """The `a` every model of this split is scored with: calibrated on the original, or the fixed one."""
    if params["calibrate"] == "fixed":
        return float(params["a"])
    if inputs.references is None or len(inputs.references) < 1:
        raise ValueError("rmia needs at least 1 reference model")
    return calibrate_a(inputs.original, inputs.references, params["gamma"], inputs.seed)


def rmia(inputs, params):
    """Offline RMIA: r(x) = p_t(x) / Pr(x); score(x) = fraction of a seeded half of test (the population z)
    with r(x) / r(z) > gamma; forget = 1 vs the other half of test = 0.

    The population comparison makes the score a calibrated rank of r, so for one target model its AUC
    is that of r up to the population's resolution. `a` comes from `prepare` (the original's best)."""
    refs = inputs.references
    if refs is None or len(refs) < 1:
        raise ValueError("rmia needs at least 1 reference model")
    a = inputs.prepared
    if a is None:  # called without prepare (a direct call): calibrate the same way here
        if params["calibrate"] == "original" and inputs.original is None:
            raise ValueError("rmia with calibrate='original' needs the original model's outputs")
        a = prepare_rmia(inputs, params)
    ref_lp = {s: log_true_probs(refs.logits[s], refs.labels[s]) for s in ("forget", "test")}
    forget, held_out, log_r = _score(_log_probs(inputs.target), ref_lp, float(a), params["gamma"], inputs.seed)
    # the table is ordered by r: the score's order, with its ties (all of z beaten) broken by r
    return membership_result(inputs.target, forget, held_out, params, inputs.seed, key=log_r,
                             extra_metrics={"a": float(a)}, log_ratio=log_r)


@hookimpl
def register_attacks(register):
    metrics = membership_declarations("RMIA")
    metrics["a"] = Metric(summary=False, help="the a of Pr(x) = ((1 + a) P_ref(x) + (1 - a)) / 2 used (calibrated "
                          "on the original model unless calibrate=fixed)")
    register("rmia", rmia,
             description="offline RMIA: likelihood ratio against a population of test images, retrain references",
             space={
                 "a": Float(0.0, 1.0, default=0.3, tune=False,
                            help="offline scaling of Pr(x), used with calibrate=fixed"),
                 "calibrate": Choice(["original", "fixed"], default="original", tune=False,
                                     help="original: pick a from 0, 0.1, ..., 1 by the original model's AUC; "
                                          "fixed: use the a parameter"),
                 "gamma": Float(0.01, 100.0, default=1.0, log=True, tune=False,
                                help="z is dominated by x when r(x) / r(z) > gamma"),
                 **membership_space("highest score"),
             },
             metrics=metrics, prepare=prepare_rmia, references=1)
