"""Built-in forget-set builders."""
import torch

from harness import hookimpl


def random_forget(pool, generator):
    """A uniformly random fraction of the training pool (the paper: 10%)."""
    n = round(len(pool) * pool.forget_fraction)
    return torch.randperm(len(pool), generator=generator)[:n]


def class_forget(pool, generator, target_class=None):
    """Every training image of one class (the paper's future work); the class is drawn by the seed
    unless `target_class` (an index or a name) is given."""
    if target_class is None:
        target = int(torch.randint(len(pool.classes), (1,), generator=generator))
    elif str(target_class).isdigit():
        target = int(target_class)
    elif target_class in pool.classes:
        target = pool.classes.index(target_class)
    else:
        raise ValueError(f"target_class {target_class!r} is not a class index or one of {', '.join(pool.classes)}")
    if not 0 <= target < len(pool.classes):
        raise ValueError(f"target_class {target} is outside 0..{len(pool.classes) - 1}")
    positions = torch.nonzero(pool.labels == target).flatten()
    return positions, {"forgotten_class": target, "forgotten_class_name": pool.classes[target]}


@hookimpl
def register_scenarios(register):
    register("random", random_forget)
    register("class", class_forget)
