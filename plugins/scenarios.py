"""Built-in forget-set builders."""
import torch

from harness import CLASSES, Choice, Int, hookimpl

PAPER_RED = 525  # the paper's targeted forget set: 525 of the 50,000 training images
PAPER_POOL = 50_000
RED_MARGIN = 0.15  # a colour is red when its red channel exceeds both others by this much (on 0..1)


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


def red_forget(pool, generator, count=0, clusters=16):
    """The training images with the most red, found by colour clustering (the paper's targeted set: 525
    images picked by k-means colour identification).

    k-means (fixed seed, so the same images for every split seed) groups pixel colours of the pool, each
    image downsampled to 16x16, into `clusters` colours; the red colours are the centres whose red
    channel exceeds green and blue by RED_MARGIN (or, if none does, the reddest one). An image's redness
    is the share of its pixels nearest a red colour; the `count` reddest images are forgotten (0: the
    paper's 525 scaled to the pool, 1.05%: 52 of the cpu profile's 5,000)."""
    from sklearn.cluster import KMeans

    n = count or max(1, round(PAPER_RED * len(pool) / PAPER_POOL))
    if n >= len(pool):
        raise ValueError(f"count={n} would forget the whole pool of {len(pool)} images")
    small = torch.nn.functional.avg_pool2d(pool.images.float() / 255, 2)  # (n, 3, 16, 16)
    pixels = small.permute(0, 2, 3, 1).reshape(len(pool), -1, 3)  # (n, 256, 3)
    sample = pixels.reshape(-1, 3)[torch.randperm(pixels.shape[0] * pixels.shape[1],
                                                  generator=torch.Generator().manual_seed(0))[:200_000]]
    centres = torch.as_tensor(KMeans(clusters, n_init=3, random_state=0).fit(sample.numpy()).cluster_centers_,
                              dtype=torch.float32)
    margin = centres[:, 0] - centres[:, 1:].max(1).values
    red = margin > RED_MARGIN
    if not red.any():
        red = margin == margin.max()
    redness = torch.cat([red[torch.cdist(chunk, centres[None].expand(len(chunk), -1, -1)).argmin(2)].float().mean(1)
                         for chunk in pixels.split(2048)])
    chosen = torch.argsort(redness, descending=True, stable=True)[:n]
    return chosen, {"count": n, "red_colours": int(red.sum()), "min_redness": round(float(redness[chosen].min()), 3),
                    "mean_redness_chosen": round(float(redness[chosen].mean()), 3),
                    "mean_redness_pool": round(float(redness.mean()), 3)}


@hookimpl
def register_scenarios(register):
    register("random", random_forget)
    register("class", class_forget, space={
        "target_class": Choice(["auto", *CLASSES, *range(len(CLASSES))], default="auto",
                               help="the class to forget, by name or index; auto: drawn by the split seed"),
    })
    register("targeted-red", red_forget, space={
        "count": Int(0, PAPER_POOL, default=0,
                     help="images to forget; 0: the paper's 525 of 50,000, scaled to the pool"),
        "clusters": Int(2, 64, default=16, help="k-means colours (8 found no red on CIFAR-10, only brown)"),
    })
