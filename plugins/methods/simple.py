"""simple: fine-tune on the retain set only (the paper's baseline; the starting kit's example)."""
from harness import Float, Int, hookimpl, sgd_options, sgd_space


def simple(model, data, params, ctx):
    """Fine-tune on retain with cross-entropy, SGD and a cosine schedule stepped per epoch.

    Source: the NeurIPS 2023 unlearning starting kit (5 epochs, lr 0.1, batch 128). Forgetting comes
    only from catastrophic interference, which is why the paper finds it leaves the forget set
    better predicted than validation."""
    return ctx.fit(model, data.retain, epochs=params["epochs"], lr=params["lr"], schedule="cosine",
                   **sgd_options(params))


@hookimpl
def register_methods(register):
    register("simple", simple, family="fine-tuning", touches="retain",
             citation="NeurIPS 2023 Machine Unlearning starting kit (the paper's baseline)",
             space={
        "epochs": Int(1, 30, default=5, help="fine-tuning epochs on retain"),
        "lr": Float(1e-4, 0.5, default=0.1, log=True),
        **sgd_space(batch_size=128),
    })
