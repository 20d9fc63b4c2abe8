"""simple: fine-tune on the retain set only (the paper's baseline; the starting kit's example)."""
from harness import Float, Int, hookimpl


def simple(model, data, params, ctx):
    """Fine-tune on retain with cross-entropy, SGD and a cosine schedule stepped per epoch.

    Source: the NeurIPS 2023 unlearning starting kit (5 epochs, lr 0.1, batch 128). Forgetting comes
    only from catastrophic interference, which is why the paper finds it leaves the forget set
    better predicted than validation."""
    return ctx.fit(model, data.retain, epochs=params["epochs"], lr=params["lr"], batch_size=params["batch_size"],
                   momentum=params["momentum"], weight_decay=params["weight_decay"], schedule="cosine")


@hookimpl
def register_methods(register):
    register("simple", simple, space={
        "epochs": Int(1, 30, default=5, help="fine-tuning epochs on retain"),
        "lr": Float(1e-4, 0.5, default=0.1, log=True),
        "batch_size": Int(16, 512, default=128, tune=False),
        "momentum": Float(0.0, 0.99, default=0.9, tune=False),
        "weight_decay": Float(0.0, 1e-2, default=5e-4, tune=False),
    })
