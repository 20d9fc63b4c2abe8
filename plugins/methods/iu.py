"""iu: influence unlearning, one Newton-like step away from the forget set's gradient (Koh & Liang 2017;
the WoodFisher form of Jia et al., NeurIPS 2023), no training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl


def flat_gradient(model, loss) -> torch.Tensor:
    """d loss / d theta over every trainable parameter, as one float32 vector (the parameters' order)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.reshape(-1).float() for g in torch.autograd.grad(loss, params)])


def summed_gradient(model, batches, ctx) -> tuple[torch.Tensor, int]:
    """The sum of the per-image gradients of the cross-entropy (each batch's mean times its size), and
    the number of images."""
    total, n = None, 0
    for x, y, *_ in batches:
        with ctx.autocast():
            logits = model(x).float()
        g = flat_gradient(model, F.cross_entropy(logits, y)) * len(y)
        total, n = (g if total is None else total + g), n + len(y)
    return total, n


def woodfisher(model, samples, v: torch.Tensor, n: int, ctx) -> torch.Tensor:
    """The authors' recursion for an inverse-Fisher-vector product: k starts at v; for each per-image
    gradient g after the first, with o the first one's, k -= (k.g / (n + o.g)) o and o -= (o.g / (n + o.g)) o.

    As written, o is only ever rescaled, so k moves along the first retain gradient alone: this is the
    code the published IU numbers come from, kept as it is (see the doc page)."""
    k, o = v.clone(), None
    for x, y, *_ in samples:
        with ctx.autocast():
            logits = model(x).float()
        g = flat_gradient(model, F.cross_entropy(logits, y))
        if o is None:
            o = g.clone()
            continue
        dot = torch.dot(o, g)
        k -= (torch.dot(k, g) / (n + dot)) * o
        o -= (dot / (n + dot)) * o
    return k


def step_direction(forget_sum, n_forget, retain_sum, n_retain) -> torch.Tensor:
    """v = g_f / (n_f + n_r) - g_r * n_f / ((n_f + n_r) n_r), g_f and g_r the summed per-image gradients."""
    total = n_forget + n_retain
    return forget_sum / total - retain_sum * (n_forget / (total * n_retain))


@torch.no_grad()
def apply_step(model, step: torch.Tensor) -> None:
    offset = 0
    for p in (p for p in model.parameters() if p.requires_grad):
        p += step[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()


def iu(model, data, params, ctx):
    """One influence step theta += alpha * H^-1 v, H^-1 v by the WoodFisher recursion on retain images.

    v is the forget gradient minus the retain gradient (each summed over images and scaled as the source
    does); the recursion runs over single retain images. No training, no epochs (with an epoch budget it
    runs once).

    Source: OPTML-Group/Unlearn-Sparse `unlearn/Wfisher.py` (`Wfisher`, the second `woodfisher`): the model
    in eval mode; forget and retain gradients summed over unshuffled batches of 256; the recursion over the
    first N + 2 retain images in order, one image at a time (its loop returns after `idx > N`), with the
    constant N = 1000 in the denominators (not the retain size); theta += alpha * k. alpha = 0.2 is
    `arg_parser.py`'s default (the README leaves it to the user). Deviations: none in the arithmetic;
    gradients are float32 whatever the profile's autocast. Where the WoodFisher paper keeps the whole
    inverse-Fisher estimate, this recursion rescales one vector (see woodfisher), so the step is mostly
    alpha * v: the code's behaviour, which the SalUn and sparsity papers' IU rows measured."""
    model.eval()
    size = params["batch_size"]
    forget_sum, n_f = summed_gradient(model, ctx.batches(data.forget, size, shuffle=False), ctx)
    retain_sum, n_r = summed_gradient(model, ctx.batches(data.retain, size, shuffle=False), ctx)
    v = step_direction(forget_sum, n_f, retain_sum, n_r)
    first = data.retain[:params["samples"] + 2]
    k = woodfisher(model, ctx.batches(first, 1, shuffle=False), v, params["samples"], ctx)
    if not torch.isfinite(k).all():
        raise FloatingPointError("the influence step is not finite (the recursion's denominator reached 0)")
    apply_step(model, params["alpha"] * k)
    ctx.log_epoch(1, model, step_norm=float(params["alpha"] * k.norm()), direction_norm=float(v.norm()))
    return model.eval()


@hookimpl
def register_methods(register):
    register("iu", iu, family="influence", touches="both",
             citation="Koh & Liang, ICML 2017; WoodFisher form of Jia et al., NeurIPS 2023 (Model Sparsity Can "
                      "Simplify Machine Unlearning); OPTML-Group/Unlearn-Sparse unlearn/Wfisher.py",
             space={
                 "alpha": Float(1e-3, 100.0, default=0.2, log=True, help="the step's scale"),
                 "samples": Int(1, 100000, default=1000, tune=False,
                                help="N: retain images in the recursion (N + 2 are read) and its denominator"),
                 "batch_size": Int(16, 1024, default=256, tune=False,
                                   help="batch of the summed forget and retain gradients (BatchNorm is in eval "
                                        "mode: the sum does not depend on it beyond rounding)"),
             })
