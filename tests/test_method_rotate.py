"""rotate: the kernel transpose, and that the method fine-tunes the transposed model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.host import default_host
from harness_plugins.methods.rotate import transpose_conv_kernels

from .conftest import method_inputs


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))


@pytest.mark.parametrize("channels_last", [False, True])
def test_transposes_every_conv_kernel_and_nothing_else(channels_last):
    net = tiny_net()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    transpose_conv_kernels(net)
    after = net.state_dict()
    for name in ("0.weight", "3.weight"):
        assert torch.equal(after[name], before[name].swapaxes(2, 3))
        assert not torch.equal(after[name], before[name])
    for name in before:
        if name not in ("0.weight", "3.weight"):
            assert torch.equal(after[name], before[name]), name


def test_transpose_twice_is_identity_on_resnet(resnet_factory):
    net = resnet_factory()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    transpose_conv_kernels(net)
    convs = {f"{n}.weight" for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 20  # 17 3x3/7x7 convs + 3 downsample 1x1 convs
    for name, v in net.state_dict().items():
        expected = before[name].swapaxes(2, 3) if name in convs else before[name]
        assert torch.equal(v, expected), name
    transpose_conv_kernels(net)
    for name, v in net.state_dict().items():
        assert torch.equal(v, before[name]), name


def test_non_square_kernels_are_refused():
    with pytest.raises(ValueError, match="non-square"):
        transpose_conv_kernels(nn.Conv2d(3, 4, (3, 1)))


def test_method_fine_tunes_the_transposed_model(tiny_data, tiny_original, resnet_factory):
    """With a tiny lr the result stays next to the transposed original; epochs are logged 1..E."""
    method = default_host().methods.get("rotate")
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    out = method.fn(model, udata, method.resolve({"epochs": 2, "lr": 1e-5}), ctx)
    w0, w = tiny_original.layer1[0].conv1.weight, out.layer1[0].conv1.weight
    assert not out.training
    assert (w - w0.swapaxes(2, 3)).abs().max() < 1e-2 < (w - w0).abs().max()
    assert [row["epoch"] for row in ctx.history] == [1, 2]
    assert all("finetune_loss" in row for row in ctx.history)
