"""ssd: dampen the weights far more important to the forget set than to the training data (Foster et al.)."""
from __future__ import annotations

import torch

from harness import Float, Int, hookimpl, toolkit


@torch.no_grad()
def dampen(model, full: dict, forget: dict, alpha: float, lam: float) -> dict:
    """theta_i <- theta_i * min(lam * I_D,i / I_f,i, 1) wherever I_f,i > alpha * I_D,i; every other weight
    unchanged. Returns the boolean selection per parameter."""
    selected = {}
    for name, param in model.named_parameters():
        chosen = forget[name] > alpha * full[name]
        safe = torch.where(chosen, forget[name], torch.ones_like(forget[name]))  # no division by 0 elsewhere
        factor = torch.clamp(lam * full[name] / safe, max=1.0)
        param.mul_(torch.where(chosen, factor, torch.ones_like(factor)).to(param.dtype))
        selected[name] = chosen
    return selected


def ssd(model, data, params, ctx):
    """Diagonal Fisher importances over all training data (I_D) and over forget (I_f), then dampening of the
    selected weights. No training: one gradient pass over the training data and one over forget.

    Source: if-loops/selective-synaptic-dampening `src/ssd.py` (ParameterPerturber `calc_importance`,
    `modify_weight`) and `src/forget_random_main.py`: importances are the squared gradient of each batch's
    mean cross-entropy, summed and divided by the number of batches, in eval mode, with unshuffled batches
    of 128 and no augmentation, I_D over retain and forget together; every named parameter (convolutions,
    BatchNorm weight and bias, the head; not BatchNorm's running statistics) is dampened by
    min(lambda * I_D / I_f, 1) where I_f > alpha * I_D. selection weighting alpha = 10 and dampening
    constant lambda = 1 are the repository's ResNet-18 values (`forget_random_main.py`, whose random
    setting forgets 100 samples). It has no epochs: with an epoch budget it runs once."""
    size = params["batch_size"]
    train = torch.cat([data.retain, data.forget])
    full = toolkit.diagonal_fisher(model, ctx.batches(train, size, shuffle=False), ctx)
    forget = toolkit.diagonal_fisher(model, ctx.batches(data.forget, size, shuffle=False), ctx)
    selected = dampen(model, full, forget, params["alpha"], params["lambda"])
    ctx.log_epoch(1, model, dampened_share=sum(float(s.sum()) for s in selected.values())
                  / sum(s.numel() for s in selected.values()))
    return model.eval()


@hookimpl
def register_methods(register):
    register("ssd", ssd, family="dampening", touches="both",
             citation="Foster et al., AAAI 2024 (Selective Synaptic Dampening); if-loops/selective-synaptic-dampening",
             space={
                 "alpha": Float(0.1, 100.0, default=10.0, log=True, help="selection weighting: dampen where "
                                "I_f > alpha * I_D"),
                 "lambda": Float(0.1, 10.0, default=1.0, log=True, help="dampening constant"),
                 "batch_size": Int(16, 1024, default=128, tune=False, help="the importances' batch (part of the "
                                   "estimate)"),
             })
