"""The plugin host: discovers entry-point plugins one by one and fills the four registries.

pluggy's own `load_setuptools_entrypoints` aborts on the first plugin that fails to import and silently
skips duplicate names; a benchmark harness must instead report the broken plugin and keep the rest. The
unit of refusal is as small as the mistake: a plugin that cannot be imported, needs a newer contract or
raises in a hook is refused whole; a component that breaks the contract (no metrics declared, a function
of the wrong shape, defaults outside its own space) is refused alone, with the contract version that
made the rule, and the plugin's other components load.

`HARNESS_LOAD_PLUGINS=dist-a,dist-b` loads only those installed distributions besides the built-ins
(empty: the built-ins alone), so a test run or a benchmark is not changed by whatever else is installed.
"""
from __future__ import annotations

import inspect
import os
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import contract, hookspecs
from .contract import ContractError
from .metrics import Metric
from .params import Param, ParamError
from .registry import NEEDS, TOUCHES, Attack, Component, Method, Model, Registry, Scenario

KINDS = {
    "method": ("register_methods", Method),
    "attack": ("register_attacks", Attack),
    "scenario": ("register_scenarios", Scenario),
    "model": ("register_models", Model),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BUILTIN_DISTRIBUTION = "unlearning-harness"
LOAD_PLUGINS = "HARNESS_LOAD_PLUGINS"
# What each kind's function is called with (positional arguments), checked when it is registered.
CALLED_WITH = {"method": ("model", "data", "params", "ctx"), "attack": ("inputs", "params"),
               "scenario": ("pool", "generator"), "model": ("num_classes",)}


@dataclass(frozen=True)
class Refusal:
    """One component a plugin registered that breaks the contract (the plugin's other components load)."""

    kind: str
    name: str
    plugin: str
    source: str
    reason: str

    def line(self) -> str:
        return f"{self.kind} {self.name!r} of {self.plugin} ({self.source}) refused: {self.reason}"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str
    error: str | None = None  # one line; the traceback is kept in `details`
    details: str | None = None
    refused: tuple[Refusal, ...] = field(default_factory=tuple)  # its components that were refused

    @property
    def ok(self) -> bool:
        """The plugin loaded (some of its components may still have been refused)."""
        return self.error is None


class Host:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind, self._failure_lines) for kind in KINDS}
        self.plugins: list[PluginInfo] = []
        self.not_loaded: list[str] = []  # distributions left out by $HARNESS_LOAD_PLUGINS

    # registries, named for readability at call sites
    @property
    def methods(self) -> Registry[Method]:
        return self.registries["method"]

    @property
    def attacks(self) -> Registry[Attack]:
        return self.registries["attack"]

    @property
    def scenarios(self) -> Registry[Scenario]:
        return self.registries["scenario"]

    @property
    def models(self) -> Registry[Model]:
        return self.registries["model"]

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if not p.ok]

    @property
    def refusals(self) -> list[Refusal]:
        return [r for p in self.plugins for r in p.refused]

    def _failure_lines(self) -> list[str]:
        return [f"{p.name} ({p.source}): {p.error}" for p in self.failures] + [r.line() for r in self.refusals]

    def load_entry_points(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> Host:
        allowed = _allowed_distributions()
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            if allowed is not None and dist is not None and _normal(dist.name) != BUILTIN_DISTRIBUTION \
                    and _normal(dist.name) not in allowed:
                self.not_loaded.append(f"{dist.name} ({ep.name})")
                continue
            source = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            source = f"{source} ({ep.name})"
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure is the plugin's, not the host's
                self._fail(ep.name, source, f"import failed: {type(exc).__name__}: {exc}", traceback.format_exc())
                continue
            self.add_plugin(plugin, name=ep.name, source=source)
        return self

    def add_plugin(self, plugin: Any, name: str, source: str | None = None) -> PluginInfo:
        """Register one plugin object (a module or any object with hookimpls); isolate its failures."""
        source = source or name
        if self.pm.has_plugin(name):
            return self._fail(name, source, f"a plugin named {name!r} is already loaded")
        try:
            contract.check_supported(plugin)
        except ContractError as exc:
            return self._fail(name, source, str(exc))
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            return self._fail(name, source, f"registration failed: {type(exc).__name__}: {exc}", traceback.format_exc())
        staged: list[tuple[str, Component]] = []
        refused: list[Refusal] = []
        try:
            for kind, (hook_name, cls) in KINDS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    register = _register_callback(kind, cls, name, source, staged, refused)
                    impl.function(*[{"register": register}[arg] for arg in impl.argnames])
        except Exception as exc:
            self.pm.unregister(name=name)
            return self._fail(name, source, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        for kind, component in staged:  # all or nothing: a plugin whose hook raised is not half loaded
            self.registries[kind].add(component)
        info = PluginInfo(name=name, source=source, refused=tuple(refused))
        self.plugins.append(info)
        return info

    def _fail(self, name: str, source: str, error: str, details: str | None = None) -> PluginInfo:
        info = PluginInfo(name=name, source=source, error=error, details=details)
        self.plugins.append(info)
        return info


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed_distributions() -> set[str] | None:
    """The distributions $HARNESS_LOAD_PLUGINS allows besides the built-ins (None: unset, every one)."""
    value = os.environ.get(LOAD_PLUGINS)
    if value is None:
        return None
    return {_normal(v.strip()) for v in value.split(",") if v.strip()}


def _register_callback(kind: str, cls: type, plugin: str, source: str, staged: list, refused: list):
    """The `register` a plugin's hook calls: each call stages one component, or records why it is refused
    (the plugin's other components are not affected)."""
    def register(name: str, fn=None, *, description: str | None = None, space=None, **extra) -> None:
        try:
            staged.append((kind, _component(kind, cls, name, fn, description, space, source, extra)))
        except (ContractError, ValueError, TypeError) as exc:
            refused.append(Refusal(kind, str(name), plugin, source, str(exc)))

    return register


def _component(kind: str, cls: type, name, fn, description, space, source: str, extra: dict) -> Component:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ContractError(f"invalid {kind} name {name!r}: use letters, digits, '-', '_' or '.'", since=1)
    if not callable(fn):
        raise ContractError(f"{kind} {name!r}: {fn!r} is not callable", since=1)
    unknown = sorted(set(extra) - {f.name for f in cls.__dataclass_fields__.values()} - {"fn", "name", "source"})
    if unknown:
        raise ContractError(f"{kind} {name!r}: unexpected keyword argument(s) {', '.join(map(repr, unknown))} "
                            f"to register (a {kind} takes: {', '.join(_register_keywords(cls))})")
    if description is None:
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    space = dict(space or {})
    for pname, param in space.items():
        if not isinstance(param, Param):
            raise ContractError(f"{kind} {name!r}: parameter {pname!r} must be Int, Float or Choice", since=2)
    if cls is Attack:
        _check_attack(name, extra)
    if cls is Method:
        _check_method(name, extra)
    if extra.get("check") is not None and not callable(extra["check"]):
        raise ContractError(f"{kind} {name!r}: check must be a function of the resolved parameters", since=4)
    _check_call(kind, name, fn, space)
    component = cls(name=name, fn=fn, description=description, source=source, space=space, **extra)
    try:
        component.resolve()  # its own defaults must validate against its own space
    except ParamError as exc:
        raise ContractError(f"defaults do not validate: {exc}", since=2) from None
    return component


def _register_keywords(cls: type) -> list[str]:
    return ["description", "space", *[f for f in cls.__dataclass_fields__ if f not in
                                      ("name", "fn", "description", "source", "space")]]


def _check_call(kind: str, name: str, fn, space: dict) -> None:
    """The function can be called the way the harness calls a `kind` (checked on its signature, when it
    has one): a contract-1 attack `fn(outputs)` is refused here, not in the middle of a run."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: trust it
        return
    args = CALLED_WITH[kind]
    keywords = {k: None for k in space} if kind in ("scenario", "model") else {}
    try:
        signature.bind(*args, **keywords)
    except TypeError as exc:
        shown = f"{', '.join(args)}{', **params' if keywords else ''}"
        raise ContractError(f"{kind} {name!r}: the harness calls it as fn({shown}), and its signature "
                            f"{signature} does not accept that ({exc})", since=2 if kind == "attack" else 1) from None


def _check_method(name: str, extra: dict) -> None:
    for key in ("family", "touches", "citation"):
        if not isinstance(extra.get(key, ""), str):
            raise ContractError(f"method {name!r}: {key} must be a string", since=4)
    touches = extra.get("touches", "")
    if touches and touches not in TOUCHES:
        raise ContractError(f"method {name!r}: touches={touches!r}; valid: {', '.join(TOUCHES)}", since=4)


def _check_attack(name: str, extra: dict) -> None:
    metrics = extra.get("metrics")
    if not metrics:
        raise ContractError(f"attack {name!r} declares no metrics: pass metrics={{'name': harness.Metric(...)}}",
                            since=2)
    for mname, metric in metrics.items():
        if not isinstance(metric, Metric):
            raise ContractError(f"attack {name!r}: metric {mname!r} must be a harness.Metric", since=2)
        if not isinstance(mname, str) or not _NAME.match(mname):
            raise ContractError(f"attack {name!r}: invalid metric name {mname!r}", since=2)
        for bound in metric.interval or ():
            if bound not in metrics:
                raise ContractError(f"attack {name!r}: metric {mname!r} names interval bound {bound!r}, which is "
                                    f"not declared", since=3)
    extra["metrics"] = dict(metrics)
    if extra.get("prepare") is not None and not callable(extra["prepare"]):
        raise ContractError(f"attack {name!r}: prepare must be callable", since=2)
    needs = extra.get("needs", ())
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ContractError(f"attack {name!r}: unknown need(s) {', '.join(unknown)}; valid: {', '.join(NEEDS)}",
                            since=3)
    extra["needs"] = needs
    for key in ("references", "reruns"):
        value = extra.get(key, 0)
        if not callable(value) and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ContractError(f"attack {name!r}: {key} must be a non-negative int or a function of the "
                                f"parameters", since=3)


def discover(extra_plugins: Iterable[tuple[str, Any]] = ()) -> Host:
    host = Host().load_entry_points()
    for name, plugin in extra_plugins:
        host.add_plugin(plugin, name=name)
    return host


@lru_cache(maxsize=1)
def default_host() -> Host:
    """The host of installed entry points, built once per process."""
    return discover()
