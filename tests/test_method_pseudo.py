"""pseudo: the pseudo-label rule on hand-made probabilities, the phases, combine_with_rotate."""
from __future__ import annotations

import math

import pytest
import torch

import harness_plugins.methods.pseudo as pseudo_module
from harness.host import default_host
from harness_plugins.methods.pseudo import normalised_entropy, pseudo_labels

from .conftest import method_inputs

CONFIDENT = [0.01, 0.98, 0.01]  # predicts 1, normalised entropy about 0.10
UNSURE = [0.30, 0.40, 0.30]  # predicts 1, normalised entropy about 0.99
RIGHT_0 = [0.90, 0.05, 0.05]
RIGHT_2 = [0.05, 0.05, 0.90]


def test_normalised_entropy():
    assert torch.allclose(normalised_entropy(torch.full((1, 4), 0.25)), torch.ones(1))
    assert normalised_entropy(torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert normalised_entropy(torch.tensor([CONFIDENT])).item() == pytest.approx(
        -sum(p * math.log(p) for p in CONFIDENT) / math.log(3))


def test_pseudo_label_rule():
    labels = torch.tensor([0, 0, 0, 2, 2, 2])
    finetuned = torch.tensor([
        RIGHT_0,    # fine-tuned right, scratch confidently wrong -> scratch's 1
        RIGHT_0,    # fine-tuned right, scratch wrong but unsure  -> fine-tuned's 0
        RIGHT_0,    # both right                                  -> 0
        CONFIDENT,  # fine-tuned wrong (1), scratch confidently wrong -> fine-tuned's 1
        CONFIDENT,  # fine-tuned wrong (1), scratch right         -> fine-tuned's 1
        RIGHT_2,    # fine-tuned right, scratch confidently wrong -> scratch's 1
    ])
    scratch = torch.tensor([CONFIDENT, UNSURE, RIGHT_0, CONFIDENT, RIGHT_2, CONFIDENT])
    assert pseudo_labels(finetuned, scratch, labels, 0.5).tolist() == [1, 0, 0, 1, 1, 1]
    # a threshold above every entropy: any wrong scratch prediction counts; below every one: none does
    assert pseudo_labels(finetuned, scratch, labels, 1.0).tolist() == [1, 1, 0, 1, 1, 1]
    assert pseudo_labels(finetuned, scratch, labels, 0.05).tolist() == [0, 0, 0, 1, 1, 2]


@pytest.mark.parametrize("rotate", [False, True])
def test_phases_head_reset_and_rotate(rotate, tiny_data, tiny_original, resnet_factory, monkeypatch):
    """With a tiny final lr the result is the original (transposed with combine_with_rotate), but for the
    re-initialised head; epochs run on across the naive, scratch and final phases."""
    calls = []
    transpose = pseudo_module.transpose_conv_kernels
    monkeypatch.setattr(pseudo_module, "transpose_conv_kernels", lambda m: (calls.append(1), transpose(m)))
    method = default_host().methods.get("pseudo")
    model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
    out = method.fn(model, udata, method.resolve({"epochs": 1, "lr": 1e-5, "scratch_epochs": 1,
                                                  "combine_with_rotate": rotate}), ctx)
    assert len(calls) == int(rotate)
    w0, w = tiny_original.layer1[0].conv1.weight, out.layer1[0].conv1.weight
    expected = w0.swapaxes(2, 3) if rotate else w0
    assert (w - expected).abs().max() < 1e-2 < (out.fc.weight - tiny_original.fc.weight).abs().max()
    assert [row["epoch"] for row in ctx.history] == [1, 2, 3]
    assert "naive_loss" in ctx.history[0] and "scratch_loss" in ctx.history[1] and "pseudo_loss" in ctx.history[2]
    assert not out.training
