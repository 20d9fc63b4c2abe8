"""l1-sparse: fine-tune on retain with an l1 penalty on every weight that decays to zero (Jia et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl, sgd_options, sgd_space


def l1_weights(gamma: float, epochs: int) -> list[float]:
    """The penalty's weight in each epoch: gamma * (1 - e / epochs) for the 0-based epoch e, so it falls
    linearly from gamma and is gamma / epochs in the last epoch (it never reaches 0 inside the run)."""
    return [gamma * (1 - e / epochs) for e in range(epochs)]


def l1_norm(model: torch.nn.Module) -> torch.Tensor:
    """||theta||_1 over every parameter (convolutions, BatchNorm scales and shifts, the head)."""
    return sum(p.abs().sum() for p in model.parameters())


def l1_sparse(model, data, params, ctx):
    """Fine-tune on retain minimising CE + gamma_t * ||theta||_1.

    Source: OPTML-Group/Unlearn-Sparse `unlearn/FT.py` `FT_l1` (`FT_prune` calls it): the penalty covers
    all parameters (`torch.linalg.norm(torch.cat([p.view(-1) ...]), ord=1)`) and its weight is
    `alpha * (1 - epoch / unlearn_epochs)` per epoch (`l1_weights`); SGD with momentum 0.9, weight decay
    5e-4, batch 256, a constant lr in practice. lr 0.01 and 10 epochs as their README; gamma 1e-4 is the
    only value in their code (the old run script, `FT_prune: --alpha 0.0001`): the paper's CIFAR-10 value
    could not be read. Too large a gamma wrecks test accuracy (their table). Deviation: no augmentation
    (the source's loaders augment). Cost: 10 epochs over retain, a third of the kit's retrain."""
    weight = [0.0]  # the current epoch's penalty weight, a number the loss reads (see ctx.fit on CUDA graphs)
    schedule = l1_weights(params["gamma"], params["epochs"])

    def before_epoch(epoch: int) -> None:
        weight[0] = schedule[epoch - 1]

    def loss(logits, y, x):
        return F.cross_entropy(logits, y) + weight[0] * l1_norm(model)

    return ctx.fit(model, data.retain, epochs=params["epochs"], lr=params["lr"], schedule="constant", loss_fn=loss,
                   before_epoch=before_epoch, phase="finetune", **sgd_options(params))


@hookimpl
def register_methods(register):
    register("l1-sparse", l1_sparse, family="fine-tuning", touches="retain",
             citation="Jia et al., NeurIPS 2023 (Model Sparsity Can Simplify Machine Unlearning); "
                      "OPTML-Group/Unlearn-Sparse unlearn/FT.py FT_l1",
             space={
                 "epochs": Int(1, 30, default=10, help="fine-tuning epochs on retain"),
                 "lr": Float(1e-3, 1e-1, default=0.01, log=True, help="SGD learning rate"),
                 "gamma": Float(1e-6, 1e-3, default=1e-4, log=True, help="the l1 weight of the first epoch"),
                 **sgd_space(batch_size=256),
             })
