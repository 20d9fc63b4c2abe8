"""The evaluation pass: logits (and penultimate features) of one ResNet18 on all 60k CIFAR-10 images, as
every cell computes them (`harness.evaluation.model_outputs`), timed after one untimed pass. Issue 10's
goal on an H100/H200: <= 2 s. Works with older harness versions too (run with their folder first on
PYTHONPATH), so a GPU check can print the figure for the previous commit beside this one.

    python benchmarks/eval_pass.py [--device cuda] [--precision fp32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torchvision.models import resnet18

from harness import engine
from harness.data import load_cifar10
from harness.evaluation import model_outputs
from harness.splits import Split


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (a CPU smoke check)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    device = engine.resolve_device(args.device)
    data = load_cifar10(args.data_dir).to(device)
    n = len(data.labels) if args.limit is None else min(args.limit, len(data.labels))
    every = torch.arange(n)
    quarter = n // 4  # four splits, as a cell has: retain, forget, validation, test
    split = Split("all", 0, every[:2 * quarter], every[2 * quarter:3 * quarter],
                  every[3 * quarter:3 * quarter + quarter // 4], every[3 * quarter + quarter // 4:], "all", "all")
    compute = engine.Compute(device, args.precision, channels_last=True)
    torch.manual_seed(0)
    model = compute.prepare(resnet18(num_classes=10)).eval()
    model_outputs(model, data, split, compute)  # untimed: cuDNN's kernel choice, allocations
    clock = engine.Stopwatch(device)
    times = []
    for _ in range(args.repeats):
        start = clock.now()
        out = model_outputs(model, data, split, compute)
        times.append(clock.now() - start)
    images = sum(len(v) for v in out.logits.values())
    best = statistics.median(times)
    print(f"evaluation pass on {engine.device_name(device)} ({args.precision}): {images} images in {best:.2f} s "
          f"(median of {args.repeats}: {' '.join(f'{t:.2f}' for t in times)}), {images / best:.0f} img/s; "
          f"goal <= 2 s for 60000 on an H100/H200")


if __name__ == "__main__":
    main()
