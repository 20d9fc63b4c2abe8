"""The reference service: cached models under a lock, retrain cost timed in-process, shared data guarded."""
import threading

import pytest
import torch

from harness.cache import ModelCache
from harness.host import default_host
from harness.profiles import PROFILES, Recipe
from harness.reference_models import ORIGINAL_SEED, ReferenceModels
from harness.splits import make_split

from .conftest import CPU, synthetic_data, tiny_factory

RECIPE = Recipe(epochs=2, batch_size=32, augment=False)


def service(data, cache=None, recipe=RECIPE, **kw):
    return ReferenceModels(data, CPU, "tiny-cnn", tiny_factory, recipe, cache, show_progress=False, **kw)


def split_of(data, seed=0):
    return make_split(data, PROFILES["smoke"], default_host().scenarios.get("random"), seed)


def test_split_references_train_once_and_share_the_original():
    data = synthetic_data(500, 450)
    refs = service(data)
    a, b = refs.for_split(split_of(data, 0)), refs.for_split(split_of(data, 1))
    assert a.original is b.original and a.original.meta["seed"] == ORIGINAL_SEED  # one original for all seeds
    assert a.retrain is not b.retrain and a.retrain.meta["seed"] == 0 and b.retrain.meta["seed"] == 1
    assert refs.for_split(split_of(data, 0)) is a
    assert not any(p.requires_grad for p in a.original.model.parameters()) and not a.original.model.training
    assert a.original_out.logits["forget"].shape == (len(a.split.forget), 10)


def test_retrain_seconds_scale_with_the_recipe_and_leave_the_rng_alone():
    data = synthetic_data(500, 450)
    split = split_of(data)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    short = service(data, recipe=Recipe(epochs=1, batch_size=32), calibration_steps=4, warmup_steps=1)
    long = service(data, recipe=Recipe(epochs=100, batch_size=32), calibration_steps=4, warmup_steps=1)
    estimates = [short.retrain_seconds(split), long.retrain_seconds(split)]
    assert torch.equal(torch.rand(3), expected), "calibration must not consume the caller's random numbers"
    assert 0 < estimates[0] < estimates[1]
    assert 20 < estimates[1] / estimates[0] < 500  # 100x the steps; timing noise allowed


def test_restore_data_undoes_in_place_writes():
    data = synthetic_data(60, 20)
    refs = service(data)
    assert refs.restore_data() is False
    before = data.images.clone()
    data.images[:5].zero_()
    data.labels[0] = (data.labels[0] + 1) % 10
    assert refs.restore_data() is True
    assert torch.equal(data.images, before) and refs.restore_data() is False


def test_two_workers_asking_for_one_model_train_it_once(tmp_path):
    """Two ReferenceModels (as two processes would have) on one cache folder, asking at the same moment: the
    lock (an flock per key, which separate open files contend for even within one process) makes one
    train and the other wait and load. Threads keep the test fast; processes take the same path."""
    data = synthetic_data(1000, 20)
    barrier, results = threading.Barrier(2), []

    def worker():
        refs = service(data, ModelCache(tmp_path / "models"), recipe=Recipe(epochs=3, batch_size=64))
        barrier.wait()
        trained = refs.train(torch.arange(data.n_train), seed=0)
        results.append((trained.meta["cached"], trained.meta["created"]))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(cached for cached, _ in results) == [False, True]  # one trained, the other waited and loaded
    assert results[0][1] == results[1][1]  # the very same model
    assert len(list((tmp_path / "models").glob("*.pt"))) == 1


def test_cache_lock_file_is_per_key(tmp_path):
    cache = ModelCache(tmp_path)
    with cache.lock("a"):
        with cache.lock("b"):  # a different key is not blocked
            pass
    assert (tmp_path / "a.lock").exists()


@pytest.mark.parametrize("kind", ["original", "retrain"])
def test_reference_meta_says_where_it_was_trained(kind, tmp_path):
    data = synthetic_data(500, 450)
    refs = service(data, ModelCache(tmp_path))
    trained = getattr(refs.for_split(split_of(data)), kind)
    assert trained.meta["train_device"] == refs.device_name and trained.meta["train_seconds"] > 0
    again = getattr(service(data, ModelCache(tmp_path)).for_split(split_of(data)), kind)
    assert again.meta["cached"] is True and again.meta["train_seconds"] == trained.meta["train_seconds"]
