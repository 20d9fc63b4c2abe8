"""Registries of named components with errors that tell the user what to type instead."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .metrics import Metric
from .params import Param, ParamError, resolve


class UnknownComponent(KeyError):
    """A name that no plugin registered; the message lists the valid names (and plugins that failed to
    load, which may be where the name was meant to come from)."""

    def __init__(self, kind: str, name: str, valid: list[str], failed: list[str] | None = None):
        self.kind, self.name, self.valid = kind, name, valid
        hint = difflib.get_close_matches(name, valid, n=1)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        message = f"unknown {kind} {name!r}.{did_you_mean} Valid {kind}s: {', '.join(valid) or '(none)'}"
        if failed:
            message += f". Plugins that failed to load (see `unlearn plugins -v`): {'; '.join(failed)}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class DuplicateComponent(LookupError):
    """Two plugins registered the same name: using it would be ambiguous, so it is refused."""

    def __init__(self, kind: str, name: str, sources: list[str]):
        self.kind, self.name, self.sources = kind, name, sources
        super().__init__(
            f"{kind} {name!r} is registered by several plugins: {' and '.join(sources)}; "
            f"uninstall or rename one of them"
        )


@dataclass(frozen=True)
class Component:
    """A registered function with a declared parameter space (default, valid range, Optuna space)."""

    kind = "component"
    name: str
    fn: Callable
    description: str = ""
    source: str = ""  # "distribution version (entry point)" or the in-process plugin name
    space: Mapping[str, Param] = field(default_factory=dict)
    # check(params) raises ValueError when resolved parameters that are each in range do not go together
    # (rewind without max steps, say): a run, a tuner's trial and `--param` are refused before any work.
    check: Callable[[Mapping], None] | None = None

    @property
    def defaults(self) -> dict:
        return {name: p.default for name, p in self.space.items()}

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict:
        owner = f"{self.kind} {self.name!r}"
        params = resolve(self.space, overrides, owner=owner)
        if self.check is not None:
            try:
                self.check(dict(params))
            except (ValueError, TypeError) as exc:
                raise ParamError(f"{owner}: {exc}") from None
        return params


# What a method may declare it is (`family=`) and which data it reads (`touches=`), for `unlearn plugins`
# and the docs. A family outside this list is allowed (a new kind of method); `touches` is one of these.
FAMILIES = ("fine-tuning", "ascent", "relabelling", "distillation", "dampening", "noise", "boundary",
            "influence", "pruning", "reinitialisation", "perturbation")
TOUCHES = ("forget", "retain", "both", "none")


@dataclass(frozen=True)
class Method(Component):
    """An unlearning method: fn(model, data, params, ctx) -> the unlearned model (eval mode).

    `family` says what kind of method it is (FAMILIES), `touches` which of the split's data it reads
    (TOUCHES: forget, retain, both, none; validation does not count), `citation` where it comes from
    (paper and code): what `unlearn plugins` shows."""

    kind = "method"
    family: str = ""
    touches: str = ""
    citation: str = ""


@dataclass(frozen=True)
class Attack(Component):
    """An attack or verification metric.

    fn(inputs: AttackInput, params) -> {metric: value} (or an AttackResult with tables), every metric
    declared in `metrics` (logged as `attack/metric`). `prepare(inputs: PrepareInput, params)`, if given,
    runs once per split before any model is scored; what it returns reaches `fn` as `inputs.prepared`.

    What it needs beyond the model under test is declared, so the harness builds it once and an attack
    whose needs cannot be met is skipped with the reason instead of failing:
    `needs` names inputs from NEEDS; `references` is the least number of reference-bank models it needs
    and `reruns` how many extra runs of the method on the same split (an int, or a function of the
    attack's resolved parameters)."""

    kind = "attack"
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    prepare: Callable | None = None
    needs: tuple[str, ...] = ()
    references: int | Callable[[Mapping], int] = 0
    reruns: int | Callable[[Mapping], int] = 0

    def bank_needed(self, params: Mapping) -> int:
        return int(self.references(params) if callable(self.references) else self.references)

    def reruns_needed(self, params: Mapping) -> int:
        return int(self.reruns(params) if callable(self.reruns) else self.reruns)

    def unmet(self, params: Mapping, *, retrain: bool, bank_size: int) -> str | None:
        """Why this attack cannot run with what is available (None if it can): one line for the user."""
        if "retrain" in self.needs and not retrain:
            return "needs the retrain model, which is not loaded here (tuning never sees it)"
        wanted = self.bank_needed(params)
        if wanted > bank_size:
            return (f"needs {wanted} reference model(s), {bank_size} available: run with --references {wanted} "
                    f"(each is one more retrain, cached and shared by every method and later run)")
        return None


# What an attack may declare in `needs`, and what the harness then hands it.
NEEDS = {
    "retrain": "the gold retrain model's outputs (`inputs.retrain`); the attack is skipped while tuning",
    "random": "a randomly initialised model's outputs (`inputs.random`)",
}


@dataclass(frozen=True)
class Scenario(Component):
    """fn(pool, generator, **params) -> LongTensor of pool positions that form the forget set, or
    (positions, info) with `info` a dict describing the choice (logged)."""

    kind = "scenario"


@dataclass(frozen=True)
class Model(Component):
    """fn(num_classes, **params) -> a freshly initialised torch.nn.Module."""

    kind = "model"


T = TypeVar("T", bound=Component)


class Registry(Generic[T]):
    def __init__(self, kind: str, load_failures: Callable[[], list[str]] = lambda: []):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._conflicts: dict[str, list[str]] = {}
        self._load_failures = load_failures

    def add(self, component: T) -> None:
        existing = self._items.get(component.name)
        if existing is not None:
            self._conflicts.setdefault(component.name, [existing.source]).append(component.source)
            return
        self._items[component.name] = component

    def get(self, name: str) -> T:
        if name in self._conflicts:
            raise DuplicateComponent(self.kind, name, self._conflicts[name])
        try:
            return self._items[name]
        except KeyError:
            raise UnknownComponent(self.kind, name, self.names(), self._load_failures()) from None

    def names(self) -> list[str]:
        return sorted(n for n in self._items if n not in self._conflicts)

    @property
    def conflicts(self) -> dict[str, list[str]]:
        return dict(self._conflicts)

    def __contains__(self, name: str) -> bool:
        return name in self._items and name not in self._conflicts

    def __iter__(self) -> Iterator[T]:
        return (self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())
