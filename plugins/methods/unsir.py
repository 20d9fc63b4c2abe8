"""unsir: learn error-maximising noise for the forget samples' labels, impair on it with a little retain,
repair on retain (Tarun et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl


def error_maximising_noise(model, labels: torch.Tensor, like: torch.Tensor, params, ctx) -> torch.Tensor:
    """One learnable noise image per label, each trained to maximise CE(model(noise), label) minus
    `reg` times its mean squared norm (Adam, `noise_lr`, `noise_steps` steps per chunk of 256), with the
    model in eval mode and its weights untouched. `like`: a batch from ctx.batches, whose device and
    memory layout the noise takes."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(labels), 256):
        y = labels[start:start + 256].to(like.device)
        noise = torch.randn((len(y), *like.shape[1:]), device=like.device).contiguous(
            memory_format=torch.channels_last if like.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format).requires_grad_(True)
        optimizer = torch.optim.Adam([noise], lr=params["noise_lr"])
        for _ in range(params["noise_steps"]):
            optimizer.zero_grad(set_to_none=True)
            with ctx.autocast():
                ce = F.cross_entropy(model(noise).float(), y)
            loss = -ce + params["reg"] * noise.float().pow(2).sum(dim=(1, 2, 3)).mean()
            loss.backward(inputs=[noise])
            optimizer.step()
        chunks.append(noise.detach())
    model.train(was_training)
    model.zero_grad(set_to_none=True)
    return torch.cat(chunks)


def _epoch(model, x: torch.Tensor, y: torch.Tensor, optimizer, batch_size: int, ctx) -> float:
    """One shuffled pass over tensors already on the device (noise and retain images together)."""
    order = torch.randperm(len(y), generator=ctx.generator).to(y.device)
    batches = ((x[order[i:i + batch_size]], y[order[i:i + batch_size]]) for i in range(0, len(y), batch_size))
    return ctx.train_epoch(model, batches, optimizer)["loss"]


def unsir(model, data, params, ctx):
    """Impair: one epoch on error-maximising noise (one image per forget sample, with its label) together
    with a share of retain, Adam lr 0.02; repair: one epoch on that share of retain, Adam lr 0.01.

    Source: vikram2000b/Fast-Machine-Unlearning (`Machine Unlearning.ipynb`), the paper's code, for class
    removal: noise tensors trained with Adam lr 0.1 for 40 steps on -CE + 0.1 * mean(sum(noise^2)); impair
    Adam lr 0.02 and repair Adam lr 0.01, one epoch each, batch 256, on 1,000 retain samples per class (a
    fifth of CIFAR-10's), the model in train mode. For random forgetting no author variant exists (SUPREME
    refuses it): here the noise is one image per forget sample, labelled as that sample, so the classes
    are impaired in proportion to the forget set (the original's per-class noise, counted per sample; its
    notebook bug that kept 3 images per batch is not reproduced). The noise is optimised with the model in
    eval mode, so its BatchNorm statistics are not changed by it; retain_fraction 0.2 stands for the
    original's 1,000 per class. Designed for class removal: expect a weak effect on random forget sets."""
    share = round(params["retain_fraction"] * len(data.retain))
    keep = torch.randperm(len(data.retain), generator=ctx.generator)[:share]
    retain = data.retain[keep]
    x_retain, y_retain = map(torch.cat, zip(*ctx.batches(retain, 512, shuffle=False)))
    noise = error_maximising_noise(model, data.labels(data.forget), x_retain, params, ctx)
    y_noise = data.labels(data.forget).to(y_retain.device)
    impair = torch.optim.Adam(model.parameters(), lr=params["impair_lr"])
    for _ in range(params["impair_epochs"]):
        impair_loss = _epoch(model, torch.cat([noise.to(x_retain.dtype), x_retain]), torch.cat([y_noise, y_retain]),
                             impair, params["batch_size"], ctx)
    repair = torch.optim.Adam(model.parameters(), lr=params["lr"])
    for epoch in range(1, params["epochs"] + 1):
        repair_loss = ctx.train_epoch(model, ctx.batches(retain, params["batch_size"]), repair)["loss"]
        ctx.log_epoch(epoch, model, impair_loss=impair_loss, repair_loss=repair_loss, lr=params["lr"])
    return model.eval()


@hookimpl
def register_methods(register):
    register("unsir", unsir, family="noise", touches="both",
             citation="Tarun et al., IEEE TNNLS 2023 (Fast Yet Effective Machine Unlearning); "
                      "vikram2000b/Fast-Machine-Unlearning",
             space={
                 "epochs": Int(1, 30, default=1, help="repair epochs on the retain share"),
                 "lr": Float(1e-5, 0.1, default=0.01, log=True, help="Adam learning rate of the repair"),
                 "impair_epochs": Int(1, 5, default=1, help="impair epochs on noise and the retain share"),
                 "impair_lr": Float(1e-5, 0.1, default=0.02, log=True, help="Adam learning rate of the impair"),
                 "noise_steps": Int(1, 200, default=40, tune=False, help="Adam steps per chunk of noise"),
                 "noise_lr": Float(1e-3, 1.0, default=0.1, log=True, tune=False),
                 "reg": Float(0.0, 1.0, default=0.1, tune=False, help="weight of the noise's squared norm"),
                 "retain_fraction": Float(0.05, 1.0, default=0.2, help="share of retain used in impair and repair"),
                 "batch_size": Int(16, 1024, default=256, tune=False),
             })
