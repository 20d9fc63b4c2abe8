"""The state-of-the-art baselines, each pinned to what makes it that method, computed a second way on the
example plugin's tiny CNN: the ascent's sign, NegGrad+'s weighting, the l1 schedule, SalUn's mask,
SCRUB's step order and rewind, Bad Teacher's targets, SSD's dampening, UNSIR's noise, Boundary
Shrink's labels and Boundary Expanding's shadow class. The conformance suite (test_conformance.py)
runs over all of them."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from harness import toolkit
from harness.data import MEAN, STD
from harness.host import default_host
from harness.params import ParamError
from harness_plugins.methods import bad_teacher, boundary, l1_sparse, scrub, ssd, unsir

from .conftest import method_inputs, tiny_factory

SOTA = ["ga", "neggrad-plus", "rl", "l1-sparse", "salun", "scrub", "bad-teacher", "ssd", "unsir",
        "boundary-shrink", "boundary-expand"]


def method(name):
    return default_host().methods.get(name)


def run(name, tiny_data, bench, seed=0, **params):
    m = method(name)
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory, seed=seed)
    return m.fn(model, data, m.resolve(params), ctx), data, ctx


def images(data, ctx, indices):
    """All of `indices` as one normalised batch, in order."""
    x, y = zip(*ctx.batches(indices, 4096, shuffle=False))
    return torch.cat(x), torch.cat(y)


def sgd_step(model, loss, lr):
    """theta - lr * grad(loss) for every parameter, computed by autograd here (no optimiser)."""
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return [p.detach() - lr * g for p, g in zip(model.parameters(), grads)]


def params_of(model):
    return [p.detach() for p in model.parameters()]


def test_every_baseline_is_registered_with_its_family_data_and_source():
    for name in SOTA:
        m = method(name)
        assert m.family and m.touches and m.citation, name
    listing = CliRunner().invoke(default_main(), ["plugins"]).output
    assert "family: ascent; data: forget" in listing and "source: Fan et al., ICLR 2024 (SalUn)" in listing


def default_main():
    from harness.cli import main

    return main


# -- ga and neggrad-plus: the sign and the weighting -------------------------------------------------------
def test_ga_takes_one_sgd_step_up_the_forget_loss(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    reference = copy.deepcopy(model).train()
    x, y = images(data, ctx, data.forget)
    expected = sgd_step(reference, -F.cross_entropy(reference(x), y), lr=0.05)  # one batch holds the forget set
    m = method("ga")
    out = m.fn(model, data, m.resolve({"epochs": 1, "lr": 0.05, "batch_size": 256, "momentum": 0.0,
                                       "weight_decay": 0.0}), ctx)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_of(out), expected))
    descent = sgd_step(reference, F.cross_entropy(reference(x), y), lr=0.05)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_of(out), descent))


def test_neggrad_plus_weighs_retain_descent_against_forget_ascent(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    reference = copy.deepcopy(model).train()
    xr, yr = images(data, ctx, data.retain)
    xf, yf = images(data, ctx, data.forget)
    logits = reference(torch.cat([xr, xf]))  # one paired batch: the whole retain set beside the forget set
    alpha = 0.7
    loss = alpha * F.cross_entropy(logits[:len(yr)], yr) - (1 - alpha) * F.cross_entropy(logits[len(yr):], yf)
    expected = sgd_step(reference, loss, lr=0.02)
    m = method("neggrad-plus")
    out = m.fn(model, data, m.resolve({"epochs": 1, "lr": 0.02, "alpha": alpha, "retain_batch_size": len(yr),
                                       "forget_batch_size": len(yf)}), ctx)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_of(out), expected))


# -- rl: random labels on forget, then retain --------------------------------------------------------------
def test_rl_passes_forget_with_fresh_random_labels_then_retain_with_the_true_ones(tiny_data, bench, monkeypatch):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    passes, drawn = [], []
    real_random, real_epoch = toolkit.random_labels, ctx.train_epoch
    monkeypatch.setattr(toolkit, "random_labels", lambda *a, **k: drawn.append(real_random(*a, **k)) or drawn[-1])

    def train_epoch(model, batches, optimizer, loss_fn=None, after_step=None):
        batches = list(batches)
        passes.append((loss_fn, sum(len(b[1]) for b in batches), [b[2] for b in batches if len(b) > 2]))
        return real_epoch(model, iter(batches), optimizer, loss_fn, after_step)

    ctx.train_epoch = train_epoch
    m = method("rl")
    m.fn(model, data, m.resolve({"epochs": 2}), ctx)
    assert [(p[0] is not None, p[1]) for p in passes] == [(True, 24), (False, 96)] * 2
    assert len(drawn) == 2 and not torch.equal(drawn[0], drawn[1])  # drawn again each epoch
    carried = torch.cat(passes[0][2]).long().cpu()
    assert sorted(carried.tolist()) == sorted(drawn[0].tolist())  # the forget pass trains on those labels


# -- l1-sparse: the decaying penalty -----------------------------------------------------------------------
def test_l1_sparse_penalty_decays_linearly_per_epoch_and_enters_the_gradient(tiny_data, bench):
    assert l1_sparse.l1_weights(1e-4, 10) == pytest.approx([1e-4 * (1 - e / 10) for e in range(10)])
    assert l1_sparse.l1_weights(2.0, 4) == [2.0, 1.5, 1.0, 0.5]
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    reference = copy.deepcopy(model).train()
    x, y = images(data, ctx, data.retain)
    gamma = 1e-3
    loss = F.cross_entropy(reference(x), y) + gamma * sum(p.abs().sum() for p in reference.parameters())
    expected = sgd_step(reference, loss, lr=0.05)
    m = method("l1-sparse")
    out = m.fn(model, data, m.resolve({"epochs": 1, "lr": 0.05, "gamma": gamma, "batch_size": 256,
                                       "momentum": 0.0, "weight_decay": 0.0}), ctx)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_of(out), expected))


# -- salun: the mask -------------------------------------------------------------------------------------
def test_salun_updates_exactly_the_salient_share_and_leaves_every_other_weight_bit_identical(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    reference = copy.deepcopy(model).eval()
    x, y = images(data, ctx, data.forget)  # the mask's gradient: batch means summed; one batch here
    grads = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
    flat = torch.cat([g.abs().flatten() for g in grads])
    sparsity = 0.3
    k = round(sparsity * flat.numel())
    threshold = flat.sort(descending=True).values[k - 1]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = method("salun")
    out = m.fn(model, data, m.resolve({"epochs": 2, "sparsity": sparsity, "batch_size": 256}), ctx)
    moved = total = 0
    for (name, p), g in zip(out.named_parameters(), grads):
        salient = g.abs() > threshold
        frozen = g.abs() < threshold
        assert torch.equal(p.detach()[frozen], before[name][frozen]), name  # bit-identical, despite wd and momentum
        moved += int((p.detach() != before[name])[salient].sum())
        total += int(salient.sum())
    assert moved > 0.9 * total
    masks = toolkit.top_fraction_masks({n: g.abs() for n, g in zip(dict(model.named_parameters()), grads)}, sparsity)
    assert sum(int(v.sum()) for v in masks.values()) == k


# -- scrub: the step order and the rewind ------------------------------------------------------------------
def test_scrub_runs_max_epochs_on_forget_before_min_epochs_on_retain_for_the_first_msteps(tiny_data, bench,
                                                                                          monkeypatch):
    calls = []
    real = scrub.scrub_pass
    monkeypatch.setattr(scrub, "scrub_pass", lambda model, indices, *a: calls.append((a[1], len(indices)))
                        or real(model, indices, *a))
    run("scrub", tiny_data, bench, epochs=4, msteps=2, rewind=False)
    assert calls == [("max", 24), ("min", 96), ("max", 24), ("min", 96), ("min", 96), ("min", 96)]
    calls.clear()
    run("scrub", tiny_data, bench, epochs=2, msteps=5, rewind=False)  # msteps beyond epochs: capped
    assert [c[0] for c in calls] == ["max", "min", "max", "min"]
    assert [scrub.lr_at(e, 1.0) for e in range(1, 11)] == pytest.approx([1, 1, 1, .1, .1, .01, .01, .01, .01, .001])


def test_scrub_rewind_returns_the_epoch_whose_forget_error_matches_the_validation_error(tiny_data, bench):
    assert scrub.rewind_index([0.1, 0.3, 0.5], 0.28) == 1
    assert scrub.rewind_index([0.2, 0.4], 0.3) == 0  # a tie: the earlier one
    rewound, data, ctx = run("scrub", tiny_data, bench, epochs=3, msteps=2, rewind=True)
    trajectory = [run("scrub", tiny_data, bench, epochs=e, msteps=2, rewind=False)[0] for e in (1, 2, 3)]

    def err(model, indices):
        return 1 - float((ctx.predict(model, indices).argmax(1) == data.labels(indices)).float().mean())

    chosen = scrub.rewind_index([err(m, data.forget) for m in trajectory], err(trajectory[-1], data.validation))
    assert all(torch.equal(a, b) for a, b in zip(params_of(rewound), params_of(trajectory[chosen])))
    with pytest.raises(ParamError, match="msteps=0 takes none"):
        method("scrub").resolve({"rewind": True, "msteps": 0})


# -- bad-teacher: two targets ----------------------------------------------------------------------------
def test_bad_teacher_pulls_forget_rows_to_the_random_teacher_and_retain_rows_to_the_original():
    torch.manual_seed(0)
    good, bad, student = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 4)
    flag = torch.tensor([1.0, 0, 0, 1, 0, 1])
    T = 2.0
    target = bad_teacher.teacher_target(good, bad, flag, T)
    for i in range(6):
        expected = F.softmax((bad if flag[i] else good)[i] / T, 0)
        assert torch.allclose(target[i], expected)
    loss = bad_teacher.bad_teacher_loss(T, 4)(student, None, None, torch.cat([flag[:, None], good, bad], 1))
    manual = (target * (target.log() - F.log_softmax(student / T, 1))).sum() / target.numel()
    assert float(loss) == pytest.approx(float(manual), rel=1e-5)


# -- ssd: the dampening formula --------------------------------------------------------------------------
def test_ssd_scales_only_the_weights_more_important_to_forget_by_the_ratio():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(2.0)
    full = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    forget = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    forget["0.weight"] = torch.tensor([[20.0, 5.0], [40.0, 0.5]])  # alpha = 10: only 20 and 40 are above 10 * 1
    forget["1.bias"] = torch.tensor([11.0])
    selected = ssd.dampen(model, full, forget, alpha=10.0, lam=1.0)
    assert torch.equal(model[0].weight, torch.tensor([[2.0 / 20, 2.0], [2.0 / 40, 2.0]]))
    assert torch.equal(model[1].bias, torch.tensor([2.0 / 11])) and torch.equal(model[0].bias, torch.tensor([2.0, 2.0]))
    assert torch.equal(model[1].weight, torch.full((1, 2), 2.0))
    assert int(sum(s.sum() for s in selected.values())) == 3
    again = torch.nn.Linear(1, 1)
    with torch.no_grad():
        again.weight.fill_(3.0)
    ssd.dampen(again, {"weight": torch.ones(1, 1), "bias": torch.ones(1)},
               {"weight": torch.full((1, 1), 15.0), "bias": torch.ones(1)}, alpha=10.0, lam=30.0)
    assert float(again.weight.detach()) == 3.0  # lam * I_D / I_f = 2 > 1: the factor is capped at 1


# -- unsir: error-maximising noise -----------------------------------------------------------------------
def test_unsir_noise_raises_the_loss_of_the_labels_it_was_made_for(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    x, _ = images(data, ctx, data.forget)
    labels = data.labels(data.forget)
    params = method("unsir").resolve({"noise_steps": 20})
    torch.manual_seed(5)
    start = torch.randn((len(labels), *x.shape[1:]))
    torch.manual_seed(5)
    noise = unsir.error_maximising_noise(model, labels, x, params, ctx)
    model.eval()
    with torch.no_grad():
        raised = F.cross_entropy(model(noise), labels)
        assert raised > F.cross_entropy(model(start), labels) and raised > F.cross_entropy(model(x), labels)
    assert all(torch.equal(a, b) for a, b in zip(params_of(model), params_of(bench.original)))


# -- boundary methods ------------------------------------------------------------------------------------
def test_boundary_shrink_labels_are_the_class_the_original_gives_its_fgsm_image(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    params = method("boundary-shrink").resolve({"eps": 0.05, "batch_size": 256})
    labels = boundary.shrink_labels(data.original, data, params, ctx)
    x, y = images(data, ctx, data.forget)  # a second FGSM, written out
    x = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(data.original(x), y), x)
    std, mean = torch.tensor(STD).view(1, 3, 1, 1), torch.tensor(MEAN).view(1, 3, 1, 1)
    pixels = ((x.detach() * std + mean) + 0.05 * grad.sign()).clamp(0, 1)
    expected = data.original((pixels - mean) / std).argmax(1)
    assert torch.equal(labels, expected) and (labels != y).sum() >= len(y) // 2  # most steps cross over


def test_boundary_expand_trains_a_shadow_class_then_removes_it(tiny_data, bench, monkeypatch):
    widths = []
    real = toolkit.add_outputs
    monkeypatch.setattr(toolkit, "add_outputs", lambda model, extra=1: widths.append(extra) or real(model, extra))
    out, data, ctx = run("boundary-expand", tiny_data, bench, epochs=2, lr=0.01)
    head = toolkit.last_linear(out)[2]
    assert widths == [1] and head.out_features == data.num_classes
    original_head = toolkit.last_linear(bench.original)[2]
    assert not torch.equal(head.weight, original_head.weight)  # its rows trained beside the shadow one


# -- bad parameters are refused before anything runs -------------------------------------------------------
@pytest.mark.parametrize("name, params, message", [
    ("salun", {"sparsity": 1.0}, "sparsity=1.0 is out of range"),
    ("salun", {"sparsity": 0.0}, "sparsity=0.0 is out of range"),
    ("scrub", {"rewind": True, "msteps": 0}, "rewind=True chooses how far SCRUB's max steps went"),
    ("bad-teacher", {"T": 0.0}, "T=0.0 is out of range"),
    ("scrub", {"T": -1.0}, "T=-1.0 is out of range"),
    ("neggrad-plus", {"alpha": 1.5}, "alpha=1.5 is out of range"),
])
def test_bad_parameters_are_refused_when_planned(name, params, message, npz_dir, tmp_path):
    from harness.plan import plan
    from harness.spec import UsageError, configure

    with pytest.raises(UsageError, match=message):
        plan(*configure(methods=[name], params={name: params}, profile="smoke", model="tiny-cnn",
                        data_dir=str(npz_dir), cache_dir=str(tmp_path), show_progress=False))
