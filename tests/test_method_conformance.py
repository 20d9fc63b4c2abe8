"""One conformance suite, parametrised over every registered method (the timm pattern).

Any method a plugin registers, built-in or third-party, must pass it on tiny synthetic data."""
from __future__ import annotations


import pytest
import torch

from harness import ParamError
from harness.host import default_host
from harness.params import Choice, Float, Int

from .conftest import count_batches, method_inputs

METHODS = default_host().methods.names()
# The smallest value each method accepts for its main training phase keeps the suite fast.
FAST = {"epochs": 1}


def fast_params(method, **extra):
    overrides = {k: max(v, method.space[k].low) for k, v in FAST.items()
                 if k in method.space and isinstance(method.space[k], (Int, Float))}
    return method.resolve({**overrides, **extra})


def run_method(name, data, original, factory, seed=0, **params):
    method = default_host().methods.get(name)
    model, udata, ctx = method_inputs(data, original, factory, seed=seed)
    out = method.fn(model, udata, fast_params(method, **params), ctx)
    return out, udata, ctx


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_builtin_method_is_registered():
    expected = {"retrain", "simple", "distillation", "rotate", "pseudo", "pruning", "deviation", "gradient", "divergence"}
    assert expected <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_contract(name, tiny_data, tiny_original, resnet_factory):
    original_state = state(tiny_original)
    images_before = tiny_data.images.clone()
    out, udata, _ = run_method(name, tiny_data, tiny_original, resnet_factory)
    index_sets = {k: getattr(udata, k).clone() for k in ("retain", "forget", "validation")}

    assert isinstance(out, torch.nn.Module)
    assert type(out) is type(tiny_original), "same architecture"
    assert {k: v.shape for k, v in out.state_dict().items()} == {k: v.shape for k, v in tiny_original.state_dict().items()}
    assert not out.training, "returned in eval mode"
    changed = [k for k, v in out.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, original_state[k])]
    assert changed, "the method changed no weight"
    # the original model and the data are untouched
    for k, v in tiny_original.state_dict().items():
        assert torch.equal(v, original_state[k]), f"original model modified: {k}"
    assert torch.equal(tiny_data.images, images_before)
    for k, v in index_sets.items():
        assert torch.equal(getattr(udata, k), v)


@pytest.mark.parametrize("name", METHODS)
def test_repeatable_under_seed(name, tiny_data, tiny_original, resnet_factory):
    a, _, _ = run_method(name, tiny_data, tiny_original, resnet_factory, seed=3)
    b, _, _ = run_method(name, tiny_data, tiny_original, resnet_factory, seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), f"{name}: {k} differs between two runs with the same seed"


@pytest.mark.parametrize("name", METHODS)
def test_honours_epochs(name, tiny_data, tiny_original, resnet_factory):
    method = default_host().methods.get(name)
    assert "epochs" in method.space, "every method exposes `epochs` (the paper compares 5, 9 and 20)"
    low = max(method.space["epochs"].low, 1)
    counts = []
    for epochs in (low, low + 1):
        model, udata, ctx = method_inputs(tiny_data, tiny_original, resnet_factory)
        calls = count_batches(ctx)
        # from-scratch training (retrain) goes through the trainer, not ctx.batches: count its epochs instead
        scratch = ctx._scratch

        def counting_scratch(indices, seed, epochs=None, **kw):
            calls["n"] += epochs or 1
            return scratch(indices, seed, epochs=epochs, **kw)

        ctx._scratch = counting_scratch
        method.fn(model, udata, method.resolve({"epochs": epochs}), ctx)
        counts.append(calls["n"])
    assert counts[1] > counts[0], f"{name}: epochs={low + 1} did no more work than epochs={low}"


@pytest.mark.parametrize("name", METHODS)
def test_defaults_validate_against_search_space(name):
    method = default_host().methods.get(name)
    assert method.resolve() == method.defaults
    for pname, param in method.space.items():
        assert isinstance(param, (Int, Float, Choice))
        assert param.contains(param.default), f"{name}.{pname} default outside its own range"


@pytest.mark.parametrize("name", METHODS)
def test_bad_parameters_are_named(name):
    method = default_host().methods.get(name)
    with pytest.raises(ParamError, match="no_such_param"):
        method.resolve({"no_such_param": 1})
    numeric = [(k, p) for k, p in method.space.items() if isinstance(p, (Int, Float))]
    assert numeric, f"{name} has no numeric parameter"
    pname, param = numeric[0]
    with pytest.raises(ParamError, match=rf"{pname}.*out of range.*{param.low:g}"):
        method.resolve({pname: param.high + 1000})
