"""iu, pinned a second way on the example plugin's tiny CNN: the direction v from the summed per-image
gradients, the WoodFisher recursion written out for three images (and its one-vector form: k - v lies
along the first retain gradient), and the method's step equal to alpha times that product."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.host import default_host
from harness_plugins.methods import iu

from .conftest import method_inputs, tiny_factory


def per_image_gradients(model, data, ctx, indices):
    """One flat gradient per image, each from its own forward pass, by autograd here."""
    model.eval()
    out = []
    for i in indices.tolist():
        x, y = next(iter(ctx.batches(torch.tensor([i]), 1, shuffle=False)))
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(F.cross_entropy(model(x).float(), y), params)
        out.append(torch.cat([g.reshape(-1) for g in grads]))
    return out


def test_direction_is_the_scaled_difference_of_summed_gradients():
    g_f, g_r = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 30.0])
    v = iu.step_direction(g_f, 2, g_r, 8)  # 4 / 10 ; - 30 * 2 / (10 * 8)
    assert torch.allclose(v, torch.tensor([0.4, -0.75]))


def test_summed_gradient_is_the_sum_of_the_per_image_ones(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    model.eval()
    indices = data.forget[:6]
    total, n = iu.summed_gradient(model, ctx.batches(indices, 4, shuffle=False), ctx)  # batches of 4 and 2
    assert n == 6
    assert torch.allclose(total, torch.stack(per_image_gradients(model, data, ctx, indices)).sum(0), atol=1e-5)


def test_woodfisher_recursion_written_out_for_three_images(tiny_data, bench):
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    model.eval()
    first = data.retain[:3]
    g0, g1, g2 = per_image_gradients(model, data, ctx, first)
    v, n = torch.randn(g0.shape, generator=torch.Generator().manual_seed(0)), 1000
    k = iu.woodfisher(model, ctx.batches(first, 1, shuffle=False), v, n, ctx)
    d1 = n + g0 @ g1
    k1, o1 = v - (v @ g1) / d1 * g0, g0 - (g0 @ g1) / d1 * g0
    expected = k1 - (k1 @ g2) / (n + o1 @ g2) * o1
    assert torch.allclose(k, expected, rtol=1e-4, atol=1e-6)
    change = k - v  # the recursion only rescales o: every change is along the first gradient
    cosine = (change @ g0) / (change.norm() * g0.norm())
    assert abs(float(cosine)) == pytest.approx(1.0, abs=1e-4)


def test_the_method_moves_the_weights_by_alpha_times_the_product(tiny_data, bench):
    method = default_host().methods.get("iu")
    params = method.resolve({"alpha": 0.5, "samples": 8})
    model, data, ctx = method_inputs(tiny_data, bench.original, tiny_factory)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    model.eval()
    f_sum, n_f = iu.summed_gradient(model, ctx.batches(data.forget, 256, shuffle=False), ctx)
    r_sum, n_r = iu.summed_gradient(model, ctx.batches(data.retain, 256, shuffle=False), ctx)
    k = iu.woodfisher(model, ctx.batches(data.retain[:10], 1, shuffle=False),
                      iu.step_direction(f_sum, n_f, r_sum, n_r), 8, ctx)
    out = method.fn(model, data, params, ctx)
    after = torch.cat([p.detach().reshape(-1) for p in out.parameters()])
    assert torch.allclose(after - before, 0.5 * k, atol=1e-6)
    assert float((after - before).abs().max()) > 0
    assert ctx.history[-1]["step_norm"] == pytest.approx(float(0.5 * k.norm()), rel=1e-5)
