"""The split registry: (scenario, seed, profile sizes) -> disjoint retain / forget / validation / test.

The training pool (retain + forget) is drawn with a fixed seed, independent of the split seed, so every
seed of a profile shares one original model and only the forget set and the retrain model change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .data import ImageData
from .hashing import stable_hash
from .profiles import Profile
from .registry import Scenario

POOL_SEED = 20231  # fixed: the original model's training set must not depend on the split seed
SPLIT_NAMES = ("retain", "forget", "validation", "test")
# Tuning keeps the images that judge a configuration apart from those that chose it: "tune" splits draw
# validation and test from one fixed half of the held-out images, "judge" splits from the other half.
HELDOUT_PARTS = ("tune", "judge")


class SplitError(ValueError):
    """A scenario produced an invalid forget set, or the sets are not disjoint."""


@dataclass(frozen=True)
class Pool:
    """What a scenario sees: the training pool it chooses the forget set from.

    A scenario returns *positions* 0..len(pool)-1 into this pool (not dataset indices): position i is
    the image `images[i]` with label `labels[i]`, dataset index `positions[i]`. Everything is on the CPU."""

    positions: torch.Tensor  # int64 (n,): dataset index of each pool position
    labels: torch.Tensor  # int64 (n,)
    images: torch.Tensor  # uint8 (n, 3, H, W), for content-based scenarios
    classes: tuple[str, ...]
    forget_fraction: float  # the profile's share of the pool to forget (random: 10%)
    seed: int  # the split seed (the generator handed to the scenario is seeded with it)

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class Split:
    scenario: str
    seed: int
    retain: torch.Tensor
    forget: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    hash: str  # of the data and all four index sets
    train_hash: str  # of the data and retain + forget: the original model's training set
    options: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # what the scenario chose (e.g. the forgotten class)
    heldout_part: str | None = None  # None: all held-out images; "tune" / "judge": one fixed half

    def sets(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in SPLIT_NAMES}

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.sets().items()}

    @property
    def train(self) -> torch.Tensor:
        return torch.sort(torch.cat([self.retain, self.forget])).values


def stratified_sample(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of `size` items with class proportions kept (largest-remainder rounding), sorted."""
    n = len(labels)
    if not 0 < size <= n:
        raise SplitError(f"cannot draw {size} of {n} items")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    remainder = size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True)[:remainder]] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:q]])
    return torch.sort(torch.cat(chosen)).values


def make_split(data: ImageData, profile: Profile, scenario: Scenario, seed: int, options: dict | None = None,
               heldout_part: str | None = None) -> Split:
    """The split of `seed`; `options` are the scenario's parameters (validated against its space here).

    `heldout_part` ("tune" or "judge") restricts validation and test to one fixed, stratified half of the
    held-out images; the training pool, and so the original model, is the same either way."""
    try:
        options = scenario.resolve(options)
    except ValueError as exc:
        raise SplitError(str(exc)) from None
    labels = data.labels.cpu()
    pool_gen = torch.Generator().manual_seed(POOL_SEED)
    train_all = torch.arange(data.n_train)
    heldout_all = torch.arange(data.n_train, len(labels))
    for what, size, available in (("training", profile.train_size, len(train_all)),
                                  ("held-out", profile.heldout_size, len(heldout_all))):
        if size is not None and size > available:
            raise SplitError(f"profile {profile.name!r} needs {size} {what} images; the data "
                             f"({data.source}) has {available}")
    train_pos = train_all if profile.train_size is None else train_all[
        stratified_sample(labels[train_all], profile.train_size, pool_gen)]
    heldout_pos = heldout_all if profile.heldout_size is None else heldout_all[
        stratified_sample(labels[heldout_all], profile.heldout_size, pool_gen)]

    if heldout_part is not None:
        if heldout_part not in HELDOUT_PARTS:
            raise SplitError(f"heldout_part must be one of {', '.join(HELDOUT_PARTS)}, got {heldout_part!r}")
        half = torch.zeros(len(heldout_pos), dtype=torch.bool)
        half[stratified_sample(labels[heldout_pos], len(heldout_pos) // 2,
                               torch.Generator().manual_seed(POOL_SEED + 1))] = True
        heldout_pos = heldout_pos[half if heldout_part == "tune" else ~half]

    gen = torch.Generator().manual_seed(seed)
    n_val = round(len(heldout_pos) * profile.validation_fraction)
    val_mask = torch.zeros(len(heldout_pos), dtype=torch.bool)
    val_mask[stratified_sample(labels[heldout_pos], n_val, gen)] = True
    validation, test = heldout_pos[val_mask], heldout_pos[~val_mask]

    pool = Pool(train_pos, labels[train_pos], data.images[train_pos.to(data.images.device)].cpu(),
                data.classes, profile.forget_fraction, seed)
    info: dict = {}
    try:
        chosen = scenario.fn(pool, gen, **options)
    except (TypeError, ValueError) as exc:  # bad --scenario-option values or names
        raise SplitError(f"scenario {scenario.name!r}: {exc}") from None
    if isinstance(chosen, tuple):  # a scenario may return (positions, info about its choice)
        chosen, info = chosen
    chosen = torch.as_tensor(chosen, dtype=torch.int64).flatten()
    _check_forget(scenario.name, chosen, len(pool))
    forget_mask = torch.zeros(len(pool), dtype=torch.bool)
    forget_mask[chosen] = True
    forget, retain = train_pos[forget_mask], train_pos[~forget_mask]

    split = Split(
        scenario=scenario.name, seed=seed, retain=retain, forget=forget, validation=validation, test=test,
        hash=stable_hash(data.fingerprint, scenario.name, retain, forget, validation, test),
        train_hash=stable_hash(data.fingerprint, train_pos),
        options=options, info=dict(info), heldout_part=heldout_part,
    )
    check_split(split, len(labels))
    return split


def _check_forget(name: str, chosen: torch.Tensor, pool_size: int) -> None:
    if len(chosen) == 0:
        raise SplitError(f"scenario {name!r} chose an empty forget set")
    if chosen.min() < 0 or chosen.max() >= pool_size:
        raise SplitError(f"scenario {name!r} returned positions outside the pool of {pool_size}")
    if len(torch.unique(chosen)) != len(chosen):
        raise SplitError(f"scenario {name!r} returned duplicate positions")
    if len(chosen) == pool_size:
        raise SplitError(f"scenario {name!r} chose the whole training pool: nothing would be retained")


def check_split(split: Split, dataset_size: int) -> None:
    """Every set non-empty, inside the dataset, and no index in two sets."""
    seen = torch.zeros(dataset_size, dtype=torch.int64)
    for name, idx in split.sets().items():
        if len(idx) == 0:
            raise SplitError(f"split {split.hash}: {name} set is empty")
        seen[idx] += 1
    if int(seen.max()) > 1:
        raise SplitError(f"split {split.hash}: sets overlap on {int((seen > 1).sum())} images")
