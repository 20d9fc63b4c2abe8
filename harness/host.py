"""The plugin host: discovers entry-point plugins one by one and fills the four registries.

pluggy's own `load_setuptools_entrypoints` aborts on the first plugin that fails to import and silently
skips duplicate names; a benchmark harness must instead report the broken plugin and keep the rest.
"""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .metrics import Metric
from .params import Param, ParamError
from .registry import NEEDS, Attack, Component, Method, Model, Registry, Scenario

KINDS = {
    "method": ("register_methods", Method),
    "attack": ("register_attacks", Attack),
    "scenario": ("register_scenarios", Scenario),
    "model": ("register_models", Model),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str
    error: str | None = None  # one line; the traceback is kept in `details`
    details: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Host:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind, self._failure_lines) for kind in KINDS}
        self.plugins: list[PluginInfo] = []

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

    def _failure_lines(self) -> list[str]:
        return [f"{p.name} ({p.source}): {p.error}" for p in self.failures]

    def load_entry_points(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> "Host":
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
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
            self.pm.register(plugin, name=name)
        except Exception as exc:
            return self._fail(name, source, f"registration failed: {type(exc).__name__}: {exc}", traceback.format_exc())
        staged: list[tuple[str, Component]] = []
        try:
            for kind, (hook_name, cls) in KINDS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    register = _register_callback(kind, cls, source, staged)
                    impl.function(*[{"register": register}[arg] for arg in impl.argnames])
        except Exception as exc:
            self.pm.unregister(name=name)
            return self._fail(name, source, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        for kind, component in staged:  # all or nothing: a half-registered plugin is not loaded
            self.registries[kind].add(component)
        info = PluginInfo(name=name, source=source)
        self.plugins.append(info)
        return info

    def _fail(self, name: str, source: str, error: str, details: str | None = None) -> PluginInfo:
        info = PluginInfo(name=name, source=source, error=error, details=details)
        self.plugins.append(info)
        return info


def _register_callback(kind: str, cls: type, source: str, staged: list):
    def register(name: str, fn, *, description: str | None = None, space=None, **extra) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '-', '_' or '.'")
        if not callable(fn):
            raise TypeError(f"{kind} {name!r}: {fn!r} is not callable")
        if description is None:
            description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        space = dict(space or {})
        for pname, param in space.items():
            if not isinstance(param, Param):
                raise TypeError(f"{kind} {name!r}: parameter {pname!r} must be Int, Float or Choice")
        if cls is Attack:
            _check_attack(name, extra)
        component = cls(name=name, fn=fn, description=description, source=source, space=space, **extra)
        try:
            component.resolve()  # its own defaults must validate against its own space
        except ParamError as exc:
            raise ValueError(f"defaults do not validate: {exc}") from None
        staged.append((kind, component))

    return register


def _check_attack(name: str, extra: dict) -> None:
    metrics = extra.get("metrics")
    if not metrics:
        raise ValueError(f"attack {name!r} declares no metrics: pass metrics={{'name': Metric(...)}}")
    for mname, metric in metrics.items():
        if not isinstance(metric, Metric):
            raise TypeError(f"attack {name!r}: metric {mname!r} must be a harness.Metric")
        if not isinstance(mname, str) or not _NAME.match(mname):
            raise ValueError(f"attack {name!r}: invalid metric name {mname!r}")
        for bound in metric.interval or ():
            if bound not in metrics:
                raise ValueError(f"attack {name!r}: metric {mname!r} names interval bound {bound!r}, which is not declared")
    extra["metrics"] = dict(metrics)
    if extra.get("prepare") is not None and not callable(extra["prepare"]):
        raise TypeError(f"attack {name!r}: prepare must be callable")
    needs = extra.get("needs", ())
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ValueError(f"attack {name!r}: unknown need(s) {', '.join(unknown)}; valid: {', '.join(NEEDS)}")
    extra["needs"] = needs
    for key in ("references", "reruns"):
        value = extra.get(key, 0)
        if not callable(value) and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"attack {name!r}: {key} must be a non-negative int or a function of the parameters")


def discover(extra_plugins: Iterable[tuple[str, Any]] = ()) -> Host:
    host = Host().load_entry_points()
    for name, plugin in extra_plugins:
        host.add_plugin(plugin, name=name)
    return host


@lru_cache(maxsize=1)
def default_host() -> Host:
    """The host of installed entry points, built once per process."""
    return discover()
