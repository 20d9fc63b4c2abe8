"""deviation: which layers get noise, how much, and when the second noise comes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.host import default_host
from harness_plugins.methods import deviation as dev

from .conftest import method_inputs


def params(**overrides):
    return {**default_host().methods.get("deviation").defaults, **overrides}


def changed_params(before: nn.Module, after: nn.Module) -> set[str]:
    b = dict(before.named_parameters())
    return {k for k, v in after.named_parameters() if not torch.equal(v, b[k])}


def test_select_convs_on_resnet18(resnet_factory):
    model = resnet_factory()
    assert dev.select_convs(model, "conv1") == [model.conv1]
    convs = dev.select_convs(model, "all")
    assert len(convs) == 20  # 17 in the blocks and stem + 3 downsample convs
    assert any(c is model.layer2[0].downsample[0] for c in convs)
    with pytest.raises(ValueError):
        dev.select_convs(model, "none")


@pytest.mark.parametrize("sigma", [0.6, 0.005])
def test_noise_has_the_right_std(sigma):
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 256, 3, bias=False)  # 589,824 weights
    before = conv.weight.detach().clone()
    dev.perturb([conv], sigma)
    noise = conv.weight.detach() - before
    assert abs(noise.std().item() - sigma) < 0.01 * sigma
    assert abs(noise.mean().item()) < 0.01 * sigma


@pytest.mark.parametrize("layers", ["conv1", "all"])
def test_perturb_touches_only_the_chosen_layers(layers, resnet_factory):
    torch.manual_seed(0)
    model = resnet_factory()
    before = copy.deepcopy(model)
    dev.perturb(dev.select_convs(model, layers), 0.6)
    expected = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if layers == "conv1":
        expected = {"conv1.weight"}
    assert changed_params(before, model) == expected
    for k, v in model.state_dict().items():  # BatchNorm buffers too
        if k not in expected:
            assert torch.equal(v, before.state_dict()[k]), k


@pytest.mark.parametrize("layers", ["conv1", "all"])
def test_method_changes_only_chosen_layers_when_lr_is_zero(layers, tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    before = copy.deepcopy(model)
    out = dev.deviation(model, udata, params(epochs=1, lr=0.0, layers=layers), ctx)
    convs = {f"{name}.weight" for name, m in before.named_modules() if isinstance(m, nn.Conv2d)}
    assert changed_params(before, out) == ({"conv1.weight"} if layers == "conv1" else convs)
    total = (out.conv1.weight - before.conv1.weight).std().item()
    assert total == pytest.approx((0.6 ** 2 + 0.005 ** 2) ** 0.5, rel=0.05)  # 9,408 weights in conv1


def test_second_noise_comes_before_the_last_epoch(monkeypatch, tiny_data, tiny_original, resnet_factory):
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    calls = []
    real = dev.perturb
    monkeypatch.setattr(dev, "perturb", lambda convs, sigma: (calls.append((sigma, len(ctx.history))),
                                                              real(convs, sigma)))
    out = dev.deviation(model, udata, params(epochs=2, sigma=0.3, final_sigma=0.01), ctx)
    assert calls == [(0.3, 0), (0.01, 1)]  # (sigma, epochs finished when it was applied)
    assert [row["epoch"] for row in ctx.history] == [1, 2]
    assert all("train_loss" in row for row in ctx.history)
    lr = params()["lr"]
    assert [row["lr"] for row in ctx.history] == pytest.approx([lr, lr / 2])  # cosine over 2 epochs
    assert not out.training
