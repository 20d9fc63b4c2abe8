"""harness.toolkit, each helper against a second computation on tiny tensors or the bench's tiny CNN."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import toolkit
from harness.data import MEAN, STD

from .conftest import method_inputs, tiny_factory


def test_kl_to_teacher_is_the_textbook_formula():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    for T in (1.0, 4.0):
        p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
        expected = (p * (p.log() - q.log())).sum(1).mean()
        assert float(toolkit.kl_to_teacher(s, t, T)) == pytest.approx(float(expected), rel=1e-5)
    assert float(toolkit.kl_to_teacher(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)


def test_random_labels_cover_every_class_or_only_the_others():
    labels = torch.arange(10).repeat(300)
    anything = toolkit.random_labels(labels, 10, torch.Generator().manual_seed(0))
    assert (anything == labels).any() and torch.bincount(anything, minlength=10).min() > 200
    drawn = toolkit.random_labels(labels, 10, torch.Generator().manual_seed(0), exclude_true=True)
    assert not (drawn == labels).any() and drawn.min() >= 0 and drawn.max() <= 9
    for c in range(10):  # uniform over the 9 others: each about 300 / 9 times
        counts = torch.bincount(drawn[labels == c], minlength=10)
        assert counts[c] == 0 and counts.sum() == 300 and counts[torch.arange(10) != c].min() > 15


def test_top_fraction_masks_keep_exactly_that_share_ranked_over_all_tensors():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[4.0, 0.0], [2.0, 2.0]])}
    masks = toolkit.top_fraction_masks(scores, 3 / 7)
    assert masks["a"].tolist() == [True, False, True] and masks["b"].tolist() == [[True, False], [False, False]]
    big = {"w": torch.rand(1000), "v": torch.rand(37, 3)}
    for fraction in (0.1, 0.5, 0.9):
        got = sum(int(m.sum()) for m in toolkit.top_fraction_masks(big, fraction).values())
        assert got == round(fraction * 1111)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        toolkit.top_fraction_masks(big, 1.0)


def test_keep_unmasked_leaves_masked_weights_bit_identical_under_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    masks = {"weight": torch.rand(3, 6) > 0.5}  # bias: no mask, trains freely
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    restore = toolkit.keep_unmasked(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
        opt.step()
        restore()
    w = model.weight.detach()
    assert torch.equal(w[~masks["weight"]], before["weight"][~masks["weight"]])
    assert (w[masks["weight"]] != before["weight"][masks["weight"]]).all()
    assert not torch.equal(model.bias.detach(), before["bias"])


def test_diagonal_fisher_is_the_mean_of_per_batch_squared_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(3)]

    class Ctx:
        @staticmethod
        def autocast():
            return torch.autocast("cpu", enabled=False)

    got = toolkit.diagonal_fisher(model, batches, Ctx())
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        for (n, _), g in zip(model.named_parameters(), grads):
            expected[n] += g ** 2 / 3
    assert set(got) == set(expected) and all(torch.allclose(got[n], expected[n]) for n in got)
    assert all(p.grad is None for p in model.parameters())


def test_paired_batches_pair_one_retain_and_one_forget_batch_and_flag_the_forget_side(tiny_data, bench):
    _, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    steps = list(toolkit.paired_batches(ctx, data.retain, data.forget, 32, 8))
    assert len(steps) == math.ceil(len(data.retain) / 32)  # retain once; forget restarted as needed
    x, y, flag = steps[0]
    assert x.shape[0] == y.shape[0] == flag.shape[0] == 40 and flag.tolist() == [0.0] * 32 + [1.0] * 8
    short = list(toolkit.paired_batches(ctx, data.retain, data.forget, 32, 8, cycle="none"))
    assert len(short) == math.ceil(len(data.forget) / 8)


def test_adversarial_steps_stay_within_eps_and_valid_pixels_and_raise_the_loss(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    x, y = next(iter(ctx.batches(data.forget, 16, shuffle=False)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    std = torch.tensor(STD).view(1, 3, 1, 1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    for steps in (1, 5):
        adv = toolkit.adversarial(model, x, y, ctx, eps=8 / 255, steps=steps)
        pixels, adv_pixels = x * std + mean, adv * std + mean
        assert float((adv_pixels - pixels).abs().max()) <= 8 / 255 + 1e-5
        assert adv_pixels.min() >= -1e-5 and adv_pixels.max() <= 1 + 1e-5
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_frozen_copies_and_random_teachers_are_frozen_and_seeded(tiny_data, bench):
    model, _, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    copy = toolkit.frozen_copy(model)
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())
    assert all(p.requires_grad for p in model.parameters())
    torch.manual_seed(3)
    a = toolkit.random_teacher(ctx)
    torch.manual_seed(3)
    b = toolkit.random_teacher(ctx)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not any(p.requires_grad for p in a.parameters())


def test_a_shadow_output_is_added_and_dropped_keeping_the_trained_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    before = model[1].weight.detach().clone()
    wide = toolkit.add_outputs(model)
    assert model[1] is wide and wide.out_features == 4 and torch.equal(wide.weight[:3], before)
    assert model(torch.randn(2, 4)).shape == (2, 4)
    with torch.no_grad():
        wide.weight[0] += 1.0
    narrow = toolkit.drop_outputs(model, 3)
    assert narrow.out_features == 3 and torch.equal(narrow.weight[0], before[0] + 1.0)
    assert toolkit.last_linear(model)[1:] == ("1", narrow)
