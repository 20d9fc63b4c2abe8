"""The search space of a study: the method's declared space, narrowed or fixed by a `--space` TOML file.

A space file has one table per method; each entry narrows a declared parameter or fixes it:

    [deviation]
    sigma = {low = 0.1, high = 0.8}   # narrow a range (inside the declared one)
    layers = {choices = ["all"]}      # narrow a choice
    epochs = 4                        # fix a value (no longer tuned)
    momentum = {low = 0.5, high = 0.95}  # a range on a parameter declared tune=False tunes it

Everything is checked against the declaration, so a typo or a range the method would refuse is an
error before any trial runs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config_file import ConfigFileError, read_toml
from ..params import Choice, Float, Int, Param, ParamError, resolve
from ..registry import Method


class SpaceError(ValueError):
    """A space file or narrowed space that cannot be used (reported with exit status 2)."""


@dataclass(frozen=True)
class SearchSpace:
    """What a trial samples (`tuned`) and what it holds fixed (`fixed`), for one method."""

    method: Method
    tuned: Mapping[str, Param]
    fixed: Mapping[str, Any]

    def sample(self, trial) -> dict:
        """A trial's full parameter set, validated against the method's declaration."""
        values = {name: param.suggest(trial, name) for name, param in self.tuned.items()}
        return self.method.resolve({**self.fixed, **values})

    @property
    def defaults(self) -> dict:
        """The method's defaults with the fixed values applied: the baseline every study starts from."""
        return self.method.resolve(dict(self.fixed))

    def describe(self) -> dict:
        """Plain data, stored with the study: a later worker must search the same space."""
        out = {}
        for name, p in self.tuned.items():
            out[name] = {"choices": list(p.choices)} if isinstance(p, Choice) else \
                {"low": p.low, "high": p.high, "log": p.log}
        return {"tuned": out, "fixed": dict(self.fixed)}


def declared_space(method: Method) -> SearchSpace:
    tuned = {n: p for n, p in method.space.items() if p.tune}
    return _checked(SearchSpace(method, tuned, {}))


def load_space_file(path: str | Path) -> dict[str, dict]:
    try:
        data = read_toml(path, "space file")
    except ConfigFileError as exc:
        raise SpaceError(str(exc)) from None
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise SpaceError(f"space file {path}: expected one [method] table per method, "
                         f"found plain key(s) {', '.join(bad)}")
    return data


def narrowed_space(method: Method, overrides: Mapping[str, Any] | None) -> SearchSpace:
    """The declared space of `method` narrowed by its table of a space file."""
    if not overrides:
        return declared_space(method)
    declared = method.space
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise SpaceError(f"space for {method.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"declared: {', '.join(sorted(declared))}")
    tuned = {n: p for n, p in declared.items() if p.tune}
    fixed: dict[str, Any] = {}
    for name, value in overrides.items():
        where = f"space for {method.name!r}: {name}"
        tuned.pop(name, None)
        if isinstance(value, dict):
            tuned[name] = _narrow(declared[name], value, where)
        else:
            fixed[name] = value
    try:
        resolve(declared, fixed, owner=method.name)  # fixed values must be valid ones
    except ParamError as exc:
        raise SpaceError(f"space file: {exc}") from None
    return _checked(SearchSpace(method, tuned, fixed))


def _narrow(param: Param, spec: dict, where: str) -> Param:
    if isinstance(param, Choice):
        extra = set(spec) - {"choices"}
        if extra or "choices" not in spec:
            raise SpaceError(f"{where}: a choice is narrowed with {{choices = [...]}}, "
                             f"got keys {', '.join(sorted(spec))}")
        choices = [param.coerce(c) for c in spec["choices"]]
        outside = [c for c in choices if not param.contains(c)]
        if outside or not choices:
            raise SpaceError(f"{where}: choices {outside or '[]'} are not among the declared {list(param.choices)}")
        return replace(param, choices=tuple(dict.fromkeys(choices)), default=choices[0], tune=True)
    extra = set(spec) - {"low", "high"}
    if extra:
        raise SpaceError(f"{where}: a range is narrowed with {{low = .., high = ..}}, "
                         f"got keys {', '.join(sorted(extra))}")
    try:
        low = param.coerce(spec.get("low", param.low))
        high = param.coerce(spec.get("high", param.high))
    except (TypeError, ValueError):
        raise SpaceError(f"{where}: bounds must be {'integers' if isinstance(param, Int) else 'numbers'}") from None
    if not (param.contains(low) and param.contains(high)):
        raise SpaceError(f"{where}: [{low}, {high}] is outside the declared range; expected {param.describe()}")
    if low > high:
        raise SpaceError(f"{where}: low {low} is above high {high}")
    if isinstance(param, Float) and param.log and low <= 0:
        raise SpaceError(f"{where}: a log-scale range needs low > 0")
    default = min(max(param.default, low), high)
    return replace(param, low=low, high=high, default=default, tune=True)


def _checked(space: SearchSpace) -> SearchSpace:
    if not space.tuned:
        raise SpaceError(f"method {space.method.name!r} has nothing left to tune: every parameter is fixed or "
                         f"declared tune=False (declared: {', '.join(space.method.space) or 'none'})")
    return space
