"""scrub: a student that moves away from its teacher on forget and stays with it on retain (Kurmanji et al.)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Choice, Float, Int, hookimpl, toolkit

LR_DECAY_EPOCHS = (3, 5, 9)  # the source's `lr_decay_epochs`: the lr is divided by 10 after each


def lr_at(epoch: int, lr: float) -> float:
    """The source's `adjust_learning_rate`: lr * 0.1 for every decay epoch below the 1-based `epoch`."""
    return lr * 0.1 ** sum(epoch > e for e in LR_DECAY_EPOCHS)


def kl(student, teacher, T: float):
    """The source's DistillKL: KL(teacher || student) at temperature T, per sample, times T^2."""
    return toolkit.kl_to_teacher(student, teacher, T) * T * T


def scrub_pass(model, indices, teacher_logits, direction: str, params, ctx, optimizer) -> float:
    """One epoch over `indices`: "max" ascends the KL to the teacher (forget), "min" descends
    gamma * CE + alpha * KL (retain). Returns the mean loss."""
    T, alpha, gamma = params["T"], params["alpha"], params["gamma"]
    if direction == "max":
        size = params["forget_batch_size"]

        def loss(s, y, x, t):
            return -kl(s, t, T)
    else:
        size = params["retain_batch_size"]

        def loss(s, y, x, t):
            return gamma * F.cross_entropy(s, y) + alpha * kl(s, t, T)

    batches = ctx.batches(indices, size, values=teacher_logits)
    return ctx.train_epoch(model, batches, optimizer, loss)["loss"]


def error(model, indices, data, ctx) -> float:
    """1 - accuracy on `indices` (all of them, in eval mode)."""
    return 1.0 - float((ctx.predict(model, indices).argmax(1) == data.labels(indices)).float().mean())


def rewind_index(forget_errors: list[float], validation_error: float) -> int:
    """SCRUB+R's choice among the checkpoints after each epoch (index i: after epoch i + 1): the one whose
    forget error is closest to the final model's error on held-out data, so the forget set looks neither
    more nor less familiar than unseen data; the earliest on a tie."""
    return min(range(len(forget_errors)), key=lambda i: (abs(forget_errors[i] - validation_error), i))


def scrub(model, data, params, ctx):
    """Each epoch a max epoch on forget (the first `msteps` epochs only), then a min epoch on retain; with
    `rewind`, the checkpoint whose forget error matches the final validation error is returned (SCRUB+R).

    Source: meghdadk/SCRUB, `thirdparty/repdistiller/helper/loops.py` `train_distill` and the schedule of
    MIA_experiments.ipynb (the repository's ResNet / CIFAR-10 privacy experiment, with SCRUB+R): teacher =
    the frozen original, student initialised at it; max step loss -KL, min step gamma * CE + alpha * KL
    (DistillKL: KL(teacher || student) * T^2, per sample); one SGD optimiser (lr 5e-4, momentum 0.9,
    weight decay 5e-4) for both, divided by 10 after epochs 3, 5 and 9; T 4, gamma 1, alpha 0.5,
    msteps 3, 5 epochs, forget batch 16, retain batch 32. That experiment forgets 100 samples of one
    class; the large-scale CIFAR-10 class-removal settings are gamma 0.99, alpha 0.001, msteps 2, 3
    epochs, batches 512/256 (no random-forgetting setting exists in the source). Rewind as the notebook:
    the forget error after each epoch against the final model's validation error (there the validation
    samples of the forget classes, here the whole validation split, as for a random forget set); the
    notebook also measures the model before epoch 1, but choosing it fails there (it saves no step-0
    checkpoint), so the original is no candidate here either. Choices: msteps above epochs is capped at
    epochs; teacher logits are computed once per set (the same without augmentation); the early code's
    proximal smoothing term (removed in the repository in 2024) is left out."""
    teacher = data.original
    optimizer = ctx.sgd(model, params["lr"], momentum=params["momentum"], weight_decay=params["weight_decay"])
    forget_teacher, retain_teacher = ctx.predict(teacher, data.forget), ctx.predict(teacher, data.retain)
    checkpoints, forget_errors = [], []
    for epoch in range(1, params["epochs"] + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, params["lr"])
        extra = {}
        if epoch <= params["msteps"]:
            extra["max_loss"] = scrub_pass(model, data.forget, forget_teacher, "max", params, ctx, optimizer)
        extra["min_loss"] = scrub_pass(model, data.retain, retain_teacher, "min", params, ctx, optimizer)
        if params["rewind"]:
            checkpoints.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            forget_errors.append(error(model, data.forget, data, ctx))
        ctx.log_epoch(epoch, model, lr=optimizer.param_groups[0]["lr"], **extra)
    if params["rewind"]:
        chosen = rewind_index(forget_errors, error(model, data.validation, data, ctx))
        with torch.no_grad():
            model.load_state_dict(checkpoints[chosen])
    return model.eval()


def check(params) -> None:
    if params["rewind"] and params["msteps"] == 0:
        raise ValueError("rewind=True chooses how far SCRUB's max steps went (the epoch whose forget error matches "
                         "the validation error), and msteps=0 takes none: give msteps >= 1 or rewind=False")


@hookimpl
def register_methods(register):
    register("scrub", scrub, family="distillation", touches="both", check=check,
             citation="Kurmanji et al., NeurIPS 2023 (Towards Unbounded Machine Unlearning); meghdadk/SCRUB",
             space={
                 "epochs": Int(1, 30, default=5, help="epochs, each a max epoch (the first msteps) and a min epoch"),
                 "msteps": Int(0, 10, default=3,
                               help="epochs that begin with a max epoch on forget (capped at epochs)"),
                 "lr": Float(1e-5, 1e-2, default=5e-4, log=True, help="SGD learning rate before its decays"),
                 "T": Float(0.5, 10.0, default=4.0, help="distillation temperature"),
                 "alpha": Float(0.0, 1.0, default=0.5, help="weight of the KL in the min step"),
                 "gamma": Float(0.0, 2.0, default=1.0, help="weight of the cross-entropy in the min step"),
                 "rewind": Choice([True, False], default=True, help="SCRUB+R: return the checkpoint whose forget "
                                  "error is closest to the validation error"),
                 "forget_batch_size": Int(4, 1024, default=16, tune=False),
                 "retain_batch_size": Int(8, 1024, default=32, tune=False),
                 "momentum": Float(0.0, 0.99, default=0.9, tune=False),
                 "weight_decay": Float(0.0, 1e-2, default=5e-4, tune=False),
             })
