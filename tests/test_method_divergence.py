"""divergence: the two losses on hand-computed examples, the KL pass, the epoch loop and its logging."""
from __future__ import annotations

import math

import pytest
import torch

from harness.host import default_host
from harness_plugins.methods import divergence as div

from .conftest import method_inputs


def params(**overrides):
    return {**default_host().methods.get("divergence").defaults, **overrides}


def test_uniform_kl_loss_by_hand():
    assert div.uniform_kl_loss(torch.zeros(3, 4)).item() == pytest.approx(0.0, abs=1e-7)
    logits = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]]))
    by_hand = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.0) / 2  # batchmean
    assert div.uniform_kl_loss(logits).item() == pytest.approx(by_hand, rel=1e-6)


def test_contrastive_loss_by_hand():
    o_f = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    o_r = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    t = 0.5
    # similarities o_f @ o_r^T / t: row 1 = [2, 0, 2], row 2 = [0, 4, 2]
    terms = []
    for row in ([2.0, 0.0, 2.0], [0.0, 4.0, 2.0]):
        lse = math.log(sum(math.exp(s) for s in row))
        terms += [lse - s for s in row]  # -log_softmax
    loss = div.contrastive_loss(o_f, o_r, t)
    assert loss.item() == pytest.approx(sum(terms) / 6, rel=1e-6)
    loss.backward()
    assert o_r.grad is None and o_f.grad is not None  # retain logits are targets, not trained through


def test_contrastive_loss_is_smallest_when_similarities_are_equal():
    o_r = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    equal = div.contrastive_loss(torch.tensor([[1.0, 1.0]]), o_r, 1.15)
    peaked = div.contrastive_loss(torch.tensor([[3.0, 0.0]]), o_r, 1.15)
    assert equal.item() == pytest.approx(math.log(2)) and peaked > equal


def test_endless_restarts_and_stops_on_empty():
    starts = []

    def make():
        starts.append(1)
        return iter([1, 2])

    gen = div._endless(make)
    assert [next(gen) for _ in range(5)] == [1, 2, 1, 2, 1] and len(starts) == 3
    assert list(div._endless(lambda: iter([]))) == []


def entropy(logits):
    p = logits.softmax(-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


def test_uniform_pass_moves_forget_predictions_towards_uniform(tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    model.train()
    with torch.no_grad():  # train-mode outputs: the quantity the pass optimises, unaffected by BN buffers
        before = model(next(ctx.batches(udata.forget, 64, shuffle=False))[0])
    loss = div.uniform_pass(model, ctx, udata.forget, 64, ctx.sgd(model, 5e-3, 0.9, 0.0))
    with torch.no_grad():
        after = model(next(ctx.batches(udata.forget, 64, shuffle=False))[0])
    assert loss == pytest.approx(div.uniform_kl_loss(before).item(), rel=1e-4)  # one batch: the loss before the step
    assert div.uniform_kl_loss(after) < div.uniform_kl_loss(before)
    assert entropy(after) > entropy(before)


def test_method_logs_kl_pass_then_each_epoch(tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    out = div.divergence(model, udata, params(epochs=2), ctx)
    assert [row["epoch"] for row in ctx.history] == [0, 1, 2]
    assert "kl_loss" in ctx.history[0]
    assert all("forget_loss" in row and "retain_loss" in row for row in ctx.history[1:])
    # one forget batch per epoch: cosine from 3e-4 over 2 steps
    assert [row["forget_lr"] for row in ctx.history[1:]] == pytest.approx([3e-4, 1e-6 + (3e-4 - 1e-6) / 2])
    assert not out.training
