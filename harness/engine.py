"""The one training engine: batches from the uint8 tensor, batch-wise augmentation, epoch loops, prediction.

Used for the original model, for retraining and, through `Context`, by every unlearning method, so a
speed-up or a bug fix here reaches all of them and timings stay comparable.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import graphs
from .data import MEAN, STD, ImageData

PAD = 4  # random-crop padding of the starting kit


def resolve_device(name: str | None = None) -> torch.device:
    """The device to compute on; a ValueError in one line for a device this machine does not have."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use --device cpu or leave it out")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"device type {device.type!r} is not supported: use cpu, cuda or cuda:N")
    return device


def device_name(device: torch.device) -> str:
    """What the device is, for logs and for keying timings: a timing is only comparable on the same one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class Compute:
    """Where and how tensors are computed; shared by training and evaluation."""

    device: torch.device
    precision: str = "bf16"  # "bf16" autocast or "fp32"
    channels_last: bool = True
    graphs: bool | None = None  # training steps as CUDA graphs (`harness.graphs`); None: on CUDA unless
    # HARNESS_CUDA_GRAPHS=0 (a machine's choice, like its thread count: results are the same either way)

    def __post_init__(self):
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")

    @property
    def capture(self) -> bool:
        """Whether training steps are captured and replayed (on the CPU only ever emulated, for tests)."""
        if self.graphs is None:
            return self.device.type == "cuda" and os.environ.get("HARNESS_CUDA_GRAPHS", "1") != "0"
        return self.graphs

    def autocast(self, cache: bool = True):
        """bf16 autocast, or nothing for fp32. `cache=False` inside a step that may be captured as a graph."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=cache)

    def eval_batch_size(self) -> int:
        """Inference batch: large on a GPU (a few launches for 60k images), as memory allows; 1024 on the CPU,
        where a larger batch gains nothing."""
        if self.device.type != "cuda":
            return 1024
        free, _ = torch.cuda.mem_get_info(self.device)
        return inference_batch(free)

    def prepare(self, model: nn.Module) -> nn.Module:
        if self.device.type == "cuda":  # fixed shapes: cuDNN times its kernels once and keeps the fastest
            torch.backends.cudnn.benchmark = True
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


class Normalizer:
    """uint8 batch -> normalised float batch in one fused multiply-add on the device."""

    def __init__(self, device: torch.device, channels_last: bool):
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, x.float(), self.scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def inference_batch(free_bytes: int) -> int:
    """The largest power of two from 1024 to 16384 whose activations fit in a quarter of `free_bytes`
    (about 1 MiB per 32x32 image through a ResNet18 in eval mode, fp32, with headroom)."""
    batch = 1024
    while batch < 16384 and (2 * batch) * 2**20 <= free_bytes // 4:
        batch *= 2
    return batch


def augment_offsets(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3) int64 per-sample augmentation draws: crop row and column offsets in [0, 8], flip in {0, 1}.

    Drawn for a whole epoch at once on the CPU generator: the same on every device, and one transfer per
    epoch instead of three per step."""
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = (torch.rand((n,), generator=generator) < 0.5).long()
    return torch.stack([dy, dx, flip], 1)


def augment(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Random crop with zero padding of 4 and a horizontal flip, per sample, as one gather on the batch;
    `offsets` rows from `augment_offsets`.

    Zero padding of uint8 pixels equals torchvision's RandomCrop(padding=4) on the PIL image."""
    b, c, h, w = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    dy, dx, flip = offsets[:, 0:1], offsets[:, 1:2], offsets[:, 2:3].bool()
    ar_h = torch.arange(h, device=images.device).view(1, h)
    ar_w = torch.arange(w, device=images.device).view(1, w)
    rows = dy + ar_h
    cols = dx + torch.where(flip, w - 1 - ar_w, ar_w)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def iterate(
    data: ImageData,
    indices: torch.Tensor,
    batch_size: int,
    *,
    compute: Compute,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    augment_images: bool = False,
    drop_last: bool = False,
    values: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield normalised (x, y) batches over `indices` of `data` (which should already be on the device).

    With `values` (one row per index, e.g. a frozen teacher's logits or pseudo-labels computed once),
    yield (x, y, v) with each row still beside its sample after shuffling."""
    if (shuffle or augment_images) and generator is None:
        raise ValueError("shuffling or augmenting needs a seeded generator")
    if values is not None and len(values) != len(indices):
        raise ValueError(f"values has {len(values)} rows for {len(indices)} indices")
    normalize = Normalizer(compute.device, compute.channels_last)
    perm = torch.randperm(len(indices), generator=generator) if shuffle else torch.arange(len(indices))
    order = indices[perm].to(data.images.device)
    if values is not None:
        values = values.to(compute.device)[perm.to(compute.device)]
    n = len(order)
    offsets = augment_offsets(n, generator).to(data.images.device) if augment_images and n else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        images = data.images[idx]
        if offsets is not None:
            images = augment(images, offsets[start:start + batch_size])
        x = normalize(images.to(compute.device, non_blocking=True))
        y = data.labels[idx].to(compute.device, non_blocking=True)
        yield (x, y) if values is None else (x, y, values[start:start + batch_size])


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_epoch(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    compute: Compute,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass; loss_fn(logits, y, x) (plus v for (x, y, v) batches) defaults to cross-entropy.

    Returns mean loss and accuracy, summed on the device and read once at the end. With `compute.capture`
    (the default on CUDA) each step is replayed from a CUDA graph (`harness.graphs`): the loss function must
    then not sync with the host, and Python numbers it reads must not change during the epoch."""
    model.train()
    runner = graphs.runner(optimizer, compute.device, capture=compute.capture)
    runner.start_epoch(lambda: graphs.state_key(model, optimizer))
    step = functools.partial(_step, model, optimizer, compute, loss_fn)
    fn_key = graphs.function_key(loss_fn) if compute.capture else None
    seen = 0
    for batch in batches:
        key = (fn_key, graphs.hyper_key(optimizer)) if compute.capture else None
        runner.run(step, tuple(batch), key)
        if after_step is not None:
            after_step()
        seen += len(batch[1])
    loss, correct = runner.sums()
    seen = max(seen, 1)
    return {"loss": loss / seen, "acc": correct / seen}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, compute: Compute, loss_fn, loss_sum: torch.Tensor,
          correct: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *values: torch.Tensor) -> None:
    """One SGD step, adding its loss and correct predictions into the running sums: everything on the
    device, so it can be captured whole."""
    optimizer.zero_grad(set_to_none=True)
    with compute.autocast(cache=False):
        logits = model(x)
        loss = F.cross_entropy(logits, y) if loss_fn is None else loss_fn(logits, y, x, *values)
    loss.backward()
    optimizer.step()
    loss_sum += loss.detach().float() * y.shape[0]
    correct += (logits.detach().argmax(1) == y).sum()


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, indices: torch.Tensor, *, compute: Compute,
            batch_size: int | None = None, features: bool = False):
    """float32 logits on the CPU for `indices`, in eval mode, without augmentation. With `features=True`,
    (logits, features): the input of the model's last nn.Linear (float16 where it fits, see `compact`),
    captured by a hook during the same forward pass (None if the model has no linear layer). Batches default to
    `compute.eval_batch_size()`; results stay on the device until one copy at the end."""
    was_training = model.training
    model.eval()
    out, feats = [], []
    head = last_linear(model) if features else None
    hook = head.register_forward_pre_hook(lambda m, args: feats.append(args[0].detach().flatten(1).float())) \
        if head is not None else None
    try:
        for x, _ in iterate(data, indices, batch_size or compute.eval_batch_size(), compute=compute):
            with compute.autocast():
                out.append(model(x).float())
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    logits = torch.cat(out).cpu() if out else torch.empty(0, 0)
    if not features:
        return logits
    if head is None or len(feats) != len(out):  # no head, or a head called more than once per batch
        return logits, None
    return logits, compact(torch.cat(feats)).cpu() if feats else torch.empty(0, 0, dtype=torch.float16)


FLOAT16_MAX = float(torch.finfo(torch.float16).max)  # 65504


def compact(values: torch.Tensor) -> torch.Tensor:
    """float16 when every value is finite and fits it (|x| <= 65504), which halves what an evaluation
    pass or a cached bank holds; float32 otherwise, so that nothing overflows to inf. A model trained by
    ascending a loss reaches logits of 1e4-1e5 on purpose."""
    values = values.float()
    if values.numel() and bool(torch.isfinite(values).all()) and float(values.abs().max()) <= FLOAT16_MAX:
        return values.half()
    if not values.numel():
        return values.half()
    return values


def last_linear(model: nn.Module) -> nn.Linear | None:
    """The classifier head whose input is the penultimate representation: the last nn.Linear registered."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def fit(
    model: nn.Module,
    make_batches: Callable[[], Iterator[tuple[torch.Tensor, ...]]],
    *,
    epochs: int,
    lr: float,
    compute: Compute,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str | Callable[[int], float] = "cosine",
    loss_fn: Callable[..., torch.Tensor] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: Callable | None = None,
) -> nn.Module:
    """SGD training with a per-epoch learning-rate schedule, the loop every phase of every method shares.

    `make_batches()` returns one epoch's batches, so the caller owns shuffling and augmentation.
    `schedule`: 'cosine' over `epochs`, 'constant', or a function of the 0-based epoch giving the lr
    multiplier (LambdaLR also asks it for epoch `epochs`, after the last step). `loss_fn` as in
    `train_epoch` (cross-entropy by default). `before_epoch(epoch)` runs before each 1-based epoch (e.g. to
    perturb weights), `after_step()` after every optimiser step, `on_epoch(epoch, stats)` after each epoch."""
    optimizer = sgd(model, lr, momentum, weight_decay)
    if callable(schedule):
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    elif schedule == "constant":
        scheduler = None
    else:
        raise ValueError(f"schedule must be 'cosine', 'constant' or a function, got {schedule!r}")
    epoch_iter = range(1, epochs + 1)
    if progress is not None:
        epoch_iter = progress(epoch_iter, total=epochs)
    try:
        for epoch in epoch_iter:
            if before_epoch is not None:
                before_epoch(epoch)
            stats = train_epoch(model, make_batches(), optimizer, compute=compute, loss_fn=loss_fn,
                                after_step=after_step)
            stats["lr"] = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch, stats)
    finally:
        graphs.release(optimizer)
    return model.eval()


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init, dropout) and return a CPU generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Stopwatch:
    """Wall-clock time with device synchronisation, so GPU work is counted where it happens."""

    def __init__(self, device: torch.device):
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def precision_speeds(model_factory: Callable[[], nn.Module], device: torch.device, *, channels_last: bool = True,
                     batch_size: int = 128, steps: int = 4) -> dict[str, float]:
    """Training img/s of a fresh model in fp32 and in bf16 autocast on `device`, steps interleaved so that
    a change of load hits both alike (median of `steps` after the warm-up steps: one, or with CUDA graphs
    those before the capture and the capture itself).

    The answer differs by machine: bf16 was 1.3x faster than fp32 on one AMD EPYC, 0.9x on an Intel
    Xeon with AMX and slower on an H200 (launch-bound), so 'auto' precision measures instead of guessing."""
    computes = {p: Compute(device, p, channels_last) for p in ("fp32", "bf16")}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        models = {p: c.prepare(model_factory()) for p, c in computes.items()}
        optimizers = {p: sgd(m, 0.01) for p, m in models.items()}
        x = torch.randn(batch_size, 3, 32, 32, device=device)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        y = torch.randint(0, 10, (batch_size,), device=device)
        times: dict[str, list[float]] = {p: [] for p in computes}
        clock = Stopwatch(device)
        warmup = graphs.WARMUP_STEPS + 1 if computes["fp32"].capture else 1
        for step in range(steps + warmup):
            for p, compute in computes.items():
                start = clock.now()
                train_epoch(models[p], iter([(x, y)]), optimizers[p], compute=compute)
                if step >= warmup:
                    times[p].append(clock.now() - start)
    return {p: batch_size / sorted(t)[len(t) // 2] for p, t in times.items()}
