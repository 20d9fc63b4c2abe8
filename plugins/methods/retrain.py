"""retrain: exact unlearning, the reference every other method is measured against."""
from harness import Int, hookimpl


def retrain(model, data, params, ctx):
    """Train a fresh model from scratch on retain with the profile's recipe (the original's).

    The result is cached and shared with the runner's retrain reference; a cache hit is reported with
    the recorded training time, so '% of retrain' stays meaningful. `epochs` 0 means the recipe's."""
    return ctx.train_from_scratch(data.retain, epochs=params["epochs"] or None)


@hookimpl
def register_methods(register):
    register("retrain", retrain, space={
        "epochs": Int(0, 500, default=0, tune=False, help="0: the profile recipe's epochs"),
    })
