"""The split registry: (scenario, seed, profile sizes) -> disjoint retain / forget / validation / test.

The training pool (retain + forget) is drawn with a fixed seed, independent of the split seed, so every
seed of a profile shares one original model and only the forget set and the retrain model change.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from .data import ImageData
from .profiles import Profile
from .registry import Scenario

POOL_SEED = 20231  # fixed: the original model's training set must not depend on the split seed
SPLIT_NAMES = ("retain", "forget", "validation", "test")


class SplitError(ValueError):
    """A scenario produced an invalid forget set, or the sets are not disjoint."""


@dataclass(frozen=True)
class Pool:
    """What a scenario sees: the training images it may choose the forget set from."""

    positions: torch.Tensor  # indices into the dataset
    labels: torch.Tensor
    images: torch.Tensor  # uint8 (n, 3, H, W), for content-based scenarios
    classes: tuple[str, ...]
    forget_fraction: float
    seed: int

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


def _digest(*parts: torch.Tensor | str) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part.to(torch.int64).cpu().numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()


def make_split(data: ImageData, profile: Profile, scenario: Scenario, seed: int, options: dict | None = None) -> Split:
    options = dict(options or {})
    labels = data.labels.cpu()
    pool_gen = torch.Generator().manual_seed(POOL_SEED)
    train_all = torch.arange(data.n_train)
    heldout_all = torch.arange(data.n_train, len(labels))
    train_pos = train_all if profile.train_size is None else train_all[
        stratified_sample(labels[train_all], profile.train_size, pool_gen)]
    heldout_pos = heldout_all if profile.heldout_size is None else heldout_all[
        stratified_sample(labels[heldout_all], profile.heldout_size, pool_gen)]

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
        hash=_digest(data.fingerprint, scenario.name, retain, forget, validation, test),
        train_hash=_digest(data.fingerprint, train_pos),
        options=options, info=dict(info),
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
