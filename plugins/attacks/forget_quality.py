"""The NeurIPS 2023 unlearning competition's forgetting quality (evaluation.md section 8), with a
retrain-vs-retrain calibration so that a number from a few models can be read at all.

N unlearned models (the method run N times on one split) and N retrain models give, for each forget
example, two samples of the logit-scaled confidence phi. The best decision rule telling the two samples
apart gives a per-example (epsilon, delta) estimate; epsilons are bucketed and scored, and the forgetting
quality F is the mean score over the forget set (1 is best).

Conventions of this implementation:

- Models. Group A = references[:N] are the retrain models the unlearned ones are compared with; group
  B = references[N:2N] play the "unlearned" side of the calibration (B vs A), computed once per split in
  `prepare`. The unlearned side of the model under test is [target] + reruns[:N-1]. The harness gives the
  retrain row the bank's *last* N-1 models as reruns: with exactly 2N references those are B[1:], so that
  row's F shares N-1 models with the calibration and its `relative` sits near 1 partly by construction;
  a bank of at least 3N-1 models keeps them disjoint. Group A is never among them.
- Rules. Single thresholds (phi >= t) and intervals (l <= phi <= r) over a grid spanning the example's 2N
  values at 100 points per unit of phi, capped at `max_grid` points (default 200) because intervals cost
  O(G^2) per example; a wider spread is scanned more coarsely. Every rule is scored with either group as
  the positive class (equivalently: the rule and its complement). eps is symmetric in FPR and FNR, and an
  orientation worse than chance scores 0, so this agrees with the competition's choice (positive = the
  group with the larger median for thresholds, the narrower one for intervals) and never scores lower.
- Rates. FPR and FNR are fractions of the N models of each group. Both 0 (perfect separation): eps = inf,
  capped at 50 like the competition, which lies beyond the last bucket and scores 0. Exactly one 0: the
  rule is discarded (too few models to trust it). If no rule survives (the samples cannot be split at the
  grid's resolution, e.g. all equal) eps = 0.
- Point masses. As in the competition, when one group's spread is below 1% of the other's (a method that
  ignores its seed, or the original row whose reruns are copies) eps = the cap: a grid capped at 200 points
  may not isolate a point mass inside the other group's spread, but the distributions clearly differ.
- Buckets. Width 0.5 up to ceil(ln(N-1)), bucket b scoring 2^-b, beyond the last 0. With N models the
  largest finite eps is ln(N-1) + ln(1 - delta N/(N-1)) < ln(N-1), hence that bound. For N = 2 it is 0: no
  bucket exists and every model scores 0, so N >= 3 is required (the `models` parameter starts at 3).
"""
from __future__ import annotations

import math

import numpy as np

from harness import Int, Metric, hookimpl
from harness.stats import bootstrap_ci

DELTA = 1e-5
EPSILON_CAP = 50.0
PER_UNIT = 100  # grid points per unit of phi (the competition's)
MAX_GRID = 200  # grid points per example at most: intervals are O(G^2)
PEAKY = 0.01  # spread ratio below which one side is a point mass (the competition's guard)
BUCKET = 0.5
_CELLS = 2_000_000  # (examples x G x G) entries per chunk of the interval scan: bounds memory


def rule_epsilon(fpr, fnr, delta: float = DELTA) -> np.ndarray:
    """eps of decision rules from their error rates: inf where both are 0, NaN (discarded) where exactly
    one is, else max(log(1-d-FPR) - log FNR, log(1-d-FNR) - log FPR) clipped at 0. A rate above 1 - d has
    no finite log, so that term is -inf (it cannot be the max unless both are, then 0)."""
    fpr, fnr = np.broadcast_arrays(np.asarray(fpr, np.float64), np.asarray(fnr, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.log(np.maximum(1 - delta - fpr, 0)) - np.log(fnr)
        two = np.log(np.maximum(1 - delta - fnr, 0)) - np.log(fpr)
        eps = np.maximum(np.fmax(one, two), 0.0)
    eps = np.where((fpr == 0) ^ (fnr == 0), np.nan, eps)
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def _rule_table(n_models: int, delta: float) -> np.ndarray:
    """eps of a rule with ku of N unlearned and kr of N retrained values inside it, over both choices of
    the positive group: (N+1, N+1), NaN where both orientations are discarded. It depends on the counts
    only, so the scan looks it up instead of recomputing logs per rule."""
    k = np.arange(n_models + 1) / n_models
    ku, kr = k[:, None], k[None, :]
    unlearned_positive = rule_epsilon(fpr=kr, fnr=1 - ku, delta=delta)
    retrained_positive = rule_epsilon(fpr=ku, fnr=1 - kr, delta=delta)
    return np.fmax(unlearned_positive, retrained_positive)


def _grid(values: np.ndarray, per_unit: int, max_grid: int) -> np.ndarray:
    """(n, G) grid per example from its min to its max (both exactly), per_unit points per unit of phi,
    at most max_grid; shorter grids are padded with their max, which adds no new rule."""
    lo, hi = values.min(0), values.max(0)
    spread = hi - lo
    points = np.clip(np.ceil(spread * per_unit), 2, max(max_grid, 2)).astype(int)
    points = np.where(spread > 0, points, 1)
    k = np.arange(points.max())[None, :]
    last = (points - 1)[:, None]
    frac = np.minimum(k, last) / np.maximum(last, 1)
    grid = lo[:, None] + spread[:, None] * frac
    return np.where(k >= last, hi[:, None], grid)


def example_epsilons(unlearned_phi, retrained_phi, *, delta: float = DELTA, per_unit: int = PER_UNIT,
                     max_grid: int = MAX_GRID, cap: float = EPSILON_CAP, intervals: bool = True,
                     peaky: float | None = PEAKY) -> np.ndarray:
    """Per-example eps (n,) of (N, n) confidences of N unlearned and N retrained models: the max over
    threshold and interval rules (see the module docstring), capped at `cap`. `intervals=False` scans
    single thresholds only; `peaky=None` drops the point-mass guard."""
    u = np.asarray(unlearned_phi, np.float64)
    r = np.asarray(retrained_phi, np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"need two (models, examples) arrays of one shape, got {u.shape} and {r.shape}")
    n_models, n = u.shape
    table = _rule_table(n_models, delta)
    lookup = np.where(np.isnan(table), -1.0, table).ravel()  # -1: no surviving rule
    grid = _grid(np.concatenate([u, r]), per_unit, max_grid)  # (n, G)
    # values of each example at or above / strictly above each grid point: (n, G)
    ge_u = (u.T[:, :, None] >= grid[:, None, :]).sum(1, dtype=np.int16)
    ge_r = (r.T[:, :, None] >= grid[:, None, :]).sum(1, dtype=np.int16)
    if intervals:
        gt_u = (u.T[:, :, None] > grid[:, None, :]).sum(1, dtype=np.int16)
        gt_r = (r.T[:, :, None] > grid[:, None, :]).sum(1, dtype=np.int16)
        eps = np.empty(n)
        size = grid.shape[1]
        step = max(1, _CELLS // (size * size))
        for s in range(0, n, step):
            c = slice(s, s + step)
            # inside [g_i, g_j] = #(>= g_i) - #(> g_j); i > j gives <= 0: clipped, the empty rule
            ku = np.maximum(ge_u[c, :, None] - gt_u[c, None, :], 0)
            kr = np.maximum(ge_r[c, :, None] - gt_r[c, None, :], 0)
            eps[c] = lookup[ku * (n_models + 1) + kr].max((1, 2))
    else:
        eps = lookup[ge_u * (n_models + 1) + ge_r].max(1)
    eps = np.maximum(eps, 0.0)
    if peaky is not None:
        spread_u, spread_r = np.ptp(u, 0), np.ptp(r, 0)
        large = np.maximum(spread_u, spread_r)
        point_mass = (large > 0) & (np.minimum(spread_u, spread_r) < peaky * large)
        eps = np.where(point_mass, np.inf, eps)
    return np.minimum(eps, cap)


def n_buckets(n_models: int) -> int:
    """Buckets of width 0.5 up to ceil(ln(N-1)); an error for N < 3, where that bound is 0 (or undefined)
    and every model would score 0 whatever it did."""
    if n_models < 3:
        raise ValueError(f"forgetting quality needs at least 3 models per side, got {n_models}: with N = 2 the "
                         f"bucket bound ceil(ln(N-1)) is 0, so no epsilon is measurable and every model scores 0")
    return round(math.ceil(math.log(n_models - 1)) / BUCKET)


def bucket_scores(eps, n_models: int) -> np.ndarray:
    """Score per example: 2^-b for eps in bucket b = [0.5 b, 0.5 (b+1)), 0 beyond the last bucket (a
    boundary value belongs to the bucket it opens)."""
    eps = np.asarray(eps, np.float64)
    count = n_buckets(n_models)
    bucket = np.floor(np.where(np.isfinite(eps), eps, np.inf) / BUCKET)
    with np.errstate(over="ignore"):
        return np.where(bucket < count, np.exp2(-np.minimum(bucket, count)), 0.0)


def forgetting_quality(unlearned_phi, retrained_phi, **options) -> float:
    """F: the mean bucket score over forget examples (1: indistinguishable from retrain at this N)."""
    n_models = np.shape(unlearned_phi)[0]
    return float(bucket_scores(example_epsilons(unlearned_phi, retrained_phi, **options), n_models).mean())


def _mean_accuracy(models, split: str) -> float:
    return float(np.mean([m.accuracy(split) for m in models]))


def _groups(references, n_models: int):
    """(group A, group B) of the bank, with a clear error when it is too small."""
    if references is None or len(references) < 2 * n_models:
        have = 0 if references is None else len(references)
        raise ValueError(f"forget-quality with models={n_models} needs {2 * n_models} reference models "
                         f"(N to compare with, N for the calibration), got {have}")
    return references.subset(slice(0, n_models)), references.subset(slice(n_models, 2 * n_models))


def prepare_forget_quality(inputs, params) -> dict:
    """Once per split: group B scored against group A (the retrain-vs-retrain calibration) and group A's
    retain / test accuracy, the denominators of the final score."""
    n_models = params["models"]
    group_a, group_b = _groups(inputs.references, n_models)
    retrained = group_a.confidence("forget").double().numpy()
    scores = bucket_scores(example_epsilons(group_b.confidence("forget").double().numpy(), retrained), n_models)
    models_a = [group_a.model(i) for i in range(n_models)]
    return {"models": n_models, "retrained_phi": retrained, "calibration_scores": scores,
            "retain_accuracy": _mean_accuracy(models_a, "retain"), "test_accuracy": _mean_accuracy(models_a, "test")}


def _mean_ratio(u: np.ndarray, c: np.ndarray) -> float:
    c_mean = float(np.mean(c))
    return float(np.mean(u)) / c_mean if c_mean > 0 else math.nan


def forget_quality(inputs, params) -> dict:
    """F of the N unlearned models against group A, its calibration, F relative to it with a paired
    bootstrap 95% CI over forget examples, and the competition's final score."""
    n_models = params["models"]
    prepared = inputs.prepared
    if prepared is None or prepared["models"] != n_models:  # called without the harness's prepare step
        prepared = prepare_forget_quality(inputs, params)
    if len(inputs.reruns) < n_models - 1:
        raise ValueError(f"forget-quality with models={n_models} needs {n_models - 1} reruns of the method, "
                         f"got {len(inputs.reruns)}")
    unlearned = [inputs.target, *inputs.reruns[: n_models - 1]]
    phi = np.stack([m.confidence("forget").double().numpy() for m in unlearned])
    scores = bucket_scores(example_epsilons(phi, prepared["retrained_phi"]), n_models)
    calibration_scores = prepared["calibration_scores"]
    f, calibration = float(scores.mean()), float(calibration_scores.mean())
    out = {"F": f, "calibration": calibration, "models": float(n_models)}
    if calibration > 0:  # else there is no retrain-vs-retrain baseline to be relative to: left out, not NaN
        out["relative"] = f / calibration
        out["relative_low"], out["relative_high"] = bootstrap_ci(
            _mean_ratio, (scores, calibration_scores), n_boot=params["bootstrap"], seed=inputs.seed, paired=True)
    if prepared["retain_accuracy"] > 0 and prepared["test_accuracy"] > 0:
        out["score"] = (f * _mean_accuracy(unlearned, "retain") / prepared["retain_accuracy"]
                        * _mean_accuracy(unlearned, "test") / prepared["test_accuracy"])
    return out


@hookimpl
def register_attacks(register):
    register("forget-quality", forget_quality, prepare=prepare_forget_quality,
             description="the NeurIPS 2023 competition's forgetting quality: N unlearned vs N retrain models, "
                         "per-example epsilons, relative to retrain vs retrain",
             space={
                 "models": Int(3, 64, default=3, tune=False,
                               help="N: runs of the method and retrain models per side (uses 2N references, N-1 "
                                    "reruns); N = 2 cannot measure any epsilon, so 3 is the least"),
                 "bootstrap": Int(100, 10000, default=500, tune=False,
                                  help="bootstrap resamples of the relative forgetting quality's CI"),
             },
             metrics={
                 "F": Metric(higher_is_better=True, label="FQ",
                             help="forgetting quality: mean bucket score 2^-b of per-example epsilons, N unlearned "
                                  "vs N retrain models (1: indistinguishable at this N)"),
                 "calibration": Metric(label="FQ retrain",
                                       help="the same F for N retrain models vs the other N: what F can reach at "
                                            "this N and forget set"),
                 "relative": Metric(target=1.0, label="FQ / retrain", interval=("relative_low", "relative_high"),
                                    help="F / calibration; below 1: the unlearned models are told apart from "
                                         "retrain more often than retrain models from each other"),
                 "relative_low": Metric(summary=False, help="lower bound of the relative F's 95% paired bootstrap "
                                                            "CI over forget examples"),
                 "relative_high": Metric(summary=False, help="upper bound of the relative F's 95% paired bootstrap "
                                                             "CI over forget examples"),
                 "score": Metric(higher_is_better=True, label="FQ score",
                                 help="the competition's final score: F x (retain acc / retrain's) x (test acc / "
                                      "retrain's), accuracies averaged over each side's N models"),
                 "models": Metric(summary=False, fmt="{:.0f}", help="N, models per side"),
             },
             references=lambda p: 2 * p["models"], reruns=lambda p: p["models"] - 1)
