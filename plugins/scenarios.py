"""Built-in forget-set builders."""
import torch

from harness import Choice, hookimpl
from harness.data import CLASSES


def random_forget(pool, generator):
    """A uniformly random fraction of the training pool (the paper: 10%)."""
    n = round(len(pool) * pool.forget_fraction)
    return torch.randperm(len(pool), generator=generator)[:n]


def class_forget(pool, generator, target_class="auto"):
    """Every training image of one class (the paper's future work); the class is drawn by the seed
    unless `target_class` (a name or an index) is given."""
    if target_class == "auto":
        target = int(torch.randint(len(pool.classes), (1,), generator=generator))
    elif isinstance(target_class, int):
        target = target_class
    else:
        target = pool.classes.index(target_class)
    positions = torch.nonzero(pool.labels == target).flatten()
    return positions, {"forgotten_class": target, "forgotten_class_name": pool.classes[target]}


@hookimpl
def register_scenarios(register):
    register("random", random_forget)
    register("class", class_forget, space={
        "target_class": Choice(["auto", *CLASSES, *range(len(CLASSES))], default="auto",
                               help="the class to forget, by name or index; auto: drawn by the split seed"),
    })
