"""bad-teacher: distil the original on retain and a randomly initialised model on forget (Chundawat et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl, toolkit


def teacher_target(good: torch.Tensor, bad: torch.Tensor, is_forget: torch.Tensor, T: float) -> torch.Tensor:
    """The distribution each sample is pulled to: softmax(bad / T) for forget rows, softmax(good / T) for
    retain rows."""
    f = is_forget.float().unsqueeze(1)
    return f * F.softmax(bad.float() / T, dim=1) + (1 - f) * F.softmax(good.float() / T, dim=1)


def bad_teacher_loss(T: float, num_classes: int):
    """The source's UnlearnerLoss on (x, y, v) batches, v = [is_forget, good logits, bad logits]:
    F.kl_div(log_softmax(student / T), target) with its default reduction, the mean over every entry of
    the batch (no T^2 factor)."""
    def loss(logits, y, x, v):
        target = teacher_target(v[:, 1:1 + num_classes], v[:, 1 + num_classes:], v[:, 0], T)
        # reduction="mean" of the source, written out (torch warns that its "mean" will become "batchmean")
        return F.kl_div(F.log_softmax(logits.float() / T, dim=1), target, reduction="sum") / target.numel()

    return loss


def bad_teacher(model, data, params, ctx):
    """One epoch over the forget set and a random share of retain, each sample distilled from its teacher:
    the competent one (the original) for retain, the incompetent one (a random model) for forget.

    Source: vikram2000b/bad-teaching-unlearning, `unlearn.py` (UnlearnerLoss, unlearning_step) and its
    notebook: T 1, Adam lr 1e-4, 1 epoch, batch 256, a random 30% of retain beside the whole forget set,
    shuffled together; the incompetent teacher is a freshly initialised model of the same architecture
    (`toolkit.random_teacher`), both teachers in eval mode, the student in train mode. SSD's copy of it for
    CIFAR-10 random forgetting uses the same values. Teacher logits are computed once per sample (the
    same without augmentation or dropout). Cost: a forward of both teachers and one epoch over about 37%
    of the training data (the forget tenth and 30% of retain)."""
    incompetent = toolkit.random_teacher(ctx)
    share = round(params["retain_fraction"] * len(data.retain))
    keep = torch.randperm(len(data.retain), generator=ctx.generator)[:share]
    retain = data.retain[keep]
    indices = torch.cat([data.forget, retain])
    flag = torch.cat([torch.ones(len(data.forget)), torch.zeros(len(retain))]).unsqueeze(1)
    values = torch.cat([flag, ctx.predict(data.original, indices), ctx.predict(incompetent, indices)], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    loss = bad_teacher_loss(params["T"], data.num_classes)
    for epoch in range(1, params["epochs"] + 1):
        stats = ctx.train_epoch(model, ctx.batches(indices, params["batch_size"], values=values), optimizer, loss)
        ctx.log_epoch(epoch, model, train_loss=stats["loss"], lr=params["lr"])
    return model.eval()


@hookimpl
def register_methods(register):
    register("bad-teacher", bad_teacher, family="distillation", touches="both",
             citation="Chundawat et al., AAAI 2023 (Can Bad Teaching Induce Forgetting?); "
                      "vikram2000b/bad-teaching-unlearning",
             space={
                 "epochs": Int(1, 30, default=1, help="epochs over forget and the retain share"),
                 "lr": Float(1e-6, 1e-2, default=1e-4, log=True, help="Adam learning rate"),
                 "T": Float(0.5, 10.0, default=1.0, help="temperature of both teachers and the student"),
                 "retain_fraction": Float(0.05, 1.0, default=0.3, help="share of retain distilled from the original"),
                 "batch_size": Int(16, 1024, default=256, tune=False),
             })
