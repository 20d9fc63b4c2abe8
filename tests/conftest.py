"""Shared fixtures: tiny synthetic CIFAR-shaped data and a method context on the CPU."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import engine
from harness.context import Context, UnlearningData
from harness.data import CLASSES, ImageData
from harness.host import default_host
from harness.profiles import Recipe
from harness.scratch import ScratchTrainer

warnings.filterwarnings("ignore", message=".*noload loader strategy.*")
REPO = Path(__file__).resolve().parents[1]
CPU = engine.Compute(torch.device("cpu"), precision="fp32", channels_last=False)


def synthetic_arrays(n_train: int = 120, n_test: int = 80, seed: int = 0) -> dict:
    """CIFAR-shaped uint8 images whose mean colour depends on the class, so a model can learn something."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % len(CLASSES)
        rng.shuffle(y)
        base = (y[:, None, None, None] * 23 % 256).astype(np.int16)
        x = np.clip(base + rng.integers(-40, 40, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
        out[f"x_{part}"], out[f"y_{part}"] = x, y.astype(np.int64)
    return out


def synthetic_data(n_train: int = 120, n_test: int = 80, seed: int = 0) -> ImageData:
    from harness.data import _to_image_data

    return _to_image_data(synthetic_arrays(n_train, n_test, seed), f"synthetic-{seed}")


@pytest.fixture(scope="session")
def tiny_data() -> ImageData:
    return synthetic_data()


@pytest.fixture(scope="session")
def resnet_factory():
    return lambda: default_host().models.get("resnet18").fn(len(CLASSES))


@pytest.fixture(scope="session")
def tiny_original(tiny_data, resnet_factory):
    """A ResNet18 trained two epochs on the tiny training set: the 'original' for method tests."""
    trainer = ScratchTrainer(tiny_data, CPU, "resnet18", resnet_factory, Recipe(epochs=2, batch_size=32, augment=False),
                             cache=None, show_progress=False)
    model, _ = trainer.get(torch.arange(tiny_data.n_train), seed=0)
    return model


def make_context(data: ImageData, original, factory, seed: int = 0, n_forget: int = 24, n_val: int = 40):
    """(UnlearningData, Context) on the CPU over fixed index sets of the tiny data."""
    train = torch.arange(data.n_train)
    heldout = torch.arange(data.n_train, len(data.labels))
    frozen = original.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    udata = UnlearningData(data, retain=train[n_forget:], forget=train[:n_forget], validation=heldout[:n_val],
                           original=frozen)
    trainer = ScratchTrainer(data, CPU, "resnet18", factory, Recipe(epochs=1, batch_size=32, augment=False),
                             cache=None, show_progress=False)
    ctx = Context(udata, CPU, seed, factory, show_progress=False, epoch_eval_size=None, scratch=trainer.get)
    return udata, ctx


@pytest.fixture
def data_dir() -> Path:
    """The real CIFAR-10 copy (integration tests only)."""
    path = os.environ.get("HARNESS_DATA_DIR")
    if not path or not Path(path).exists():
        pytest.fail("integration tests need HARNESS_DATA_DIR pointing at a CIFAR-10 copy (see README)")
    return Path(path)


def method_inputs(data: ImageData, original, factory, seed: int = 0):
    """(model, UnlearningData, Context) as the runner hands them to a method: a trainable copy of the
    original, a frozen copy as data.original, and torch's global RNG seeded."""
    import copy

    udata, ctx = make_context(data, copy.deepcopy(original), factory, seed=seed)
    model = copy.deepcopy(original)
    for p in model.parameters():
        p.requires_grad_(True)
    torch.manual_seed(seed)
    return model, udata, ctx


def count_batches(ctx) -> dict:
    """Make `ctx.batches` count the batches it yields; returns the counter ({"n": ...})."""
    counter = {"n": 0}
    batches = ctx.batches

    def counting(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            counter["n"] += 1
            yield batch

    ctx.batches = counting
    return counter
