"""Typed method parameters: one declaration gives the default, the validation and the Optuna search space.

Keeping all three in one object means a method cannot ship a default that its own search space rejects,
and the CLI, the runner and the tuner validate parameters the same way.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    default: int
    log: bool = False
    tune: bool = True
    help: str = ""

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"Int range is empty: [{self.low}, {self.high}]")

    def describe(self) -> str:
        return f"an integer in [{self.low}, {self.high}]"

    def coerce(self, value: Any) -> int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str):
            value = float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise TypeError
            value = int(value)
        if not isinstance(value, int):
            raise TypeError
        return value

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    default: float
    log: bool = False
    tune: bool = True
    help: str = ""

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"Float range is empty: [{self.low}, {self.high}]")

    def describe(self) -> str:
        return f"a number in [{self.low:g}, {self.high:g}]"

    def coerce(self, value: Any) -> float:
        if isinstance(value, bool):
            raise TypeError
        value = float(value)
        if math.isnan(value):
            raise TypeError
        return value

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    choices: Sequence[Any]
    default: Any
    tune: bool = True
    help: str = ""

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            for choice in self.choices:  # CLI values arrive as strings: match on the text form
                if value == str(choice) or (isinstance(choice, bool) and value.lower() == str(choice).lower()):
                    return choice
        return value

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


Param = Int | Float | Choice


def resolve(space: Mapping[str, Param], overrides: Mapping[str, Any] | None = None, *, owner: str = "") -> dict:
    """Defaults updated with validated overrides; raises ParamError naming the parameter and its range."""
    prefix = f"{owner}: " if owner else ""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(space))
    if unknown:
        valid = ", ".join(sorted(space)) or "(none)"
        raise ParamError(f"{prefix}unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    resolved = {}
    for name, param in space.items():
        raw = overrides.get(name, param.default)
        try:
            value = param.coerce(raw)
        except (TypeError, ValueError):
            raise ParamError(f"{prefix}{name}={raw!r} is not valid: expected {param.describe()}") from None
        if not param.contains(value):
            raise ParamError(f"{prefix}{name}={value!r} is out of range: expected {param.describe()}")
        resolved[name] = value
    return resolved


def sgd_space(batch_size: int | None = 128, *, momentum: float = 0.9, weight_decay: float = 5e-4,
              weight_decay_high: float = 1e-2, batch_help: str = "") -> dict[str, Param]:
    """The SGD part of a method's space (batch size, momentum, weight decay), kept out of tuning.

    Most built-in methods train with SGD; sharing one declaration keeps their ranges the same, and
    `sgd_options(params)` hands the resolved values to `ctx.fit`. `batch_size=None` leaves it out (for
    methods with several batch sizes of their own)."""
    space: dict[str, Param] = {}
    if batch_size is not None:
        space["batch_size"] = Int(16, 1024, default=batch_size, tune=False, help=batch_help)
    space["momentum"] = Float(0.0, 0.99, default=momentum, tune=False)
    space["weight_decay"] = Float(0.0, weight_decay_high, default=weight_decay, tune=False)
    return space


def sgd_options(params: Mapping[str, Any]) -> dict:
    """batch_size, momentum and weight_decay of resolved `params`, as keyword arguments of `ctx.fit`."""
    return {k: params[k] for k in ("batch_size", "momentum", "weight_decay") if k in params}
