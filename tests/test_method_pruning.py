"""pruning: global L1 masks, re-initialisation of the pruned entries, step count, the fp16 cast."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from harness.host import default_host
from harness_plugins.methods.pruning import entropy, global_l1_masks, prunable, prune_and_reinit

from .conftest import count_batches, method_inputs


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, bias=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.Linear(64, 10))


def test_prunable_set_and_fan_ins():
    net = tiny_net()
    got = [(t.shape, fan_in) for t, fan_in in prunable(net)]
    assert got == [(net[0].weight.shape, 27), (net[3].weight.shape, 144), (net[6].weight.shape, 32),
                   (net[7].weight.shape, 64), (net[7].bias.shape, 64)]  # conv bias and inner Linear bias stay out


def test_masks_match_torch_global_l1_unstructured():
    net = tiny_net()
    tensors = [t for t, _ in prunable(net)]
    masks = global_l1_masks(tensors, 0.99)
    n = sum(t.numel() for t in tensors)
    assert sum(int(m.sum()) for m in masks) == round(0.99 * n)
    largest_pruned = max(t[m].abs().max() for t, m in zip(tensors, masks))
    assert largest_pruned <= min(t[~m].abs().min() for t, m in zip(tensors, masks) if (~m).any())
    reference = copy.deepcopy(net)  # torch's own implementation, on contiguous weights
    params = [(reference[0], "weight"), (reference[3], "weight"), (reference[6], "weight"),
              (reference[7], "weight"), (reference[7], "bias")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.99)
    for (module, name), mask in zip(params, masks):
        assert torch.equal(getattr(module, name + "_mask") == 0, mask)


@pytest.mark.parametrize("channels_last", [False, True])
def test_reinitialises_pruned_entries_and_keeps_the_rest(channels_last):
    net = tiny_net()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tensors, fan_ins = zip(*prunable(net))
    masks = global_l1_masks([t.clone() for t in tensors], 0.99)
    prune_and_reinit(net, 0.99)
    names = ["0.weight", "3.weight", "6.weight", "7.weight", "7.bias"]
    for t, fan_in, mask, name in zip(tensors, fan_ins, masks, names):
        old = before[name]
        assert torch.equal(t[~mask], old[~mask]), f"{name}: survivors changed"
        fresh = t[mask]
        assert (fresh != 0).all() and (fresh != old[mask]).all(), f"{name}: pruned entries not redrawn"
        assert fresh.abs().max() <= 1 / math.sqrt(fan_in), f"{name}: outside U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
    for name in ("0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "6.bias"):
        assert torch.equal(net.state_dict()[name], before[name]), f"{name} touched"


def test_redrawn_values_are_uniform_with_the_default_bound():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 200), nn.Linear(200, 10))
    prune_and_reinit(net, 0.99)
    w, bound = net[0].weight, 1 / math.sqrt(400)
    assert w.abs().max() <= bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.02 * bound
    assert abs(w.mean().item()) < 0.02 * bound


def test_entropy():
    assert torch.allclose(entropy(torch.zeros(2, 10)), torch.full((2,), math.log(10)))
    assert entropy(torch.tensor([[100.0, 0, 0]])).item() < 1e-6


def test_method_step_count_logging_and_fp16_cast(tiny_data, tiny_original, resnet_factory):
    """96 retain images at batch 64: 2 batches an epoch, so epochs=1.5 is int(3.0) = 3 steps over 2 epochs."""
    method = default_host().methods.get("pruning")
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    steps = count_batches(ctx)
    out = method.fn(model, udata, method.resolve({"epochs": 1.5}), ctx)
    assert steps["n"] == 3
    assert [row["epoch"] for row in ctx.history] == [1, 2]
    assert all("finetune_loss" in row for row in ctx.history)
    assert not out.training
    for name, v in out.state_dict().items():
        if v.dtype.is_floating_point:
            assert v.dtype == torch.float32 and torch.equal(v, v.half().float()), f"{name} not fp16-representable"
