"""Training throughput: the harness engine vs a bare hand-written torch loop vs the starting-kit pipeline.

Same model (torchvision resnet18, 10 classes), same batch size, same data, in one run; each setting is
timed `--repeats` times in interleaved order and the median is kept, so the ratios are comparable on a
noisy machine. Goal (issue 2): engine >= 0.97x the bare loop at the same precision, and engine with the
fast settings (bf16 autocast + channels_last) >= 1.5x the kit pipeline (fp32, PIL transforms, DataLoader).

    python benchmarks/throughput.py [--device cuda] [--batches 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
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

from harness import engine
from harness.data import MEAN, STD, load_cifar10


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_harness(data, idx, args, device, precision, channels_last):
    compute = engine.Compute(device, precision, channels_last)
    gen = engine.seed_everything(0)
    model = compute.prepare(resnet18(num_classes=10))
    opt = engine.sgd(model, 0.1)
    warm = idx[: args.batch_size * args.warmup]
    engine.train_epoch(model, engine.iterate(data, warm, args.batch_size, compute=compute, generator=gen,
                                             shuffle=True, augment_images=True), opt, compute=compute)
    timed = idx[: args.batch_size * args.batches]
    sync(device)
    start = time.perf_counter()
    engine.train_epoch(model, engine.iterate(data, timed, args.batch_size, compute=compute, generator=gen,
                                             shuffle=True, augment_images=True), opt, compute=compute)
    sync(device)
    return len(timed) / (time.perf_counter() - start)


def run_bare(data, idx, args, device, precision, channels_last):
    """What one would write by hand: pre-normalised float tensors on the device, slice, step."""
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

    def steps(n):
        perm = torch.randperm(n, device=device)
        for s in range(0, n, args.batch_size):
            b = perm[s:s + args.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x_all[b]), y_all[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps(args.batch_size * args.warmup)
    n = args.batch_size * args.batches
    sync(device)
    start = time.perf_counter()
    steps(n)
    sync(device)
    return n / (time.perf_counter() - start)


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
    args = parser.parse_args()
    device = engine.resolve_device(args.device)
    data = load_cifar10(args.data_dir)
    n = args.batch_size * max(args.batches, args.warmup)
    idx = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0))[:n]
    gpu_data = data.to(device)

    settings = {
        "harness fp32": (run_harness, "fp32", False),
        "bare fp32": (run_bare, "fp32", False),
        "harness bf16+cl": (run_harness, "bf16", True),
        "bare bf16+cl": (run_bare, "bf16", True),
        "kit fp32": (run_kit, "fp32", False),
    }
    results: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, (fn, precision, cl) in settings.items():
            source = data if fn is run_kit else gpu_data
            results[name].append(fn(source, idx, args, device, precision, cl))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else os.cpu_count()} "
          f"{'' if device.type == 'cuda' else 'CPU threads'}), torch {torch.__version__}, batch {args.batch_size}, "
          f"{args.batches} timed batches, median of {args.repeats}")
    print(f"{'setting':<18} {'img/s':>9}   runs")
    for k, v in med.items():
        print(f"{k:<18} {v:>9.0f}   " + " ".join(f"{x:.0f}" for x in results[k]))
    print()
    print(f"harness / bare, fp32:        {med['harness fp32'] / med['bare fp32']:.3f}   (goal >= 0.97)")
    print(f"harness / bare, bf16+cl:     {med['harness bf16+cl'] / med['bare bf16+cl']:.3f}   (goal >= 0.97)")
    print(f"harness bf16+cl / kit fp32:  {med['harness bf16+cl'] / med['kit fp32']:.2f}    (goal >= 1.5)")
    print(f"harness fp32 / kit fp32:     {med['harness fp32'] / med['kit fp32']:.2f}")


if __name__ == "__main__":
    main()
