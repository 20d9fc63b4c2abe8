import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from harness import engine
from harness.data import MEAN, STD

from .conftest import CPU, synthetic_data, tiny_factory


def test_augment_matches_per_sample_crop_and_flip():
    """The batched gather equals padding each image, cropping at its offsets, then flipping."""
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(5)
    out = engine.augment(images, engine.augment_offsets(16, gen))
    gen = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 9, (16, 1), generator=gen)
    dx = torch.randint(0, 9, (16, 1), generator=gen)
    flip = torch.rand((16, 1), generator=gen) < 0.5
    for i in range(16):
        ref = F.pad(images[i], (4, 4, 4, 4))[:, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    assert flip.any() and not flip.all()


def test_normalizer_matches_torchvision():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    ref = v2.Normalize(MEAN, STD)(images.float() / 255)
    ours = engine.Normalizer(torch.device("cpu"), channels_last=True)(images)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_iterate_covers_every_index_once_per_epoch():
    data = synthetic_data(50, 10)
    idx = torch.arange(7, 50)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for x, y in engine.iterate(data, idx, 8, compute=CPU, generator=gen, shuffle=True):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        seen.append(y)
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.sort(data.labels[idx]).values)
    with pytest.raises(ValueError, match="seeded generator"):
        next(engine.iterate(data, idx, 8, compute=CPU, shuffle=True))


def test_fit_is_repeatable_and_learns():
    data = synthetic_data(64, 10)
    idx = torch.arange(64)

    def train(seed):
        gen = engine.seed_everything(seed)
        model = CPU.prepare(tiny_factory())
        history = []
        engine.fit(model, lambda: engine.iterate(data, idx, 32, compute=CPU, generator=gen, shuffle=True,
                                                 augment_images=True),
                   epochs=4, lr=0.01, compute=CPU, on_epoch=lambda e, s: history.append(s))
        return model, history

    a, hist = train(0)
    b, _ = train(0)
    for va, vb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(va, vb)
    assert not a.training
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[0]["lr"] == pytest.approx(0.01) and hist[-1]["lr"] < 0.01  # cosine decays


def test_predict_returns_float_logits_in_order():
    data = synthetic_data(20, 10)
    model = tiny_factory()
    model.train()
    idx = torch.tensor([3, 1, 2])
    logits = engine.predict(model, data, idx, compute=CPU)
    assert logits.shape == (3, 10) and logits.dtype == torch.float32
    assert model.training, "predict restores the mode it found"
    single = engine.predict(model, data, idx[1:2], compute=CPU)
    torch.testing.assert_close(logits[1:2], single, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_on_cpu():
    compute = engine.Compute(torch.device("cpu"), precision="bf16", channels_last=True)
    data = synthetic_data(20, 10)
    logits = engine.predict(compute.prepare(tiny_factory()), data, torch.arange(4), compute=compute)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="precision"):
        engine.Compute(torch.device("cpu"), precision="fp16")


def test_resolve_device():
    assert engine.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert engine.resolve_device(None).type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            engine.resolve_device("cuda")


def test_values_follow_their_samples_through_the_shuffle():
    """(x, y, v) batches: each value row stays beside its sample, the order is shuffled and seeded."""
    data = synthetic_data(60, 10)
    idx = torch.arange(5, 60)
    values = idx.float() * 10 + data.labels[idx]  # encodes which sample each row belongs to

    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        seen = []
        for x, y, v in engine.iterate(data, idx, 16, compute=CPU, generator=gen, shuffle=True, values=values):
            assert len(v) == len(y) == len(x)
            assert torch.equal(v.long() % 10, y)
            seen.append(v.long() // 10)
        return torch.cat(seen)

    seen = order(0)
    assert sorted(seen.tolist()) == idx.tolist() and not torch.equal(seen, idx)
    assert torch.equal(order(0), seen)
    with pytest.raises(ValueError, match="values has 3 rows for 55 indices"):
        next(engine.iterate(data, idx, 16, compute=CPU, values=values[:3]))


def test_fit_schedules_and_hooks():
    """A callable schedule is an lr multiplier of the 0-based epoch; before_epoch runs before each epoch."""
    data = synthetic_data(32, 10)
    idx = torch.arange(32)
    gen = engine.seed_everything(0)
    seen, lrs = [], []
    engine.fit(CPU.prepare(tiny_factory()), lambda: engine.iterate(data, idx, 16, compute=CPU, generator=gen),
               # the schedule is also asked for e = epochs, after the last step
               epochs=3, lr=0.1, compute=CPU, schedule=lambda e: [0.5, 1.0, 0.25, 0.0][e],
               before_epoch=seen.append, on_epoch=lambda e, s: lrs.append(s["lr"]))
    assert seen == [1, 2, 3]
    assert lrs == pytest.approx([0.05, 0.1, 0.025])
    with pytest.raises(ValueError, match="schedule must be"):
        engine.fit(tiny_factory(), lambda: iter(()), epochs=1, lr=0.1, compute=CPU, schedule="linear")
