"""What a run is (`Spec`) apart from where it runs (`Site`), and the one way both are written down.

A `Spec` is the work: methods and their parameters, scenarios, seeds, epoch budgets, profile, model,
attacks and the reference-bank size. Planned, it decides every cell's hash, so two machines that plan the
same spec on the same data run the same cells. A `Site` is where this process runs it: data and cache
folders, device, tracking store and experiment, progress bars. Nothing in a site enters a hash.

`to_dict` / `from_dict` are the only serialiser: TOML run files (`unlearn run --config`, what `unlearn
tune --export` writes), the parent's config.json, a shared benchmark's study, the tuner's worker
processes and `unlearn reproduce` all go through them. `from_dict` takes what a person would write
(comma lists, seed ranges such as "0-4", lists) and refuses unknown keys naming the valid ones.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Keys of older files that name a field differently (read, never written).
RENAMED = {"references": "bank_size", "method_params": "params", "scenario": "scenarios"}


class UsageError(ValueError):
    """Bad names, parameters or paths: reported in one line with exit status 2, before any work."""


class SpecError(UsageError):
    """A spec or site that cannot be read: unknown key, wrong type, unparsable list (one line)."""


@dataclass(frozen=True)
class Spec:
    """The work of a run. None means the default described beside it."""

    methods: tuple[str, ...] | None = None  # None: every registered method
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> parameter overrides
    scenarios: tuple[str, ...] = ("random",)
    scenario_options: Mapping[str, Any] = field(default_factory=dict)  # each goes to every scenario declaring it
    seeds: tuple[int, ...] = (0,)
    epochs: tuple[float, ...] | None = None  # epoch budgets, each setting every method's `epochs`; None: their own
    profile: str | None = None  # None: 'paper' with CUDA, else 'cpu'
    precision: str | None = None  # None: the profile's ('auto': the faster on this machine)
    model: str = "resnet18"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    attacks: tuple[str, ...] | None = None  # None: every registered attack
    attack_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bank_size: int | None = None  # reference-bank models per split; None: the profile's (0 on cpu, 4 on paper)
    heldout_part: str | None = None  # "tune" / "judge": validation and test from one half of the held-out images
    epoch_eval_size: int | None = 2000  # images per split behind the per-epoch curves (None: all)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars; None where unset): JSON as it is, TOML without the Nones."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec",
                  labels: Mapping[str, str] | None = None) -> Spec:
        """The spec `data` describes (what `to_dict` wrote, or a person: comma lists, seed ranges). `labels`
        names the keys in messages (the CLI's flags); otherwise they are "SOURCE: KEY"."""
        return cls(**_read(cls, data, source, labels=labels))

    def with_(self, **changes: Any) -> Spec:
        """A copy with `changes` read as `from_dict` reads them."""
        return replace(self, **_read(type(self), changes, "spec", partial=True))


@dataclass(frozen=True)
class Site:
    """Where and how this process runs a spec; never hashed, never shared with other machines."""

    data_dir: str | None = None  # None: $HARNESS_DATA_DIR, else a torchvision download into the cache
    cache_dir: str | None = None  # None: $HARNESS_CACHE_DIR or ~/.cache/unlearning-harness
    device: str | None = None  # None: cuda when available
    tracking_uri: str | None = None  # None: no store is checked (the Python API's in-memory tracker)
    experiment: str | None = None  # None: unlearning-<scenario>[+<scenario>...]
    show_progress: bool = True
    log_models: bool = True  # the original and retrain checkpoints as artifacts
    rerun: bool = False  # run every cell again instead of reusing those FINISHED in the experiment
    command: str | None = None  # the command line, kept as a tag so reports can say how to regenerate them

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "site") -> Site:
        return cls(**_read(cls, data, source))

    def with_(self, **changes: Any) -> Site:
        return replace(self, **{k: v for k, v in changes.items()})


def split_keys(data: Mapping[str, Any], *, source: str) -> tuple[dict, dict]:
    """(spec keys, site keys) of one mapping holding both, e.g. a TOML run file; `quiet = true` is read as
    show_progress = false. Unknown keys are refused with the valid ones listed."""
    spec_keys, site_keys = _names(Spec), _names(Site)
    spec, site = {}, {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        key = RENAMED.get(key, key)
        if key == "quiet":
            key, value = "show_progress", not value
        if key in spec_keys:
            if key in spec:
                raise SpecError(f"{source}: {raw_key} is given twice (as {key} and under an older name)")
            spec[key] = value
        elif key in site_keys:
            site[key] = value
        else:
            valid = sorted(spec_keys | site_keys | {"quiet"})
            raise SpecError(f"{source}: unknown key {raw_key!r}; valid keys: {', '.join(valid)}")
    return spec, site


def configure(**settings: Any) -> tuple[Spec, Site]:
    """(Spec, Site) from one flat set of keyword settings, as a run file holds them: the Python API's
    shorthand, e.g. `run(*configure(methods=["simple"], profile="smoke", data_dir="data"))`."""
    spec, site = split_keys(settings, source="configure()")
    return Spec.from_dict(spec, source="configure()"), Site.from_dict(site, source="configure()")


def read_run_file(path) -> tuple[dict, dict]:
    """A TOML run file (`unlearn run --config`) as (spec values, site values), keys and values checked:
    `Spec.from_dict(spec)` and `Site.from_dict(site)` make them a run; the CLI lays its flags over them."""
    from .config_file import read_toml

    source = f"config file {path}"
    spec, site = split_keys(read_toml(path), source=source)
    return _read(Spec, spec, source), _read(Site, site, source)


# -- reading -------------------------------------------------------------------------------------------
_NAMES = ("methods", "scenarios", "attacks")  # lists of component names
_TABLES = ("scenario_options", "model_options")  # NAME = VALUE tables
_PER_COMPONENT = ("params", "attack_options")  # COMPONENT -> NAME = VALUE tables
_BOOLS = ("show_progress", "log_models", "rerun")


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def _read(cls, data: Mapping[str, Any], source: str, partial: bool = False,
          labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a table of settings, got {type(data).__name__}")
    valid = _names(cls)
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = RENAMED.get(raw_key, raw_key) if raw_key not in valid else raw_key
        if key not in valid:
            raise SpecError(f"{source}: unknown key {raw_key!r}; valid keys: {', '.join(sorted(valid))}")
        if key in out:
            raise SpecError(f"{source}: {raw_key} is given twice (as {key} and under an older name)")
        out[key] = _value(key, value, (labels or {}).get(key) or f"{source}: {key}")
    return out


def _value(key: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if key in _NAMES:
        return name_list(value, where)
    if key == "seeds":
        return seed_list(value, where)
    if key == "epochs":
        return budget_list(value, where)
    if key in _TABLES:
        return dict(_table(value, where))
    if key in _PER_COMPONENT:
        table = _table(value, where)
        bad = [k for k, v in table.items() if not isinstance(v, Mapping)]
        if bad:
            raise SpecError(f"{where} holds one table per component ([{key}.NAME]), "
                            f"found plain key(s) {', '.join(bad)}")
        return {k: dict(v) for k, v in table.items()}
    if key in ("bank_size", "epoch_eval_size"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise SpecError(f"{where} must be a string, got {value!r}")
    return value


def _table(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a table, got {type(value).__name__}")
    return value


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """'a,b' or ['a', 'b'] -> ('a', 'b'); an empty list is a mistake (leave the key out for the default)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise SpecError(f"{where} must be a list of names or a comma-separated string, got {value!r}")
    names = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not names and isinstance(value, str):
        raise SpecError(f"{where} {value!r} names nothing; leave it out for the default")
    return names


def seed_list(value: Any, where: str) -> tuple[int, ...]:
    """'0,1,2', '0-2', 3 or [0, 1, 2] -> (0, 1, 2)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise SpecError(f"{where} must be integers, got {value!r}")
        seeds = list(value)
    elif isinstance(value, str):
        seeds = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
            if match is None:
                raise SpecError(f"{where} {value!r}: expected integers like 0,1,2 or a range like 0-4")
            lo, hi = int(match[1]), int(match[2] if match[2] is not None else match[1])
            if hi < lo:
                raise SpecError(f"{where} {part!r}: the range is empty")
            seeds.extend(range(lo, hi + 1))
    else:
        raise SpecError(f"{where} must be integers, a list or a string like 0-4, got {value!r}")
    if not seeds:
        raise SpecError(f"{where}: no seeds given")
    return tuple(dict.fromkeys(seeds))


def budget_list(value: Any, where: str) -> tuple[float, ...]:
    """'5,9,20' or [5, 9, 20] -> (5, 9, 20): whole numbers as int, so an Int parameter takes them."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, (int, float)) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise SpecError(f"{where} must be a list of numbers or a comma-separated string, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {item!r} is not a number; expected budgets like 5,9,20") from None
        out.append(int(number) if number.is_integer() else number)
    if not out:
        raise SpecError(f"{where} names no budget; leave it out to use each method's own epochs")
    return tuple(out)
