"""fisher: Fisher forgetting, Gaussian noise scaled by the inverse Fisher information of the retain set
(Golatkar et al., CVPR 2020), no training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl


def fisher_diagonal(model, batches, num_classes: int, ctx) -> dict[str, torch.Tensor]:
    """Per parameter entry: the mean over batches of sum_y mean_b(p(y|x)) * (d CE_b(y) / d theta)^2, CE_b(y)
    the batch's mean cross-entropy against the label y for every image (the expected Fisher, one class at a
    time, at batch level as the source computes it). Eval mode; the model is not changed."""
    was_training = model.training
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    n = 0
    for x, *_ in batches:
        with ctx.autocast():
            logits = model(x).float()
        prob = logits.softmax(-1).detach()
        for y in range(num_classes):
            target = torch.full((len(x),), y, dtype=torch.long, device=x.device)
            grads = torch.autograd.grad(F.cross_entropy(logits, target), list(params.values()), retain_graph=True)
            weight = prob[:, y].mean()
            for (name, _), g in zip(params.items(), grads):
                total[name] += weight * g.float() ** 2
        n += 1
    model.train(was_training)
    return {name: value / max(n, 1) for name, value in total.items()}


def noise_std(param: torch.Tensor, fisher: torch.Tensor, alpha: float, num_classes: int) -> torch.Tensor:
    """The source's standard deviation for one parameter: var = alpha * min(1 / (F + 1e-8), 1e3) (1e2 for
    the head, whose first dimension is the class count), averaged over dimension 1 for tensors of 2 or
    more dimensions, then times 10 for the head and for other 1-d parameters (BatchNorm)."""
    head = param.shape[0] == num_classes
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e2 if head else 1e3) * alpha
    if param.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(param)
    if head or param.ndim == 1:
        var = var * 10
    return var.sqrt()


def fisher(model, data, params, ctx):
    """theta <- theta + sqrt(var) * N(0, I), var from the inverse diagonal Fisher of the retain set.

    Source: OPTML-Group/Unlearn-Sparse `unlearn/fisher.py` `fisher_new` (the FF of its README), with
    `hessian` and `get_mean_var`: the Fisher over retain in unshuffled batches of 32 in eval mode, each
    class's batch-mean cross-entropy weighted by the batch's mean probability of that class; the variance
    clamped, averaged over dimension 1 of multi-dimensional weights and scaled for the head and BatchNorm
    as in noise_std; new weights = old + sqrt(var) * standard normal noise. The class-removal branch
    (zeroing a forgotten class's head row) does not apply to random forgetting. alpha: the code's default
    (0.2) is shared with other methods and, with variances up to 1e3 * alpha, replaces the weights with
    noise; the reference range for ResNet-18 is 1e-8 to 1e-6, and the default here is 1e-7 (choose it
    with `unlearn tune`). The noise comes from the run's seeded generator. No epochs."""
    k = data.num_classes
    importance = fisher_diagonal(model, ctx.batches(data.retain, params["batch_size"], shuffle=False), k, ctx)
    stds = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in importance:
                continue
            std = noise_std(p, importance[name], params["alpha"], k)
            noise = torch.randn(p.shape, generator=ctx.generator).to(p.device)
            p += (std * noise).to(p.dtype)
            stds.append(std.reshape(-1))
    every = torch.cat(stds)
    ctx.log_epoch(1, model, noise_std_mean=float(every.mean()), noise_std_max=float(every.max()))
    return model.eval()


@hookimpl
def register_methods(register):
    register("fisher", fisher, family="noise", touches="retain",
             citation="Golatkar et al., CVPR 2020 (Eternal Sunshine of the Spotless Net); "
                      "OPTML-Group/Unlearn-Sparse unlearn/fisher.py fisher_new",
             space={
                 "alpha": Float(1e-10, 1e-2, default=1e-7, log=True, help="noise scale: variance = alpha / Fisher "
                                "(clamped)"),
                 "batch_size": Int(8, 1024, default=32, tune=False,
                                   help="the Fisher's batch (part of the estimate: gradients of batch means)"),
             })
