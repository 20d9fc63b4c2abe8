"""boundary-shrink and boundary-expand: move the forget samples across the decision boundary, to their
nearest wrong class or to a temporary shadow class (Chen et al., Boundary Unlearning)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Float, Int, hookimpl, sgd_options, sgd_space, toolkit


@torch.no_grad()
def _predict(model, x, ctx):
    with ctx.autocast():
        return model(x).float().argmax(1)


def shrink_labels(original, data, params, ctx) -> torch.Tensor:
    """Per forget sample, the class the original predicts for its FGSM image (an untargeted step of `eps`
    pixel units on the true label): the nearest wrong class, or the true one where the step did not cross."""
    labels = []
    for x, y in ctx.batches(data.forget, params["batch_size"], shuffle=False):
        adv = toolkit.adversarial(original, x, y, ctx, eps=params["eps"], steps=1)
        labels.append(_predict(original, adv, ctx).cpu())
    return torch.cat(labels)


def boundary_shrink(model, data, params, ctx):
    """Fine-tune on the forget images relabelled to their nearest wrong class (Boundary Shrink).

    Source: the authors' code (mirrored as TY-LEE-KR/Boundary-Unlearning-Code, `boundary_unlearning.py`)
    and SalUn's re-implementation (`Classification/unlearn/boundary_sh.py`): FGSM without random start,
    bound 0.1 in pixel units ("hard coding in the paper"), the label the frozen original predicts for the
    adversarial image; SGD lr 1e-5, momentum 0.9, no weight decay, 10 epochs over the forget set only,
    batch 64 (the authors'; SalUn: 256, weight decay 5e-4). The source recomputes the labels every step
    from augmented images; without augmentation they are computed once. Designed for class removal;
    reported here on random forget sets too."""
    labels = shrink_labels(data.original, data, params, ctx)
    return ctx.fit(model, data.forget, epochs=params["epochs"], lr=params["lr"], schedule="constant",
                   values=labels, loss_fn=lambda logits, y, x, v: F.cross_entropy(logits, v.long()), phase="shrink",
                   **sgd_options(params))


def boundary_expand(model, data, params, ctx):
    """Add a shadow class, fine-tune on the forget images labelled with it, remove it (Boundary Expanding).

    Source: the authors' code (`boundary_unlearning.py`, expanding): the head widened by one output (the
    old rows copied, the new one freshly initialised), the widened model fine-tuned on the forget set with
    the shadow label, SGD lr 1e-5, momentum 0.9, no weight decay, 10 epochs, batch 64, then the first
    num_classes rows copied back into a head of the original width. SalUn's re-implementation never
    removes the shadow output; the authors' does, and so does this one (the harness scores a model of the
    original architecture)."""
    num_classes = data.num_classes
    toolkit.add_outputs(model, 1)
    shadow = torch.full((len(data.forget),), num_classes)
    ctx.fit(model, data.forget, epochs=params["epochs"], lr=params["lr"], schedule="constant", values=shadow,
            loss_fn=lambda logits, y, x, v: F.cross_entropy(logits, v.long()), phase="expand", **sgd_options(params))
    toolkit.drop_outputs(model, num_classes)
    return model.eval()


BOUNDARY = "Chen et al., CVPR 2023 (Boundary Unlearning); authors' code, mirrored as TY-LEE-KR/Boundary-Unlearning-Code"


@hookimpl
def register_methods(register):
    common = {"epochs": Int(1, 30, default=10, help="fine-tuning epochs on the forget set"),
              "lr": Float(1e-8, 1e-2, default=1e-5, log=True, help="SGD learning rate"),
              **sgd_space(batch_size=64, weight_decay=0.0)}
    register("boundary-shrink", boundary_shrink, family="boundary", touches="forget", citation=BOUNDARY,
             space={**common, "eps": Float(0.001, 0.5, default=0.1, help="FGSM bound in pixel units ([0, 1] scale)")})
    register("boundary-expand", boundary_expand, family="boundary", touches="forget", citation=BOUNDARY, space=common)
