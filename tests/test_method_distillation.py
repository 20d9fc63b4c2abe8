"""distillation: the layer reset, the per-sample teacher values aligned with shuffled batches, the losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.host import default_host
from harness_plugins.methods.distillation import kl_to_teacher, reset_first_and_last, soft_cross_entropy

from .conftest import method_inputs


def test_resets_exactly_conv1_and_fc(resnet_factory):
    net = resnet_factory()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reset_first_and_last(net)
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"conv1.weight", "fc.weight", "fc.bias"}
    bound = 1 / 512 ** 0.5  # PyTorch's default Linear init: U(-1/sqrt(in), 1/sqrt(in))
    assert net.fc.weight.abs().max() <= bound


def test_losses():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    T = 5.0
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    expected_kl = (p * (p.log() - q.log())).sum(1).mean()  # batchmean, no T^2 factor
    assert torch.allclose(kl_to_teacher(s, t, T), expected_kl, atol=1e-6)
    assert kl_to_teacher(t, t, T).abs() < 1e-6
    expected_ce = -(p * q.log()).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(s, t, T), expected_ce, atol=1e-6)


def test_method_resets_then_trains_and_logs_phases(tiny_data, tiny_original, resnet_factory):
    """With a tiny lr only the reset layers move far from the original; epochs run on across phases."""
    method = default_host().methods.get("distillation")
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    out = method.fn(model, udata, method.resolve({"warmup_epochs": 1, "epochs": 1, "lr": 1e-5, "warmup_lr": 1e-5}), ctx)
    assert (out.conv1.weight - tiny_original.conv1.weight).abs().max() > 1e-2
    assert (out.fc.weight - tiny_original.fc.weight).abs().max() > 1e-2
    assert (out.layer1[0].conv1.weight - tiny_original.layer1[0].conv1.weight).abs().max() < 1e-2
    assert [row["epoch"] for row in ctx.history] == [1, 2]
    assert "warmup_loss" in ctx.history[0] and "finetune_loss" in ctx.history[1]
