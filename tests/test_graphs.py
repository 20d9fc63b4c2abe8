"""The captured training step (`harness.graphs`), tested on the CPU through its emulation: the same buffers,
keys and bookkeeping as on CUDA, where the step is a real CUDA graph."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from harness import engine, graphs

from .conftest import CPU, synthetic_data, tiny_factory

GRAPHED = dataclasses.replace(CPU, graphs=True)


def _train(compute, *, epochs=3, n=100, batch=16, schedule="cosine", loss_fn=None, augment=True):
    data = synthetic_data(n, 10)
    gen = engine.seed_everything(0)
    model = compute.prepare(tiny_factory())
    history = []
    optimizer_box = []
    real_sgd = engine.sgd

    def sgd(*a, **k):  # keep the optimiser, to read its runner's counts
        optimizer_box.append(real_sgd(*a, **k))
        return optimizer_box[-1]

    engine.sgd, saved = sgd, engine.sgd
    try:
        engine.fit(model, lambda: engine.iterate(data, torch.arange(n), batch, compute=compute, generator=gen,
                                                 shuffle=True, augment_images=augment),
                   epochs=epochs, lr=0.05, compute=compute, schedule=schedule, loss_fn=loss_fn,
                   on_epoch=lambda e, s: history.append(s))
    finally:
        engine.sgd = saved
    counts = graphs.runner(optimizer_box[0], compute.device, capture=compute.capture).counts
    return model, history, counts


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_captured_steps_train_exactly_like_eager_ones():
    """6 full batches and a short one per epoch, a new learning rate each epoch (cosine): the first epoch
    warms up 3 steps then records, each later epoch warms 1 step and records again; short batches run
    eagerly. Weights and per-epoch statistics are bit-identical to eager training."""
    eager, eager_hist, eager_counts = _train(CPU)
    graphed, graphed_hist, counts = _train(GRAPHED)
    assert _same(eager, graphed)
    assert eager_hist == graphed_hist
    assert eager_counts == graphs.Counts(eager=21)
    assert counts == graphs.Counts(eager=3 + 1 + 2 * (1 + 1), replays=3 + 2 * 5, captures=3, failures=0)


def test_a_graph_outlives_the_epoch_when_nothing_it_depends_on_changed():
    """Constant learning rate and a new lambda each epoch with the same closure values: one capture."""
    t = 2.0

    def loss(logits, y, x):
        return F.cross_entropy(logits / t, y)

    _, _, counts = _train(GRAPHED, schedule="constant", loss_fn=lambda logits, y, x: loss(logits, y, x))
    assert counts.captures == 1 and counts.replays == 3 + 2 * 6


def test_what_a_graph_is_keyed_on():
    scale = 1.5
    first = lambda logits, y, x: F.cross_entropy(logits * scale, y)  # noqa: E731
    second = lambda logits, y, x: F.cross_entropy(logits * scale, y)  # noqa: E731
    assert graphs.function_key(first) == graphs.function_key(first)
    assert graphs.function_key(first) != graphs.function_key(second)  # two lambdas in the source: two code objects

    def make(s):
        return lambda logits, y, x: F.cross_entropy(logits * s, y)

    assert graphs.function_key(make(2.0)) == graphs.function_key(make(2.0))
    assert graphs.function_key(make(2.0)) != graphs.function_key(make(3.0))  # a closure number is baked in
    a, b = torch.zeros(3), torch.zeros(3)
    assert graphs.function_key(make(a)) != graphs.function_key(make(b))  # another tensor, another storage
    assert graphs.function_key(None) is None
    model = tiny_factory()
    opt = engine.sgd(model, 0.1)
    before = graphs.hyper_key(opt)
    opt.param_groups[0]["lr"] = 0.2
    assert graphs.hyper_key(opt) != before
    key = graphs.state_key(model, opt)
    with torch.no_grad():
        next(model.parameters()).add_(1)  # in place: the same storage
    assert graphs.state_key(model, opt) == key
    next(model.parameters()).data = torch.zeros_like(next(model.parameters()))  # new storage
    assert graphs.state_key(model, opt) != key


def test_a_step_that_cannot_be_captured_runs_eagerly_with_one_warning(monkeypatch):
    def refuse(self, step, static):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs.StepRunner, "_capture", refuse)
    eager, eager_hist, _ = _train(CPU, epochs=2, schedule="constant")
    with pytest.warns(RuntimeWarning, match="not captured as a CUDA graph.*stream is capturing") as caught:
        graphed, graphed_hist, counts = _train(GRAPHED, epochs=2, schedule="constant")
    assert len(caught) == 1, "the same key is not tried again"
    assert _same(eager, graphed) and eager_hist == graphed_hist
    assert counts == graphs.Counts(eager=14, replays=0, captures=0, failures=1)


def test_new_storage_drops_the_graph():
    """A parameter given new storage between epochs: the old graph would write into the old storage."""
    data = synthetic_data(64, 10)
    model = GRAPHED.prepare(tiny_factory())
    opt = engine.sgd(model, 0.05)
    gen = torch.Generator().manual_seed(0)
    batches = lambda: engine.iterate(data, torch.arange(64), 16, compute=GRAPHED, generator=gen, shuffle=True)  # noqa: E731
    engine.train_epoch(model, batches(), opt, compute=GRAPHED)
    counts = graphs.runner(opt, GRAPHED.device, capture=True).counts
    assert counts.captures == 1
    engine.train_epoch(model, batches(), opt, compute=GRAPHED)
    assert counts.captures == 1 and counts.replays == 1 + 4
    weight = next(model.parameters())
    weight.data = weight.data.clone()
    engine.train_epoch(model, batches(), opt, compute=GRAPHED)
    assert counts.captures == 2 and counts.eager == 3 + 1


def test_a_learning_rate_changed_every_step_is_never_captured():
    data = synthetic_data(160, 10)
    model = GRAPHED.prepare(tiny_factory())
    opt = engine.sgd(model, 0.05)

    def decay():
        opt.param_groups[0]["lr"] *= 0.9

    engine.train_epoch(model, engine.iterate(data, torch.arange(160), 16, compute=GRAPHED), opt, compute=GRAPHED,
                       after_step=decay)
    counts = graphs.runner(opt, GRAPHED.device, capture=True).counts
    assert counts == graphs.Counts(eager=10)


def test_cpu_compute_does_not_capture_by_default_and_inference_batches_grow_with_memory(monkeypatch):
    assert not CPU.capture and GRAPHED.capture
    monkeypatch.delenv("HARNESS_CUDA_GRAPHS", raising=False)
    assert engine.Compute(torch.device("cuda"), "fp32").capture  # the default on CUDA (no GPU needed to ask)
    monkeypatch.setenv("HARNESS_CUDA_GRAPHS", "0")
    assert not engine.Compute(torch.device("cuda"), "fp32").capture
    assert CPU.eval_batch_size() == 1024
    assert engine.inference_batch(0) == 1024
    assert engine.inference_batch(4 * 2**30) == 1024  # a small, busy card
    assert engine.inference_batch(8 * 2**30) == 2048
    assert engine.inference_batch(40 * 2**30) == 8192
    assert engine.inference_batch(120 * 2**30) == 16384


@pytest.fixture(scope="module")
def wider_bench():
    """300 training images, 128 of them forgotten: a method that trains on forget alone (ga, the boundary
    methods) still has more steps per epoch than the eager warm-up."""
    from dataclasses import replace

    from harness.testing import Bench

    bench = Bench.build(tiny_factory, synthetic_data(300, 80))
    train = torch.arange(bench.data.n_train)
    return replace(bench, retain=train[128:], forget=train[:128])


def _method_names():
    from harness.host import default_host

    return sorted(default_host().methods.names())


@pytest.mark.parametrize("name", _method_names())
def test_every_builtin_method_gives_the_same_model_with_captured_steps(name, wider_bench, monkeypatch):
    """Each built-in method on the CPU, eager and with emulated graphs (batches of 32, so epochs hold
    several steps of one shape): bit-identical results, and the captured path was taken (by every method
    that trains by epochs: SSD takes no optimiser step)."""
    from harness.cell import method_arguments
    from harness.host import default_host
    from harness.testing import fast_params

    method = default_host().methods.get(name)
    params = fast_params(method, **{k: 32 for k in method.space if k.endswith("batch_size")})
    b = wider_bench
    records = []
    record = graphs.StepRunner._record
    monkeypatch.setattr(graphs.StepRunner, "_record", lambda self, *a: records.append(1) or record(self, *a))

    def run(compute):
        model, data, ctx = method_arguments(b.original, b.data, b.retain, b.forget, b.validation, 0, compute,
                                            b.model_factory, show_progress=False, epoch_eval_size=None)
        return method.fn(model, data, dict(params), ctx)

    eager = run(CPU)
    assert not records
    graphed = run(GRAPHED)
    assert _same(eager, graphed)
    assert records or "epochs" not in method.space, f"{name}: no step was captured"


def test_the_retrain_clock_times_only_replays():
    """The steps behind every "% of retrain" are timed after the warm-up and the recording, never with them."""
    from harness.profiles import Recipe
    from harness.reference_models import ReferenceModels
    from harness.testing import Bench

    bench = Bench.build(tiny_factory, synthetic_data(300, 80))
    refs = ReferenceModels(bench.data, GRAPHED, "tiny", tiny_factory, Recipe(epochs=2, batch_size=16, augment=False),
                      cache=None, show_progress=False, calibration_steps=4, warmup_steps=1)
    clock = refs.retrain_clock(bench.split())
    counts = graphs.runner(clock.optimizer, GRAPHED.device, capture=True).counts
    assert counts.captures == 1
    before = dataclasses.replace(counts)
    clock.sample(4)
    assert counts.replays == before.replays + 4 and counts.eager == before.eager and counts.captures == 1


def test_a_step_that_syncs_with_the_host_is_never_recorded(monkeypatch):
    """On CUDA the last warm-up step runs under the sync debug mode; a sync found there means no recording
    is tried (one mid-capture would fail). Here the probe is made to report one."""
    import contextlib

    @contextlib.contextmanager
    def synced(self):
        yield ["called a synchronizing CUDA operation"]

    monkeypatch.setattr(graphs.StepRunner, "_sync_probe", synced)
    eager, eager_hist, _ = _train(CPU, epochs=2, schedule="constant")
    with pytest.warns(RuntimeWarning, match="syncs with the host") as caught:
        graphed, graphed_hist, counts = _train(GRAPHED, epochs=2, schedule="constant")
    assert len(caught) == 1
    assert _same(eager, graphed) and eager_hist == graphed_hist
    assert counts == graphs.Counts(eager=14, replays=0, captures=0, failures=1)
