"""rl: random labels on the forget set, then the true labels on retain, every epoch (Unlearn-Sparse, SalUn)."""
from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F

from harness import Float, Int, hookimpl, sgd_space, toolkit


def relabel_loss(logits, y, x, random_label):
    """Cross-entropy against the random label carried beside each forget sample."""
    return F.cross_entropy(logits, random_label.long())


def relabel(model, data, params, ctx, after_step: Callable[[], None] | None = None):
    """The RL loop that `rl` and `salun` share: per epoch a pass over forget with a fresh random label per
    sample, then a pass over retain with the true labels, one SGD optimiser (momentum and weight decay as
    `params`) for both; `after_step` runs after every step (SalUn puts its frozen weights back there)."""
    optimizer = ctx.sgd(model, params["lr"], momentum=params["momentum"], weight_decay=params["weight_decay"])
    size = params["batch_size"]
    labels = data.labels(data.forget)
    for epoch in range(1, params["epochs"] + 1):
        random = toolkit.random_labels(labels, data.num_classes, ctx.generator)
        forget = ctx.train_epoch(model, ctx.batches(data.forget, size, values=random), optimizer, relabel_loss,
                                 after_step=after_step)
        retain = ctx.train_epoch(model, ctx.progress(ctx.batches(data.retain, size), desc=f"{ctx.name} {epoch}"),
                                 optimizer, after_step=after_step)
        ctx.log_epoch(epoch, model, forget_loss=forget["loss"], retain_loss=retain["loss"], lr=params["lr"])
    return model.eval()


def rl(model, data, params, ctx):
    """Fine-tune on forget with random labels and on retain with the true ones.

    Source: OPTML-Group/Unlearn-Saliency `Classification/unlearn/RL.py` (CIFAR-10 branch at HEAD, since
    commit f31f82e): per epoch a full pass over the forget loader with labels drawn uniformly from all
    classes (so a label may be the true one), then a full pass over retain with the true labels; SGD with
    momentum 0.9 and weight decay 5e-4, batch 256, the model in train mode. lr 0.01 and 10 epochs as
    Unlearn-Sparse's run script (`RL: --unlearn_epochs 10 --unlearn_lr 0.01`). Where the source draws a
    label per batch, here one is drawn per sample and epoch: the same distribution. The paper-era code
    concatenated forget and retain into one loader instead (the maintainers: "first on the forget data and
    then on the retain data" now). Deviation: no augmentation (the source's loaders augment). Cost: 10
    passes over all the training data, about 37% of the kit's 30-epoch retrain over retain (the source
    compares with a 182-epoch retrain)."""
    return relabel(model, data, params, ctx)


@hookimpl
def register_methods(register):
    register("rl", rl, family="relabelling", touches="both",
             citation="Golatkar et al. 2020 relabelling as in Jia et al. NeurIPS 2023 and Fan et al. ICLR 2024; "
                      "OPTML-Group/Unlearn-Saliency unlearn/RL.py",
             space={
                 "epochs": Int(1, 30, default=10, help="epochs, each a forget pass then a retain pass"),
                 "lr": Float(1e-3, 1e-1, default=0.01, log=True, help="SGD learning rate"),
                 **sgd_space(batch_size=256),
             })
