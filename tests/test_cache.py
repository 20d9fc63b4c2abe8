import logging

import torch

from harness.cache import ModelCache, cache_key


def test_key_depends_on_every_part():
    base = dict(data="d", train="t", model="resnet18", recipe={"epochs": 3}, seed=0)
    assert cache_key(**base) == cache_key(**dict(base))
    for k, v in [("data", "e"), ("train", "u"), ("recipe", {"epochs": 4}), ("seed", 1)]:
        assert cache_key(**{**base, k: v}) != cache_key(**base)


def test_roundtrip_and_corrupt_file_is_rebuilt(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    model = torch.nn.Linear(4, 2)
    cache.save("k", model, {"train_seconds": 1.5, "history": [{"epoch": 1, "loss": 0.3}]})
    other = torch.nn.Linear(4, 2)
    meta = cache.load("k", other)
    assert meta["train_seconds"] == 1.5 and meta["history"][0]["loss"] == 0.3
    assert torch.equal(other.weight, model.weight)
    assert not list(tmp_path.glob("*.tmp")), "no temporary file left behind"

    cache.path("k").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert cache.load("k", other) is None
    assert "unreadable" in caplog.text and not cache.path("k").exists()
    assert cache.load("missing", other) is None


def test_wrong_architecture_is_a_miss(tmp_path):
    cache = ModelCache(tmp_path)
    cache.save("k", torch.nn.Linear(4, 2), {})
    assert cache.load("k", torch.nn.Linear(5, 2)) is None
