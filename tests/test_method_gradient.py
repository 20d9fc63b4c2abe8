"""gradient: which weights are re-initialised, how the gradient mask scales, the schedule, hook removal."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.host import default_host
from harness_plugins.methods import gradient as grad

from .conftest import method_inputs


def params(**overrides):
    return {**default_host().methods.get("gradient").defaults, **overrides}


def fake_grads(offsets=(0.0, 0.0)):
    """Random-sign gradients for two small convs, |g| in [offset, offset + 1) per layer."""
    gen = torch.Generator().manual_seed(0)
    convs = [nn.Conv2d(3, 8, 3, bias=False), nn.Conv2d(8, 4, 1, bias=False)]
    grads = {}
    for conv, offset in zip(convs, offsets):
        sign = torch.randint(0, 2, conv.weight.shape, generator=gen) * 2.0 - 1.0
        grads[conv] = sign * (torch.rand(conv.weight.shape, generator=gen) + offset)
    return grads


def assert_smallest(scores, mask, k):
    assert int(mask.sum()) == k
    assert scores[mask].max() <= scores[~mask].min()


def test_per_layer_ranking_picks_the_smallest_fraction_of_each_conv():
    grads = fake_grads(offsets=(0.0, 10.0))
    masks = grad.select_weights(grads, 0.3, "per-layer")
    for conv, g in grads.items():
        assert masks[conv].shape == g.shape
        assert_smallest(g.abs(), masks[conv], round(0.3 * g.numel()))  # 65 of 216, 10 of 32


def test_global_ranking_picks_the_smallest_fraction_overall():
    grads = fake_grads(offsets=(0.0, 10.0))
    masks = grad.select_weights(grads, 0.3, "global")
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    flat = torch.cat([m.flatten() for m in masks.values()])
    assert_smallest(scores, flat, round(0.3 * scores.numel()))
    small, large = masks.values()
    assert int(large.sum()) == 0 and int(small.sum()) == round(0.3 * 248)  # the large-gradient layer keeps all


def test_reinitialise_overwrites_exactly_the_masked_weights_with_he_init():
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 256, 3, bias=False)
    with torch.no_grad():
        conv.weight.fill_(7.0)  # far from anything kaiming_normal_ draws
    mask = torch.rand(conv.weight.shape) < 0.3
    grad.reinitialise({conv: mask})
    w = conv.weight.detach()
    assert torch.all(w[~mask] == 7.0)
    assert torch.all(w[mask] != 7.0)
    fan_out = 256 * 3 * 3
    assert w[mask].std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.02)
    assert abs(w[mask].mean().item()) < 0.002


def test_gradient_hook_scales_old_weights_and_is_removable():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, bias=False)
    x = torch.randn(2, 3, 5, 5)

    def weight_grad():
        conv.weight.grad = None
        conv(x).square().sum().backward()
        return conv.weight.grad.clone()

    plain = weight_grad()
    mask = torch.rand(conv.weight.shape) < 0.3
    handles = grad.add_gradient_masks({conv: mask}, 0.1)
    masked = weight_grad()
    assert torch.allclose(masked[mask], plain[mask])
    assert torch.allclose(masked[~mask], 0.1 * plain[~mask])
    for h in handles:
        h.remove()
    assert torch.equal(weight_grad(), plain)
    assert not conv.weight._backward_hooks


def test_triangular_schedule():
    assert [grad.triangular_lr(e, 5) for e in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    assert [grad.triangular_lr(e, 4) for e in range(4)] == pytest.approx([1 / 2, 1, 1, 1 / 2])
    assert grad.triangular_lr(0, 1) == 1


def test_gradient_difference_is_retain_minus_forget(tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    idx = udata.retain[:40]
    g = grad.gradient_difference(model, ctx, idx, idx[:0], batch_size=64)
    model.eval()
    F.cross_entropy(model(next(ctx.batches(idx, 64, shuffle=False))[0]), tiny_data.labels[idx]).backward()
    assert torch.allclose(g[model.conv1], model.conv1.weight.grad, atol=1e-6)
    g = grad.gradient_difference(model, ctx, idx, idx, batch_size=64)
    assert all(v.abs().max() < 1e-6 for v in g.values())  # identical sets cancel
    assert len(g) == 20  # every Conv2d, downsample convs included


@pytest.mark.parametrize("ranking", ["per-layer", "global"])
def test_method_reinitialises_the_fraction_with_smallest_gradient(ranking, tiny_data, tiny_original, resnet_factory):
    """With lr 0 training moves nothing, so the changed weights are exactly the re-initialised ones."""
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory, seed=1)
    before = copy.deepcopy(model)
    out = grad.gradient(model, udata, params(epochs=1, lr=0.0, fraction=0.3, ranking=ranking), ctx)

    # the same score, from the same seeded retain subset
    _, udata2, ctx2 = method_inputs(tiny_data, tiny_original, resnet_factory, seed=1)
    n = len(udata2.forget)
    subset = udata2.retain[torch.randperm(len(udata2.retain), generator=ctx2.generator)[:n]]
    scores = grad.gradient_difference(copy.deepcopy(before), ctx2, subset, udata2.forget, params()["batch_size"])
    convs_before = [m for m in before.modules() if isinstance(m, nn.Conv2d)]
    convs_after = [m for m in out.modules() if isinstance(m, nn.Conv2d)]
    changed = [a.weight != b.weight for a, b in zip(convs_after, convs_before)]
    abs_g = [g.abs() for g in scores.values()]
    if ranking == "per-layer":
        for c, s in zip(changed, abs_g):
            assert_smallest(s, c, round(0.3 * s.numel()))
    else:
        flat_s = torch.cat([s.flatten() for s in abs_g])
        assert_smallest(flat_s, torch.cat([c.flatten() for c in changed]), round(0.3 * flat_s.numel()))
    others = {k for k, m in before.named_modules() if not isinstance(m, nn.Conv2d)}
    for name, p in out.named_parameters():
        if name.rsplit(".", 1)[0] in others:
            assert torch.equal(p, before.get_parameter(name)), name


def test_method_logs_the_schedule_and_removes_its_hooks(tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    out = grad.gradient(model, udata, params(epochs=3, lr=0.03), ctx)
    assert [row["epoch"] for row in ctx.history] == [1, 2, 3]
    assert [row["lr"] for row in ctx.history] == pytest.approx([0.015, 0.03, 0.015])
    assert all("train_loss" in row for row in ctx.history)
    assert type(out) is type(tiny_original) and not out.training
    assert all(not p._backward_hooks for p in out.parameters())
