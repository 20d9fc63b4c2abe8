"""Training throughput: the harness engine vs bare hand-written torch loops vs the starting-kit pipeline.

Same model (torchvision resnet18, 10 classes), same batch size, same data, in one run; each setting is
timed `--repeats` times in interleaved order and the median is kept, so the ratios are comparable on a
noisy machine. The harness does more per step than the bare loops (augmentation and normalisation of
uint8 batches); the bare loops slice pre-normalised tensors. On CUDA the harness replays each step from a
CUDA graph (its default) and is also timed eagerly (HARNESS_CUDA_GRAPHS=0); the best bare loop is the
faster of an eager one and one captured by hand as a CUDA graph (and a torch.compile one with
`--compile MODE`, its compile time printed apart). Goals (issue 10, on an H100/H200): harness >= 1.0x the
best bare loop at the same precision, and >= 5x the kit pipeline (fp32, PIL transforms, DataLoader).

    python benchmarks/throughput.py [--device cuda] [--batches 20] [--repeats 3] [--compile max-autotune-no-cudagraphs]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.models import resnet18

from harness import engine, graphs
from harness.data import MEAN, STD, load_cifar10


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_harness(data, idx, args, device, precision, channels_last, use_graphs=None):
    compute = engine.Compute(device, precision, channels_last, graphs=use_graphs)
    gen = engine.seed_everything(0)
    model = compute.prepare(resnet18(num_classes=10))
    opt = engine.sgd(model, 0.1)
    warm = idx[: args.batch_size * max(args.warmup, 5 if compute.capture else 0)]  # warm-up steps and the capture
    engine.train_epoch(model, engine.iterate(data, warm, args.batch_size, compute=compute, generator=gen,
                                             shuffle=True, augment_images=True), opt, compute=compute)
    timed = idx[: args.batch_size * args.batches]
    sync(device)
    counts = dataclasses.replace(graphs.runner(opt, device, capture=compute.capture).counts)
    start = time.perf_counter()
    engine.train_epoch(model, engine.iterate(data, timed, args.batch_size, compute=compute, generator=gen,
                                             shuffle=True, augment_images=True), opt, compute=compute)
    sync(device)
    rate = len(timed) / (time.perf_counter() - start)
    after = graphs.runner(opt, device, capture=compute.capture).counts
    if compute.capture:  # what the timed steps were: replays, unless a step could not be recorded
        STEP_KINDS[f"{precision}"] = {k: getattr(after, k) - getattr(counts, k)
                                      for k in ("replays", "eager", "captures", "failures")}
    return rate


STEP_KINDS: dict[str, dict] = {}


def run_harness_eager(data, idx, args, device, precision, channels_last):
    return run_harness(data, idx, args, device, precision, channels_last, use_graphs=False)


def _bare_setup(data, idx, device, channels_last, compile_mode=None):
    torch.manual_seed(0)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    x_all = ((data.images[idx].to(device).float() / 255) - mean) / std
    if channels_last:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    y_all = data.labels[idx].to(device)
    model = resnet18(num_classes=10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    return x_all, y_all, (torch.compile(model, mode=compile_mode) if compile_mode else model), opt


def run_bare(data, idx, args, device, precision, channels_last, compile_mode=None):
    """What one would write by hand: pre-normalised float tensors on the device, slice, step."""
    x_all, y_all, model, opt = _bare_setup(data, idx, device, channels_last, compile_mode)

    def steps(n):
        perm = torch.randperm(n, device=device)
        for s in range(0, n, args.batch_size):
            b = perm[s:s + args.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x_all[b]), y_all[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return _rate(steps, args, device, warm_seconds=COMPILE_SECONDS if compile_mode else None)


COMPILE_SECONDS: list[float] = []


def _rate(steps, args, device, warm_seconds: list | None = None) -> float:
    """img/s of `steps(n)` over `args.batches` batches, after `args.warmup` untimed ones (their seconds
    appended to `warm_seconds` if given: a compile's cost)."""
    start = time.perf_counter()
    steps(args.batch_size * args.warmup)
    sync(device)
    if warm_seconds is not None:
        warm_seconds.append(time.perf_counter() - start)
    n = args.batch_size * args.batches
    start = time.perf_counter()
    steps(n)
    sync(device)
    return n / (time.perf_counter() - start)


def run_bare_compiled(data, idx, args, device, precision, channels_last):
    return run_bare(data, idx, args, device, precision, channels_last, compile_mode=args.compile)


def run_bare_graphed(data, idx, args, device, precision, channels_last):
    """The bare loop with the whole step (forward, backward, optimiser) captured by hand as one CUDA graph,
    as PyTorch's documentation shows: per step, copy the batch into fixed buffers and replay."""
    x_all, y_all, model, opt = _bare_setup(data, idx, device, channels_last)
    bs = args.batch_size
    static_x, static_y = x_all[:bs].clone(), y_all[:bs].clone()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False):
            loss = F.cross_entropy(model(static_x), static_y)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def steps(n):
        perm = torch.randperm(n, device=device)
        for s in range(0, n - bs + 1, bs):
            b = perm[s:s + bs]
            static_x.copy_(x_all[b])
            static_y.copy_(y_all[b])
            graph.replay()

    return _rate(steps, args, device)


class KitDataset(Dataset):
    """torchvision's CIFAR10.__getitem__: a PIL image per sample, then the kit's transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def run_kit(data, idx, args, device, precision, channels_last):
    torch.manual_seed(0)
    images = data.images[idx].permute(0, 2, 3, 1).numpy()
    labels = data.labels[idx].numpy()
    n_warm, n = args.batch_size * args.warmup, args.batch_size * args.batches
    model = resnet18(num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()

    def steps(lo, hi):
        loader = DataLoader(KitDataset(images[lo:hi], labels[lo:hi]), batch_size=args.batch_size, shuffle=True,
                            num_workers=args.kit_workers, pin_memory=device.type == "cuda")
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps(0, n_warm)
    sync(device)
    start = time.perf_counter()
    steps(0, n)  # the loader's worker start-up is part of the pipeline's cost, as in every epoch
    sync(device)
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kit-workers", type=int, default=2, help="DataLoader workers of the kit pipeline")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="also time a torch.compile'd bare loop (e.g. default, max-autotune-no-cudagraphs)")
    args = parser.parse_args()
    device = engine.resolve_device(args.device)
    data = load_cifar10(args.data_dir)
    n = args.batch_size * max(args.batches, args.warmup)
    idx = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0))[:n]
    gpu_data = data.to(device)

    cuda = device.type == "cuda"
    settings = {}
    for label, precision, cl in (("fp32", "fp32", False), ("bf16+cl", "bf16", True)):
        settings[f"harness {label}"] = (run_harness, precision, cl)
        if cuda:
            settings[f"harness {label} eager"] = (run_harness_eager, precision, cl)
        settings[f"bare {label}"] = (run_bare, precision, cl)
        if cuda:
            settings[f"bare {label} graphed"] = (run_bare_graphed, precision, cl)
        if args.compile:
            settings[f"bare {label} compiled"] = (run_bare_compiled, precision, cl)
    settings["kit fp32"] = (run_kit, "fp32", False)
    if cuda:
        torch.backends.cudnn.benchmark = True  # as the harness sets it on CUDA, for every setting alike
    results: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, (fn, precision, cl) in settings.items():
            source = data if fn is run_kit else gpu_data
            results[name].append(fn(source, idx, args, device, precision, cl))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"device: {engine.device_name(device)}, torch {torch.__version__}, batch {args.batch_size}, "
          f"{args.batches} timed batches, median of {args.repeats}")
    print(f"{'setting':<24} {'img/s':>9}   runs")
    for k, v in med.items():
        print(f"{k:<24} {v:>9.0f}   " + " ".join(f"{x:.0f}" for x in results[k]))
    for precision, kinds in STEP_KINDS.items():
        print(f"harness {precision} with CUDA graphs, last timed epoch: {kinds}")
    if COMPILE_SECONDS:
        print(f"torch.compile ({args.compile}): {statistics.median(COMPILE_SECONDS):.1f} s to compile and warm up "
              f"(median over settings and repeats), not counted above")
    print()
    for label in ("fp32", "bf16+cl"):
        bare = {k: v for k, v in med.items() if k.startswith(f"bare {label}")}
        best = max(bare, key=bare.get)
        print(f"harness / best bare loop, {label:<8} {med[f'harness {label}'] / bare[best]:.3f}   "
              f"(best: {best}; goal >= 1.0)")
        if cuda:
            print(f"harness graphs / eager, {label:<8}   {med[f'harness {label}'] / med[f'harness {label} eager']:.2f}")
    fastest = max(("fp32", "bf16+cl"), key=lambda label: med[f"harness {label}"])
    print(f"harness {fastest} / kit fp32:{'':<9} {med[f'harness {fastest}'] / med['kit fp32']:.2f}    "
          "(goal >= 5 on a GPU)")
    if fastest != "fp32":
        print(f"harness fp32 / kit fp32:{'':<12} {med['harness fp32'] / med['kit fp32']:.2f}")
    print(f"original model, 30 epochs of 50k images at harness {fastest} img/s: "
          f"{30 * 50000 / med[f'harness {fastest}']:.0f} s (estimate; goal <= 60 s)")


if __name__ == "__main__":
    main()
