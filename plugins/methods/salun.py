"""salun: random-label unlearning restricted to the weights most salient for the forget loss (Fan et al.)."""
from __future__ import annotations

from harness import Float, Int, hookimpl, sgd_space, toolkit

from .rl import relabel


def saliency_masks(model, data, params, ctx) -> dict:
    """True for the `sparsity` share of all parameters with the largest |gradient| of the forget loss,
    ranked over every parameter together (the updated weights); False for the rest (frozen)."""
    grads = toolkit.loss_gradients(model, ctx.batches(data.forget, params["batch_size"], shuffle=False), ctx)
    return toolkit.top_fraction_masks({name: g.abs() for name, g in grads.items()}, params["sparsity"])


def salun(model, data, params, ctx):
    """A weight-saliency mask from the forget loss's gradient, then RL (`rl`) with only the salient weights
    updated: the others stay bit-identical to the original's (weights; BatchNorm's running statistics are
    buffers and follow the batches as in every method that trains).

    Source: OPTML-Group/Unlearn-Saliency `Classification/generate_mask.py` and `main_random.py --unlearn
    RL --mask_path mask/with_0.5.pt --unlearn_lr 0.013 --unlearn_epochs 10` (the README's ResNet-18
    CIFAR-10 10% command): the gradient of the forget set's cross-entropy (batch means summed over the
    batches, in eval mode; its sign does not matter after |.|), ranked over all named parameters together,
    the top `sparsity` share updated (0.5 is the paper's headline). The paper-era code only masked the
    gradient, so weight decay and momentum still moved masked weights; its fix (a6e89fd, "Fix weight decay
    #33") puts them back after every step, as here (`toolkit.keep_unmasked`). Batch 256, SGD momentum 0.9,
    weight decay 5e-4. Deviations: the mask's gradient pass is unshuffled and without augmentation (the
    source's loader is shuffled and augmented; the sum over batches does not depend on the order). Cost:
    one gradient pass over forget, then 10 RL epochs."""
    masks = saliency_masks(model, data, params, ctx)
    return relabel(model, data, params, ctx, after_step=toolkit.keep_unmasked(model, masks))


@hookimpl
def register_methods(register):
    register("salun", salun, family="relabelling", touches="both",
             citation="Fan et al., ICLR 2024 (SalUn); OPTML-Group/Unlearn-Saliency generate_mask.py + unlearn/RL.py",
             space={
                 "epochs": Int(1, 30, default=10, help="RL epochs, each a forget pass then a retain pass"),
                 "lr": Float(1e-3, 1e-1, default=0.013, log=True, help="SGD learning rate"),
                 "sparsity": Float(0.05, 0.95, default=0.5, help="share of the weights updated (the most salient)"),
                 **sgd_space(batch_size=256),
             })
