"""Building blocks unlearning methods share: frozen and random teachers, distillation and relabelling
losses, paired retain/forget batches, diagonal Fisher importances, gradient-saliency masks and updates
restricted to them, adversarial examples.

Part of the plugin contract (`harness.__api_version__`, since 4): the built-in methods use exactly these
and nothing else of the harness's internals, and a third-party method may use them the same way. Every
function works on what a method receives (`model`, `data`, `ctx`): images come normalised from
`ctx.batches`, on the run's device, in the run's precision.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .data import MEAN, STD


def frozen(model: nn.Module) -> nn.Module:
    """`model` in eval mode with every parameter's requires_grad off (in place): a teacher, never trained."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy: a snapshot of a model that goes on training (SCRUB's rewind, say)."""
    return frozen(copy.deepcopy(model))


def random_teacher(ctx) -> nn.Module:
    """A freshly initialised, frozen model of the run's architecture (Bad Teacher's incompetent teacher).
    Its weights come from torch's global RNG, which the harness seeds with the split seed before the
    method runs, so the same seed gives the same teacher."""
    return frozen(ctx.new_model())


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch (no T^2 factor), in float32."""
    return F.kl_div(F.log_softmax(student_logits.float() / T, dim=1), F.log_softmax(teacher_logits.float() / T, dim=1),
                    reduction="batchmean", log_target=True)


def random_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator, *,
                  exclude_true: bool = False) -> torch.Tensor:
    """A random label per sample, uniform over every class (as Unlearn-Sparse and SalUn draw them: it may
    be the true one) or, with `exclude_true`, over the other classes. Drawn with `generator`, a CPU
    generator such as `ctx.generator`; on the CPU."""
    if exclude_true:
        shift = torch.randint(1, num_classes, labels.shape, generator=generator)
        return (labels.cpu() + shift) % num_classes
    return torch.randint(0, num_classes, labels.shape, generator=generator)


def paired_batches(ctx, retain: torch.Tensor, forget: torch.Tensor, retain_batch: int, forget_batch: int, *,
                   cycle: str = "forget") -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One retain batch and one forget batch per step, concatenated: (x, y, is_forget) with `is_forget` a
    0/1 float per sample, so one loss function can weigh the two sides (NegGrad+). The epoch ends with the
    shorter side unless `cycle` names the side that is restarted as often as needed ("forget": the epoch
    covers retain once; "none": stop with the shorter). Both sides are shuffled with `ctx.generator`."""
    if cycle not in ("forget", "retain", "none"):
        raise ValueError(f"cycle must be 'forget', 'retain' or 'none', got {cycle!r}")

    def endless(indices: torch.Tensor, size: int) -> Iterator:
        while True:
            yield from ctx.batches(indices, size, shuffle=True)

    retain_it = endless(retain, retain_batch) if cycle == "retain" else ctx.batches(retain, retain_batch)
    forget_it = endless(forget, forget_batch) if cycle == "forget" else ctx.batches(forget, forget_batch)
    for (xr, yr), (xf, yf) in zip(retain_it, forget_it):
        flag = torch.cat([torch.zeros(len(yr), device=yr.device), torch.ones(len(yf), device=yf.device)])
        yield torch.cat([xr, xf]), torch.cat([yr, yf]), flag


def diagonal_fisher(model: nn.Module, batches: Iterable, ctx) -> dict[str, torch.Tensor]:
    """Diagonal Fisher importances per parameter: the squared gradient of each batch's mean cross-entropy
    against the true labels, averaged over batches (SSD's estimate, so the batch size is part of it), in
    eval mode; parameters without a gradient get zeros. The model's weights and gradients are left as
    they were."""
    was_training = model.training
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    importance = {name: torch.zeros_like(p) for name, p in params.items()}
    n = 0
    for x, y, *_ in batches:
        model.zero_grad(set_to_none=True)
        with ctx.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                importance[name] += p.grad.detach().float() ** 2
        n += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: value / max(n, 1) for name, value in importance.items()}


def loss_gradients(model: nn.Module, batches: Iterable, ctx) -> dict[str, torch.Tensor]:
    """The gradient of the summed cross-entropy over `batches` (each batch's mean, summed), per parameter,
    in eval mode; the model is left as it was."""
    was_training = model.training
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    for x, y, *_ in batches:
        with ctx.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
    grads = {name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for name, p in params.items()}
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def top_fraction_masks(scores: Mapping[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking the `fraction` of entries with the largest scores, ranked over all tensors
    together (ties broken by position, so exactly round(fraction * total) entries are True)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().float() for n in names])
    k = int(round(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    masks, start = {}, 0
    for n in names:
        size = scores[n].numel()
        masks[n] = chosen[start:start + size].view_as(scores[n])
        start += size
    return masks


def keep_unmasked(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Callable[[], None]:
    """An `after_step` for `ctx.fit`: every parameter entry whose mask is False is put back to the value it
    has now, after each optimiser step, so momentum and weight decay cannot move it either; entries whose
    mask is True train freely. Parameters without a mask train freely."""
    params = dict(model.named_parameters())
    kept = {name: (params[name], ~mask.to(params[name].device), params[name].detach().clone())
            for name, mask in masks.items()}

    @torch.no_grad()
    def restore() -> None:
        for param, frozen_entries, original in kept.values():
            param.copy_(torch.where(frozen_entries, original, param))

    return restore


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classifier head, the last nn.Linear registered, with the module holding it and its attribute
    name (`fc` of torchvision's ResNet18), so a method can replace it."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return found[-1]


@torch.no_grad()
def add_outputs(model: nn.Module, extra: int = 1) -> nn.Linear:
    """Widen the head by `extra` outputs (Boundary Expanding's shadow class): the old rows are copied, the
    new ones initialised as nn.Linear does; returns the new head (on the old one's device and dtype)."""
    parent, name, head = last_linear(model)
    wide = nn.Linear(head.in_features, head.out_features + extra, bias=head.bias is not None)
    wide = wide.to(device=head.weight.device, dtype=head.weight.dtype)
    wide.weight[:head.out_features] = head.weight
    if head.bias is not None:
        wide.bias[:head.out_features] = head.bias
    setattr(parent, name, wide)
    return wide


@torch.no_grad()
def drop_outputs(model: nn.Module, keep: int) -> nn.Linear:
    """Narrow the head back to its first `keep` outputs (the trained rows are kept); returns the new head."""
    parent, name, head = last_linear(model)
    narrow = nn.Linear(head.in_features, keep, bias=head.bias is not None)
    narrow = narrow.to(device=head.weight.device, dtype=head.weight.dtype)
    narrow.weight.copy_(head.weight[:keep])
    if head.bias is not None:
        narrow.bias.copy_(head.bias[:keep])
    setattr(parent, name, narrow)
    return narrow


def pixel_bounds(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values of pixel 0 and 1 per channel, shaped to broadcast over a batch like `x`."""
    mean = torch.tensor(MEAN, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx, *, eps: float, steps: int = 1,
                step_size: float | None = None) -> torch.Tensor:
    """Untargeted L-inf adversarial images for normalised `x`: FGSM for one step, PGD for more. `eps` and
    `step_size` (default eps / steps) are in pixel units ([0, 1] scale, as papers state them) and are
    scaled by each channel's std; the images stay valid pixels. The model's weights and mode are left as
    they were (its BatchNorm statistics too: it is run in eval mode)."""
    was_training = model.training
    model.eval()
    std = torch.tensor(STD, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    low, high = pixel_bounds(x)
    radius = eps / std
    step = (eps / steps if step_size is None else step_size) / std
    start = x.detach().float()
    adv = start.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        with ctx.autocast():
            loss = F.cross_entropy(model(adv.to(x.dtype)).float(), y)
        grad, = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + step * grad.sign()
            adv = torch.minimum(torch.maximum(adv, start - radius), start + radius)
            adv = torch.minimum(torch.maximum(adv, low), high)
    model.train(was_training)
    return adv.detach().to(x.dtype)
