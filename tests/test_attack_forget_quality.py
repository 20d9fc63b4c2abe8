"""forget-quality (the NeurIPS 2023 competition's forgetting quality) checked against hand-worked epsilons,
a brute-force scan of the same rules, the bucket edges, and end to end on synthetic model outputs."""
import math

import numpy as np
import pytest
import torch

from harness import AttackInput, Outputs, PrepareInput, ReferenceOutputs
from harness.evaluation import run_attack
from harness.host import Host
from harness.params import ParamError
from harness_plugins.attacks import forget_quality as fq

D = 1e-5
SPLITS = ("retain", "forget", "validation", "test")


def column(values) -> np.ndarray:
    """One example's confidences under each model: (N, 1)."""
    return np.asarray(values, np.float64)[:, None]


# -- per-example epsilon -------------------------------------------------------------------------------
def test_hand_worked_example_threshold():
    """N = 4, unlearned [0, 1, 2, 3], retrained [2.5, 3.5, 4.5, 5.5]. FPR and FNR are multiples of 1/4 and
    a rule survives only with both > 0, so no rule can beat FPR = FNR = 1/4:
    eps <= log(1 - d - 1/4) - log(1/4) = ln(3 - 4d) ~ 1.098599. A threshold t in (2.5, 3] reaches it:
    "retrained if phi >= t" takes 3 of 4 retrained (FNR 1/4) and the unlearned 3 (FPR 1/4).
    Its neighbours are discarded: t in (2, 2.5] has FNR 0 with FPR 1/4, t in (3, 3.5] FPR 0 with FNR 1/4.
    With N = 4 the buckets end at ceil(ln 3) = 2; 1.0986 is in bucket 2 = [1, 1.5): score 2^-2."""
    u, r = column([0, 1, 2, 3]), column([2.5, 3.5, 4.5, 5.5])
    expected = math.log(0.75 - D) - math.log(0.25)
    assert expected == pytest.approx(math.log(3 - 4 * D), abs=1e-12)
    assert fq.example_epsilons(u, r)[0] == pytest.approx(expected, abs=1e-12)
    assert fq.example_epsilons(u, r, intervals=False)[0] == pytest.approx(expected, abs=1e-12)
    assert fq.example_epsilons(r, u)[0] == pytest.approx(expected, abs=1e-12)  # symmetric in the two sides
    assert fq.bucket_scores(fq.example_epsilons(u, r), 4)[0] == 0.25


def test_hand_worked_example_interval_beats_thresholds():
    """N = 4, unlearned [0, 0.1, 0.2, 5], retrained [-3, -2, 2, 3]. Sorted: R R U U U R R U. Thresholds
    "phi >= t" leave (unlearned, retrained) inside: (4,4) (4,3) (4,2) (3,2) (2,2) (1,2) (1,1) (1,0) (0,0).
    The best is (3,2) with unlearned positive, FNR 1/4 and FPR 1/2:
    max(log(1/2 - d) - log(1/4), log(3/4 - d) - log(1/2)) = ln(2 - 4d) (or (1,2) the other way round).
    The interval [-2.5, 0.5] holds 3 unlearned and 1 retrained: FNR = FPR = 1/4, ln(3 - 4d), the N = 4
    maximum. [-0.5, 0.5] (3 unlearned, no retrained) has FPR 0 and FNR 1/4: discarded, not infinite."""
    u, r = column([0, 0.1, 0.2, 5]), column([-3, -2, 2, 3])
    assert fq.example_epsilons(u, r, intervals=False)[0] == pytest.approx(math.log(2 - 4 * D), abs=1e-12)
    assert fq.example_epsilons(u, r)[0] == pytest.approx(math.log(3 - 4 * D), abs=1e-12)
    assert fq.bucket_scores(fq.example_epsilons(u, r), 4)[0] == 0.25
    assert fq.bucket_scores(fq.example_epsilons(u, r, intervals=False), 4)[0] == 0.5


def test_rule_epsilon_special_cases():
    eps = fq.rule_epsilon([0, 0, 0.5, 0.25, 1.0, 0.5], [0, 0.5, 0, 0.25, 1.0, 0.5])
    assert np.isinf(eps[0]) and np.isnan(eps[1]) and np.isnan(eps[2])
    assert eps[3] == pytest.approx(math.log(3 - 4 * D), abs=1e-12)
    assert eps[4] == 0 and eps[5] == 0  # worse than or at chance: clipped at 0


def brute_force(u: np.ndarray, r: np.ndarray, per_unit: int, intervals: bool = True) -> float:
    """Every interval [l, h] of grid points (a threshold is h = max), both groups as positive, in loops."""
    n = len(u)
    both = np.concatenate([u, r])
    lo, hi = both.min(), both.max()
    grid = np.linspace(lo, hi, max(2, math.ceil((hi - lo) * per_unit)))
    grid[0], grid[-1] = lo, hi
    best = None
    for i, left in enumerate(grid):
        for right in grid[i:] if intervals else grid[-1:]:
            a = np.sum((u >= left) & (u <= right)) / n
            b = np.sum((r >= left) & (r <= right)) / n
            for fnr, fpr in ((1 - a, b), (1 - b, a)):
                if fnr == 0 and fpr == 0:
                    eps = math.inf
                elif fnr == 0 or fpr == 0:
                    continue
                else:
                    terms = [math.log(1 - D - x) - math.log(y) for x, y in ((fpr, fnr), (fnr, fpr)) if 1 - D - x > 0]
                    eps = max([0.0, *terms])
                best = eps if best is None else max(best, eps)
    return 0.0 if best is None else min(best, fq.EPSILON_CAP)


def test_matches_a_brute_force_scan_of_the_same_rules():
    rng = np.random.default_rng(3)
    n_models, n = 6, 12
    mu = rng.normal(0, 1, n)
    # some examples shifted, some narrower: several rule outcomes, intervals winning on some
    u = mu + rng.normal(0, 1, (n_models, n)) * rng.choice([1, 0.3], n) + rng.choice([0, 1.5], n)
    r = mu + rng.normal(0, 1, (n_models, n))
    for intervals in (True, False):
        got = fq.example_epsilons(u, r, per_unit=10, peaky=None, intervals=intervals)
        want = [brute_force(u[:, j], r[:, j], 10, intervals) for j in range(n)]
        assert got == pytest.approx(want, abs=1e-12)
        assert len(set(np.round(got, 6))) > 3


def test_identical_distributions_score_like_the_calibration():
    """Unlearned models drawn like retrain models: F against group A is F of group B against A, up to noise."""
    rng = np.random.default_rng(0)
    n_models, n = 3, 1500
    mu = rng.normal(0, 2, n)
    a, b, u = (mu + rng.normal(0, 1, (n_models, n)) for _ in range(3))
    f, calibration = fq.forgetting_quality(u, a), fq.forgetting_quality(b, a)
    assert 0.3 < calibration < 1
    assert f == pytest.approx(calibration, abs=0.05)


def test_perfect_separation_is_infinite_epsilon_and_scores_zero():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 1, (3, 50))
    u = r + 10  # every unlearned value above every retrained one
    assert np.isinf(fq.example_epsilons(u, r, cap=np.inf, peaky=None)).all()
    assert (fq.example_epsilons(u, r) == fq.EPSILON_CAP).all()
    assert (fq.bucket_scores(fq.example_epsilons(u, r), 3) == 0).all()
    assert fq.forgetting_quality(u, r) == 0


def test_point_mass_and_equal_values():
    r = column([-1.0, 0.0, 1.0])
    copies = column([0.3, 0.3, 0.3])  # one model three times: a point mass inside the retrain spread
    assert fq.example_epsilons(copies, r)[0] == fq.EPSILON_CAP
    assert fq.example_epsilons(column([2.0] * 3), column([2.0] * 3))[0] == 0  # nothing tells them apart


# -- buckets -------------------------------------------------------------------------------------------
def test_bucket_boundaries_belong_to_the_bucket_they_open():
    """N = 4: buckets [0, .5) [.5, 1) [1, 1.5) [1.5, 2), then 0."""
    eps = [0, 0.4999, 0.5, 0.9999, 1.0, 1.5, 1.9999, 2.0, 7, np.inf]
    assert fq.bucket_scores(eps, 4).tolist() == [1, 1, 0.5, 0.5, 0.25, 0.125, 0.125, 0, 0, 0]


@pytest.mark.parametrize("n_models, buckets", [(3, 2), (4, 4), (8, 4), (9, 6), (21, 6), (22, 8), (64, 10)])
def test_bucket_count_follows_ceil_log_n_minus_1(n_models, buckets):
    """ceil(ln(N-1)) is 1 up to N = 3 (ln 2 = .69), 2 up to N = 8 (ln 7 = 1.95), 3 up to N = 21 (ln 20 = 3.00)."""
    assert fq.n_buckets(n_models) == buckets
    last = (buckets - 1) * 0.5
    assert fq.bucket_scores([last, last + 0.5], n_models).tolist() == [2.0 ** -(buckets - 1), 0]


def test_where_the_bound_moves_an_epsilon_starts_to_score():
    assert fq.bucket_scores([1.2], 3)[0] == 0 and fq.bucket_scores([1.2], 4)[0] == 0.25
    assert fq.bucket_scores([2.2], 8)[0] == 0 and fq.bucket_scores([2.2], 9)[0] == 2.0 ** -4


def test_two_models_per_side_is_refused():
    with pytest.raises(ValueError, match="at least 3 models"):
        fq.bucket_scores([0.0], 2)
    with pytest.raises(ValueError, match="at least 3 models"):
        fq.forgetting_quality(np.zeros((2, 4)), np.ones((2, 4)))


# -- the attack end to end -----------------------------------------------------------------------------
def phi_logits(phi) -> torch.Tensor:
    """Two-class logits [phi, 0] with label 0: confidence phi exactly, correct iff phi > 0."""
    phi = torch.as_tensor(np.asarray(phi), dtype=torch.float32)
    return torch.stack([phi, torch.zeros_like(phi)], -1)


def outputs(phi: dict) -> Outputs:
    return Outputs({s: phi_logits(phi[s]) for s in SPLITS},
                   {s: torch.zeros(len(phi[s]), dtype=torch.long) for s in SPLITS})


def bank(phi: dict) -> ReferenceOutputs:
    return ReferenceOutputs({s: phi_logits(phi[s]) for s in SPLITS},
                            {s: torch.zeros(phi[s].shape[1], dtype=torch.long) for s in SPLITS})


class World:
    """Per-example mean confidences; a retrain model is mean + N(0, 1) noise on every split."""

    def __init__(self, n=(150, 300, 50, 150), seed=0):
        self.rng = np.random.default_rng(seed)
        self.mu = {s: self.rng.normal(1.0, 1.5, k) for s, k in zip(SPLITS, n)}

    def draw(self, k=None, shift=None) -> dict:
        shape = () if k is None else (k,)
        return {s: self.mu[s] + (shift or {}).get(s, 0.0) + self.rng.normal(0, 1, shape + self.mu[s].shape)
                for s in SPLITS}


FQ = None


def component():
    global FQ
    if FQ is None:
        host = Host()
        assert host.add_plugin(fq, name="x").ok
        FQ = host.attacks.get("forget-quality")
    return FQ


def score(target: Outputs, reruns, refs: ReferenceOutputs, seed=0, **overrides):
    attack = component()
    params = attack.resolve({"bootstrap": 200, **overrides})
    prepared = attack.prepare(PrepareInput(target, None, seed, references=refs), params)
    inputs = AttackInput(target, seed=seed, prepared=prepared, references=refs, reruns=tuple(reruns))
    return run_attack(attack, params, inputs).metrics, params


def test_end_to_end_memorising_models_fail_and_retrain_like_ones_pass():
    world = World()
    n_models = 3
    refs = bank(world.draw(2 * n_models))
    memorised = {"retain": 4.0, "forget": 4.0}
    original = outputs(world.draw(shift=memorised))

    copies, _ = score(original, [original] * (n_models - 1), refs)  # the original row: reruns are copies
    assert copies["forget-quality/F"] == 0 and copies["forget-quality/relative_high"] == 0

    failed = [outputs(world.draw(shift=memorised)) for _ in range(n_models)]  # seeded runs that kept the set
    m, _ = score(failed[0], failed[1:], refs)
    assert m["forget-quality/relative"] < 0.3 and m["forget-quality/relative_high"] < 1

    fresh = [outputs(world.draw()) for _ in range(n_models)]  # as good as retraining
    m, params = score(fresh[0], fresh[1:], refs)
    assert m["forget-quality/relative_low"] < 1 < m["forget-quality/relative_high"]
    assert m["forget-quality/relative"] == pytest.approx(1, abs=0.2)
    assert m["forget-quality/calibration"] > 0.3 and m["forget-quality/models"] == 3

    # the pieces, recomputed from the definitions
    ref_phi = refs.confidence("forget").double().numpy()
    phi = np.stack([o.confidence("forget").double().numpy() for o in fresh])
    f = fq.forgetting_quality(phi, ref_phi[:3])
    assert m["forget-quality/F"] == pytest.approx(f, abs=1e-12)
    assert m["forget-quality/calibration"] == pytest.approx(fq.forgetting_quality(ref_phi[3:], ref_phi[:3]), abs=1e-12)
    assert m["forget-quality/relative"] == pytest.approx(f / m["forget-quality/calibration"], abs=1e-12)
    def mean_acc(models, split):
        return np.mean([o.accuracy(split) for o in models])

    group_a = [refs.model(i) for i in range(3)]
    expected = (f * mean_acc(fresh, "retain") / mean_acc(group_a, "retain")
                * mean_acc(fresh, "test") / mean_acc(group_a, "test"))
    assert m["forget-quality/score"] == pytest.approx(expected, abs=1e-12)

    # without the prepare step the attack computes the same; the bootstrap is repeatable
    bare = run_attack(component(), params, AttackInput(fresh[0], seed=0, references=refs, reruns=tuple(fresh[1:])))
    assert bare.metrics == m


def test_the_score_penalises_lost_accuracy():
    world = World(seed=1)
    refs = bank(world.draw(6))
    broken = [outputs(world.draw(shift={"retain": -3.0, "test": -3.0})) for _ in range(3)]
    m, _ = score(broken[0], broken[1:], refs)
    assert m["forget-quality/score"] < 0.5 * m["forget-quality/F"]


def test_missing_references_or_reruns_are_clear_errors():
    world = World(n=(20, 30, 10, 20))
    target = outputs(world.draw())
    attack = component()
    params = attack.resolve({"models": 3})
    with pytest.raises(ValueError, match="needs 6 reference models"):
        attack.prepare(PrepareInput(target, None, references=bank(world.draw(5))), params)
    with pytest.raises(ValueError, match="needs 2 reruns"):
        attack.fn(AttackInput(target, references=bank(world.draw(6)), reruns=(target,)), params)


def test_registration_declares_its_needs():
    attack = component()
    params = attack.resolve()
    assert params == {"models": 3, "bootstrap": 500}
    assert attack.bank_needed(params) == 6 and attack.reruns_needed(params) == 2
    assert attack.bank_needed({**params, "models": 10}) == 20 and attack.reruns_needed({**params, "models": 10}) == 9
    assert attack.metrics["relative"].interval == ("relative_low", "relative_high")
    assert attack.metrics["relative"].target == 1.0 and attack.metrics["score"].higher_is_better
    assert not attack.metrics["models"].summary and attack.prepare is not None
    assert attack.unmet(params, retrain=False, bank_size=5) is not None
    with pytest.raises(ParamError):
        attack.resolve({"models": 2})
