"""neggrad-plus: descend the retain loss and ascend the forget loss together (NegGrad+, Kurmanji et al.)."""
from __future__ import annotations

import torch.nn.functional as F

from harness import Float, Int, hookimpl, toolkit


def neggrad_plus_loss(alpha: float):
    """alpha * CE(retain rows) - (1 - alpha) * CE(forget rows) of a paired batch, each side's batch mean
    (the rows are told apart by the 0/1 flag `toolkit.paired_batches` adds)."""
    def loss(logits, y, x, is_forget):
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        retain = (ce * (1 - is_forget)).sum() / (1 - is_forget).sum().clamp(min=1)
        forget = (ce * is_forget).sum() / is_forget.sum().clamp(min=1)
        return alpha * retain - (1 - alpha) * forget

    return loss


def neggrad_plus(model, data, params, ctx):
    """Each step one retain batch and one forget batch, loss alpha * CE_r - (1 - alpha) * CE_f.

    Source: meghdadk/SCRUB `thirdparty/repdistiller/helper/loops.py` `train_negrad`: `zip(train_loader,
    cycle(delete_loader))`, so an epoch covers retain once and the forget loader is restarted as often as
    needed; the model in train mode; SGD without momentum or weight decay (`negative_grad()` in
    MIA_experiments.ipynb). Defaults are that notebook's, the repository's ResNet / CIFAR-10 experiment
    (alpha 0.9999, lr 0.01, 5 epochs, retain batch 32, forget batch 16); it forgets 100 samples of one
    class there, and the small-scale notebook uses alpha 0.95. No CIFAR-10 random-forgetting setting
    exists in the source: tune alpha over [0.5, 0.9999]. With alpha too small it degenerates into
    gradient ascent; the retain term is what keeps it bounded. Deviation: `itertools.cycle` replays the
    forget batches of its first pass within an epoch; here each pass over forget is reshuffled; and no
    augmentation (the source's loaders augment)."""
    optimizer = ctx.sgd(model, params["lr"], momentum=params["momentum"], weight_decay=params["weight_decay"])
    loss = neggrad_plus_loss(params["alpha"])
    for epoch in range(1, params["epochs"] + 1):
        batches = toolkit.paired_batches(ctx, data.retain, data.forget, params["retain_batch_size"],
                                         params["forget_batch_size"], cycle="forget")
        stats = ctx.train_epoch(model, ctx.progress(batches, desc=f"{ctx.name} epoch {epoch}"), optimizer, loss)
        ctx.log_epoch(epoch, model, train_loss=stats["loss"], lr=params["lr"])
    return model.eval()


@hookimpl
def register_methods(register):
    register("neggrad-plus", neggrad_plus, family="ascent", touches="both",
             citation="Kurmanji et al., NeurIPS 2023 (Towards Unbounded Machine Unlearning); meghdadk/SCRUB "
                      "train_negrad",
             space={
                 "epochs": Int(1, 30, default=5, help="epochs, each one pass over retain"),
                 "lr": Float(1e-4, 1e-1, default=0.01, log=True, help="SGD learning rate"),
                 "alpha": Float(0.5, 0.9999, default=0.9999,
                                help="weight of the retain loss; 1 - alpha ascends forget"),
                 "retain_batch_size": Int(8, 1024, default=32, tune=False),
                 "forget_batch_size": Int(4, 1024, default=16, tune=False),
                 "momentum": Float(0.0, 0.99, default=0.0, tune=False, help="the source: none"),
                 "weight_decay": Float(0.0, 1e-2, default=0.0, tune=False, help="the source: none"),
             })
