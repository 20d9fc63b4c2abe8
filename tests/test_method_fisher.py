"""fisher (Fisher forgetting), pinned a second way: the expected Fisher written out per class on a
two-layer model, the source's variance rules (clamps, row means, the head and BatchNorm times 10), and
the method's change equal to that standard deviation times standard normal noise."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.host import default_host
from harness_plugins.methods import fisher

from .conftest import method_inputs, tiny_factory


class _NoAutocast:
    @staticmethod
    def autocast():
        import contextlib

        return contextlib.nullcontext()


def test_fisher_diagonal_is_the_probability_weighted_sum_of_squared_class_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    batches = [(torch.randn(5, 3), torch.zeros(5, dtype=torch.long)),
               (torch.randn(2, 3), torch.ones(2, dtype=torch.long))]
    got = fisher.fisher_diagonal(model, batches, 2, _NoAutocast())
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, _ in batches:  # the true labels play no part: every class is weighed by its mean probability
        for y in range(2):
            model.zero_grad()
            logits = model(x)
            F.cross_entropy(logits, torch.full((len(x),), y)).backward()
            weight = logits.softmax(-1)[:, y].mean().detach()
            for n, p in model.named_parameters():
                expected[n] += weight * p.grad ** 2
    for n in expected:
        assert torch.allclose(got[n], expected[n] / 2, atol=1e-7), n


def test_noise_std_follows_the_source_rules():
    conv = torch.zeros(3, 2)  # 2-d, not the head (3 rows, 10 classes): 1/F clamped at 1e3, then row means
    f = torch.tensor([[1.0, 0.5], [1e-9, 1e-9], [4.0, 4.0]])
    std = fisher.noise_std(conv, f, alpha=0.01, num_classes=10)
    rows = torch.tensor([0.01 * (1 + 2) / 2, 0.01 * 1e3, 0.01 * 0.25])
    assert torch.allclose(std, rows.sqrt().unsqueeze(1).expand(3, 2), rtol=1e-5)
    head = torch.zeros(10, 2)  # the head: clamp at 1e2, times 10
    assert torch.allclose(fisher.noise_std(head, torch.full((10, 2), 1e-9), 0.01, 10),
                          torch.full((10, 2), (0.01 * 1e2 * 10) ** 0.5), rtol=1e-5)
    norm = torch.zeros(4)  # a 1-d parameter (BatchNorm): no row mean, times 10
    assert torch.allclose(fisher.noise_std(norm, torch.full((4,), 2.0), 0.01, 10),
                          torch.full((4,), (0.01 * 0.5 * 10) ** 0.5), rtol=1e-5)


def test_the_method_adds_seeded_noise_of_that_scale(tiny_data, bench):
    method = default_host().methods.get("fisher")
    params = method.resolve({"alpha": 1e-4})
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    importance = fisher.fisher_diagonal(model, ctx.batches(data.retain, 32, shuffle=False), data.num_classes, ctx)
    generator = torch.Generator().manual_seed(ctx.generator.initial_seed())
    out = method.fn(model, data, params, ctx)
    for name, p in out.named_parameters():
        std = fisher.noise_std(before[name], importance[name], 1e-4, data.num_classes)
        noise = torch.randn(p.shape, generator=generator)  # the same draws, in the same order
        assert torch.allclose(p.detach() - before[name], std * noise, atol=1e-6), name
    again, data2, ctx2 = method_inputs(tiny_data, bench.original, tiny_factory, seed=1)
    changed = method.fn(again, data2, params, ctx2)
    assert any(not torch.equal(a, b) for a, b in zip(changed.parameters(), out.parameters()))  # another seed
    assert ctx.history[-1]["noise_std_max"] == pytest.approx(
        max(float(fisher.noise_std(before[n], importance[n], 1e-4, data.num_classes).max()) for n in before), rel=1e-5)
