"""ga: gradient ascent on the forget set (NegGrad), the baseline of Unlearn-Sparse and SalUn."""
from __future__ import annotations

import torch.nn.functional as F

from harness import Float, Int, hookimpl, sgd_options, sgd_space


def ascent_loss(logits, y, x):
    """-CE: descending it ascends the forget set's loss."""
    return -F.cross_entropy(logits, y)


def ga(model, data, params, ctx):
    """Ascend the cross-entropy on the forget set with SGD, nothing else.

    Source: OPTML-Group/Unlearn-Sparse `unlearn/GA.py` (as in SalUn `Classification/unlearn/GA.py`): one
    SGD step per forget batch on `-CE`, momentum 0.9, weight decay 5e-4, a constant lr (their MultiStepLR
    milestones 91/136 never trigger in 5 epochs), batch 256, the model in train mode; no retain data, no
    clipping, no early stop. Epochs 5 as their README. The README's lr 1e-4 is the class-wise value; for
    random forgetting the maintainers grid-search [1e-5, 0.1] and advise 5e-4 to 1e-3 (Unlearn-Sparse
    issue #5, SalUn issue #8): the default is 5e-4. Deviation: no augmentation (their loaders augment
    forget batches with crops and flips; the harness's methods train on plain images). The objective is
    unbounded: logits grow large on purpose, and a model that diverges fails its own cell."""
    return ctx.fit(model, data.forget, epochs=params["epochs"], lr=params["lr"], schedule="constant",
                   loss_fn=ascent_loss, phase="ascent", **sgd_options(params))


@hookimpl
def register_methods(register):
    register("ga", ga, family="ascent", touches="forget",
             citation="the baseline of Jia et al. NeurIPS 2023 and Fan et al. ICLR 2024; "
                      "OPTML-Group/Unlearn-Sparse unlearn/GA.py",
             space={
                 "epochs": Int(1, 30, default=5, help="ascent epochs over the forget set"),
                 "lr": Float(1e-6, 1e-1, default=5e-4, log=True,
                             help="SGD learning rate (the authors' grid: 1e-5-0.1)"),
                 **sgd_space(batch_size=256),
             })
