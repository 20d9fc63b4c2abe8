"""Shared fixtures: tiny synthetic CIFAR-shaped data, a method's inputs on the CPU, and the example
third-party plugin (tests/fixtures/harness-example-plugin) made discoverable through its entry point, so
its `tiny-cnn` model serves every test where ResNet18's layers are not the point."""
from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cell import method_arguments
from harness.data import CLASSES, ImageData
from harness.profiles import Recipe
from harness.reference_models import ReferenceModels
from harness.testing import CPU, Bench, count_batches, synthetic_arrays, synthetic_data

warnings.filterwarnings("ignore", message=".*noload loader strategy.*")
REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO / "tests" / "fixtures" / "harness-example-plugin"


def _register_example_plugin() -> str:
    """A distribution record for the example plugin on sys.path (and PYTHONPATH, for subprocesses): the
    host finds it through `importlib.metadata` exactly as it finds an installed package."""
    site = tempfile.mkdtemp(prefix="harness-tests-site-")
    dist = Path(site) / "harness_example_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-example-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[unlearning_harness]\nexample = harness_example_plugin\n")
    sys.path[:0] = [site, str(PLUGIN_SOURCE)]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, str(PLUGIN_SOURCE), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    return site


TEST_SITE = _register_example_plugin()
# Only the built-ins and the example plugin load, in this process and its subprocesses, whatever else the
# environment has installed: a plugin installed for something else must not change what the tests see.
os.environ["HARNESS_LOAD_PLUGINS"] = "harness-example-plugin"
__all__ = ["CPU", "REPO", "synthetic_arrays", "synthetic_data", "method_inputs", "count_batches", "tiny_factory"]


def tiny_factory():
    """The example plugin's two-conv CNN for 10 classes."""
    from harness.host import default_host

    model = default_host().models.get("tiny-cnn")
    return model.fn(len(CLASSES), **model.resolve())


@pytest.fixture(scope="session")
def tiny_data() -> ImageData:
    return synthetic_data()


@pytest.fixture(scope="session")
def resnet_factory():
    from harness.host import default_host

    return lambda: default_host().models.get("resnet18").fn(len(CLASSES))


@pytest.fixture(scope="session")
def tiny_original(tiny_data, resnet_factory):
    """A ResNet18 trained two epochs on the tiny training set: the 'original' where ResNet18's layers matter."""
    refs = ReferenceModels(tiny_data, CPU, "resnet18", resnet_factory, Recipe(epochs=2, batch_size=32, augment=False),
                      cache=None, show_progress=False)
    return refs.train(torch.arange(tiny_data.n_train), seed=0).model


@pytest.fixture(scope="session")
def bench() -> Bench:
    """The conformance bench on the tiny CNN."""
    return Bench.build(tiny_factory)


@pytest.fixture(scope="session")
def npz_dir(tmp_path_factory) -> Path:
    """A synthetic CIFAR-10 copy on disk, large enough for the smoke profile."""
    path = tmp_path_factory.mktemp("data")
    np.savez(path / "cifar10.npz", **synthetic_arrays(500, 450))
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A small slice of the real CIFAR-10 copy in $HARNESS_DATA_DIR (integration tests only): its first
    1000 training images and every tenth test image (the test images are sorted by class), as the
    same `cifar10.npz` format, so each `unlearn` subprocess loads it in a moment. A `cifar10.npz` there is
    sliced as it is (the harness's loader would first fingerprint all 60k images); other formats go
    through the loader."""
    path = os.environ.get("HARNESS_DATA_DIR")
    if not path or not Path(path).exists():
        pytest.fail("integration tests need HARNESS_DATA_DIR pointing at a CIFAR-10 copy (see README)")
    out = tmp_path_factory.mktemp("cifar-slice")
    if (Path(path) / "cifar10.npz").is_file():
        with np.load(Path(path) / "cifar10.npz", allow_pickle=False) as npz:
            np.savez(out / "cifar10.npz", x_train=npz["x_train"][:1000], y_train=npz["y_train"][:1000],
                     x_test=npz["x_test"][::10], y_test=npz["y_test"][::10])
        return out
    from harness.data import load_cifar10

    data = load_cifar10(path)
    images = data.images.permute(0, 2, 3, 1).numpy()
    test = np.arange(data.n_train, len(data.labels), 10)
    np.savez(out / "cifar10.npz", x_train=images[:1000], y_train=data.labels[:1000].numpy(),
             x_test=images[test], y_test=data.labels[test].numpy())
    return out


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory):
    """`sqlite_store(path)` puts an empty MLflow SQLite store at `path` and returns its URI: a copy of one
    whose schema was migrated once for the session (MLflow's first use of a new database runs its alembic
    migrations, about a second each time). Tests of that first use (several processes creating one store
    at once) start from no file instead."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # migrates the schema and adds the Default experiment (its artifacts in the template's folder, unused)
    SqlAlchemyStore(f"sqlite:///{template}", (template.parent / "artifacts").as_uri()).engine.dispose()

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert not path.exists(), f"{path} exists already"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"

    return make


def method_inputs(data: ImageData, original, factory, seed: int = 0, on_epoch=None):
    """(model, UnlearningData, Context) as the harness hands them to a method, over fixed index sets of
    the tiny data: retain = train[24:], forget = train[:24], validation = the first 40 held-out images."""
    train, heldout = torch.arange(data.n_train), torch.arange(data.n_train, len(data.labels))
    return method_arguments(original, data, train[24:], train[:24], heldout[:40], seed, CPU, factory,
                            on_epoch=on_epoch, show_progress=False, epoch_eval_size=None)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server for the session (tests/postgres.py); skipped where PostgreSQL is
    missing, except with HARNESS_REQUIRE_POSTGRES=1 (CI), where that is a failure."""
    from .postgres import postgres_server, postgres_unavailable

    if reason := postgres_unavailable():
        if os.environ.get("HARNESS_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with postgres_server() as url:
        yield url
