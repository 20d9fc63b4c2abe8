"""harness.isolation on its own: which global settings a guard sees and puts back, and what a Pristine
copy finds and undoes."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from harness import Outputs
from harness.isolation import GlobalState, Pristine, guarded

CHANGES = [
    (lambda: torch.set_grad_enabled(False), "grad enabled False (was True)"),
    (lambda: torch.set_default_dtype(torch.float64), "default dtype torch.float64 (was torch.float32)"),
    (lambda: torch.set_num_threads(1 if torch.get_num_threads() > 1 else 2), "num threads"),
    (lambda: torch.use_deterministic_algorithms(True), "deterministic True (was False)"),
    (lambda: torch.set_anomaly_enabled(True), "anomaly True (was False)"),
    (lambda: setattr(torch.backends.cudnn, "benchmark", not torch.backends.cudnn.benchmark), "cudnn benchmark"),
    (lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", not torch.backends.cuda.matmul.allow_tf32),
     "matmul allow tf32"),
    (lambda: torch.set_float32_matmul_precision("medium"), "float32 matmul precision medium (was highest)"),
    (lambda: torch.set_default_device("meta"), "default device meta (was cpu)"),
]


@pytest.mark.parametrize("change, phrase", CHANGES, ids=[p for _, p in CHANGES])
def test_a_guard_names_each_global_change_and_puts_it_back(change, phrase):
    before = GlobalState.capture()
    with guarded() as guard:
        change()
    assert any(c.startswith(phrase) for c in guard.changes), guard.changes  # (TF32 and matmul precision go together)
    assert GlobalState.capture() == before
    assert torch.empty(1).device.type == "cpu" and torch.empty(1).dtype == torch.float32


def test_random_draws_are_not_a_change_but_every_rng_is_put_back():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    with guarded() as guard:
        torch.rand(10), np.random.rand(10), random.random()
    assert guard.changes == []
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(again[0], expected[0]) and np.array_equal(again[1], expected[1]) and again[2] == expected[2]


def test_a_guard_restores_even_when_the_plugin_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with guarded() as guard:
            torch.set_grad_enabled(False)
            raise RuntimeError("boom")
    assert torch.is_grad_enabled() and guard.changes == ["grad enabled False (was True)"]


def outputs() -> Outputs:
    return Outputs({"forget": torch.tensor([[1.0, float("nan")], [2.0, 3.0]])}, {"forget": torch.tensor([0, 1])},
                   {"forget": torch.tensor([5, 6])}, {"forget": torch.ones(2, 4, dtype=torch.float16)})


def test_pristine_finds_and_undoes_in_place_edits_replaced_entries_and_nothing_else():
    out = outputs()
    logits, labels = out.logits["forget"], out.labels["forget"]
    copy = Pristine(target=out, reruns=(out,))
    assert copy.restore() == []  # NaN equals NaN: reading is not a change
    out.logits["forget"].zero_()
    out.labels["forget"] = torch.tensor([9, 9])
    out.features["forget"][0, 0] = 7
    changed = copy.restore()
    assert "target.logits['forget']" in changed and "target.labels['forget']" in changed
    assert "target.features['forget']" in changed
    assert out.logits["forget"] is logits and out.labels["forget"] is labels  # the same tensors, as they were
    assert torch.equal(out.logits["forget"].nan_to_num(), torch.tensor([[1.0, 0.0], [2.0, 3.0]]))
    assert torch.equal(labels, torch.tensor([0, 1])) and float(out.features["forget"][0, 0]) == 1.0
    assert copy.restore() == []


def test_pristine_undoes_a_resize_and_follows_objects_added_later():
    out, late = outputs(), outputs()
    copy = Pristine(target=out)
    copy.add(random=late)
    late.indices["forget"].resize_(1)
    assert copy.restore() == ["random.indices['forget']"] and late.indices["forget"].tolist() == [5, 6]
