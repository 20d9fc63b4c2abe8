"""Shared fixtures: tiny synthetic CIFAR-shaped data, a method's inputs on the CPU, and the example
third-party plugin (tests/fixtures/harness-example-plugin) made discoverable through its entry point, so
its `tiny-cnn` model serves every test where ResNet18's layers are not the point."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from .support import REPO, method_inputs, tiny_factory, worker_threads

warnings.filterwarnings("ignore", message=".*noload loader strategy.*")
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


def _memory_temproot() -> None:
    """The run's temporary folders (tmp_path and once_per_run) in memory (/dev/shm, a tmpfs) where there is
    one, unless PYTEST_DEBUG_TEMPROOT or --basetemp says otherwise: every MLflow SQLite write and every
    journal commit fsyncs, 4 ms each on this machine's disk, nothing on a tmpfs (a smoke run makes hundreds).
    Set here, at import, so the pytest-xdist controller, its workers and their subprocesses agree."""
    shm = Path("/dev/shm")
    if "PYTEST_DEBUG_TEMPROOT" not in os.environ and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        free = os.statvfs(shm)
        if free.f_bavail * free.f_frsize >= SHM_NEEDED:  # a container's default /dev/shm is 64 MiB
            os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


def _shared_bytecode() -> None:
    """Where PYTHONDONTWRITEBYTECODE is set (as on these machines), every `unlearn` subprocess compiles the
    harness, MLflow and Optuna again: a bytecode folder of the run's own (PYTHONPYCACHEPREFIX, outside the
    checkout and the venv) lets the first process write it and the others read it. Python checks each
    file's source against its bytecode, so nothing stale is used."""
    global _PYCACHE
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and "PYTHONPYCACHEPREFIX" not in os.environ:
        del os.environ["PYTHONDONTWRITEBYTECODE"]
        _PYCACHE = os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="harness-pycache-")


_PYCACHE: str | None = None  # made by this process (the run's first), removed by it at the end


SHM_NEEDED = 4 << 30  # bytes: pytest keeps its last three runs' folders, a few hundred MB each
_memory_temproot()
_shared_bytecode()
# Only the built-ins and the example plugin load, in this process and its subprocesses, whatever else the
# environment has installed: a plugin installed for something else must not change what the tests see.
os.environ["HARNESS_LOAD_PLUGINS"] = "harness-example-plugin"
# Helpers live in tests/support.py; these names are re-exported for modules that import them from here
# (those of harness.testing when first asked for: the pytest-xdist controller loads this file too, and
# needs neither torch nor the harness).
__all__ = ["CPU", "REPO", "synthetic_arrays", "synthetic_data", "method_inputs", "count_batches",  # noqa: F822
           "tiny_factory"]
_FROM_HARNESS_TESTING = {"CPU", "synthetic_arrays", "synthetic_data", "count_batches"}


def __getattr__(name: str):
    if name in _FROM_HARNESS_TESTING:
        return getattr(importlib.import_module("harness.testing"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The suite runs on pytest-xdist workers, one per core (at most MAX_WORKERS), unless the command line says
# otherwise (-n N, --dist MODE; -n 0 or -p no:xdist for one process). The workers share the cores: each
# worker, and every process it starts, gets its share of torch (OpenMP) threads; two workers of 2 threads
# each on 2 cores took twice the time of one.
MAX_WORKERS = 4
THREADS = worker_threads()
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads -n
def pytest_cmdline_main(config):
    """Without -n: one worker per core (none on a single core), and the tests handed out one at a time in
    the order pytest_collection_modifyitems leaves them, a group of tests as one (see _Scheduling)."""
    if not config.pluginmanager.hasplugin("xdist") or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if config.option.numprocesses is not None or config.option.collectonly or config.option.usepdb:
        return
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    config.option.numprocesses = workers if workers > 1 else 0
    if workers > 1 and config.option.dist == "no":
        config.option.dist = "loadscope"  # a distributed mode; the scheduler is ours
        config.option.loadscopereorder = False
        config.harness_groups = Path(tempfile.mkdtemp(prefix="harness-xdist-")) / "groups.json"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Where the workers write the groups they collected (they parse the command line again)."""
    if path := getattr(node.config, "harness_groups", None):
        node.workerinput["harness_groups"] = str(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if path := getattr(config, "harness_groups", None):
        return _scheduling(config, log, path)
    return None


def _scheduling(config, log, path: Path):
    """pytest-xdist's loadscope scheduler with a unit of work per test, except the tests of one group (the
    module of tests that share a module-scoped fixture, or an explicit xdist_group), which go to one
    worker together: so a module fixture (the MLflow server and browser of the UI tests) is set up once.
    Units are handed out in collection order as workers free up. (pytest-xdist's own `loadgroup` cannot
    be used: it renames test ids, which pytest 9 no longer allows.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        groups: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # written by the workers while they collected, before any scheduling
                self.groups = json.loads(path.read_text()) if path.exists() else {}
            return self.groups.get(nodeid, nodeid)

    return Scheduling(config, log)


def pytest_unconfigure(config):
    if path := getattr(config, "harness_groups", None):
        shutil.rmtree(path.parent, ignore_errors=True)
    if _PYCACHE:
        shutil.rmtree(_PYCACHE, ignore_errors=True)


SLOW_FIXTURES = {"data_dir", "postgres_url"}  # the CIFAR-10 slice, the PostgreSQL server
SHARED_SCOPES = ("module", "class", "package")


def _group(item) -> str | None:
    """The group a test runs in (on one pytest-xdist worker): its xdist_group, else its module when it uses
    a module-scoped (or class- or package-scoped) fixture; None: a unit of its own."""
    if mark := item.get_closest_marker("xdist_group"):
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    defs = item._fixtureinfo.name2fixturedefs.values()
    return item.nodeid.split("::")[0] if any(d and d[-1].scope in SHARED_SCOPES for d in defs) else None


def _rank(item) -> int:
    """Where a test goes in the run: the ones with processes, servers or the CIFAR-10 slice first, then the
    other slow ones, then groups, then the rest (short unit tests fill the gaps at the end)."""
    if SLOW_FIXTURES & set(item.fixturenames) or item.get_closest_marker("integration") \
            or item.get_closest_marker("browser"):
        return 0
    if item.get_closest_marker("slow"):
        return 1
    return 2 if _group(item) else 3


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(config, items):
    """Markers by what a test uses, whichever file it is in: `integration` on every test of the CIFAR-10
    slice; `slow` on every integration and browser test and every test of the PostgreSQL server (besides
    those marked by hand: a subprocess or a server of their own), so that `-m "not slow"` is the unit
    tests. Then the slow tests first: pytest-xdist hands tests out in this order, so the long ones start
    early and the short ones fill in at the end; a worker writes down the groups for the scheduler."""
    for item in items:
        if "data_dir" in item.fixturenames:
            item.add_marker(pytest.mark.integration)
        if _rank(item) == 0:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_rank)
    if target := getattr(config, "workerinput", {}).get("harness_groups"):
        groups = {item.nodeid: group for item in items if (group := _group(item))}
        scratch = Path(f"{target}.{os.environ.get('PYTEST_XDIST_WORKER')}")
        scratch.write_text(json.dumps(groups))
        os.replace(scratch, target)  # every worker writes the same; the scheduler reads it whole


def once_per_run(tmp_path_factory, name: str, make) -> Path:
    """Folder `name`, filled by `make(folder)` once per test run and then only read: by this process
    without pytest-xdist; with it, by the first worker that asks (under a file lock, in the run's temporary
    root that the workers share), the others wait for it and use the same folder."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # <run>/popen-gwN -> <run>
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_data():
    from harness.testing import synthetic_data

    return synthetic_data()


@pytest.fixture(scope="session")
def resnet_factory():
    from harness.data import CLASSES
    from harness.host import default_host

    return lambda: default_host().models.get("resnet18").fn(len(CLASSES))


@pytest.fixture(scope="session")
def tiny_original(tiny_data, resnet_factory):
    """A ResNet18 trained two epochs on the tiny training set: the 'original' where ResNet18's layers matter."""
    import torch

    from harness.profiles import Recipe
    from harness.reference_models import ReferenceModels
    from harness.testing import CPU

    refs = ReferenceModels(tiny_data, CPU, "resnet18", resnet_factory, Recipe(epochs=2, batch_size=32, augment=False),
                      cache=None, show_progress=False)
    return refs.train(torch.arange(tiny_data.n_train), seed=0).model


@pytest.fixture(scope="session")
def bench():
    """The conformance bench on the tiny CNN."""
    from harness.testing import Bench

    return Bench.build(tiny_factory)


@pytest.fixture(scope="session")
def npz_dir(tmp_path_factory) -> Path:
    """A synthetic CIFAR-10 copy on disk, large enough for the smoke profile."""
    import numpy as np

    from harness.testing import synthetic_arrays

    path = tmp_path_factory.mktemp("data")
    np.savez(path / "cifar10.npz", **synthetic_arrays(500, 450))
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A small slice of the real CIFAR-10 copy in $HARNESS_DATA_DIR (integration tests only): its first
    1000 training images and every tenth test image (the test images are sorted by class), as the
    same `cifar10.npz` format, so each `unlearn` subprocess loads it in a moment. A `cifar10.npz` there is
    sliced as it is (the harness's loader would first fingerprint all 60k images); other formats go
    through the loader. Made once per run (read-only: nothing writes into a data folder)."""
    path = os.environ.get("HARNESS_DATA_DIR")
    if not path or not Path(path).exists():
        pytest.fail("integration tests need HARNESS_DATA_DIR pointing at a CIFAR-10 copy (see README)")
    return once_per_run(tmp_path_factory, "cifar-slice", lambda out: _slice_cifar10(Path(path), out))


def _slice_cifar10(path: Path, out: Path) -> None:
    import numpy as np

    if (path / "cifar10.npz").is_file():
        with np.load(path / "cifar10.npz", allow_pickle=False) as npz:
            np.savez(out / "cifar10.npz", x_train=npz["x_train"][:1000], y_train=npz["y_train"][:1000],
                     x_test=npz["x_test"][::10], y_test=npz["y_test"][::10])
        return
    from harness.data import load_cifar10

    data = load_cifar10(str(path))
    images = data.images.permute(0, 2, 3, 1).numpy()
    test = np.arange(data.n_train, len(data.labels), 10)
    np.savez(out / "cifar10.npz", x_train=images[:1000], y_train=data.labels[:1000].numpy(),
             x_test=images[test], y_test=data.labels[test].numpy())


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory):
    """`sqlite_store(path)` puts an empty MLflow SQLite store at `path` and returns its URI: a copy of one
    whose schema was migrated once for the run (MLflow's first use of a new database runs its alembic
    migrations, about a second each time). Tests of that first use (several processes creating one store
    at once) start from no file instead."""
    def migrate(folder: Path) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # the schema and the Default experiment (its artifacts in the template's folder, unused)
        SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()).engine.dispose()

    template = once_per_run(tmp_path_factory, "mlflow-template", migrate) / "mlflow.db"

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert not path.exists(), f"{path} exists already"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"

    return make


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
