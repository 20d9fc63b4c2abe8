"""A run's configuration, resolved and validated into work before anything is created.

Every name, parameter, scenario, attack and model option, seed, the device, the cache folder and the
tracking store are checked here, the data is read and every split is built. A mistake is a `UsageError`
(one line, exit status 2) raised before any store, experiment or run exists, so a typo never leaves a
FAILED run behind or half an hour of training wasted.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import RESULTS_VERSION, __version__, engine
from .cache import ModelCache
from .cell import REFERENCE_ROWS, Cell, Configured
from .data import ImageData, cache_dir, load_cifar10
from .hashing import stable_hash
from .host import Host, default_host
from .profiles import PROFILES, Profile, default_profile_name
from .reference_models import ReferenceModels
from .registry import Component, Registry, UnknownComponent
from .spec import Site, Spec, UsageError
from .splits import Split, SplitError, make_split
from .tracking import check_tracking_uri

MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's limit
MAX_BANK = 256


@dataclass(frozen=True)
class Plan:
    """Validated work: what to run (`spec`), where (`site`), on which splits."""

    spec: Spec
    site: Site
    profile: Profile  # precision resolved
    methods: tuple[Configured, ...]
    attacks: tuple[Configured, ...]
    scenarios: tuple[Configured, ...]
    model: Configured
    seeds: tuple[int, ...]
    device: Any  # torch.device
    cache_dir: Path
    data: ImageData
    splits: dict[tuple[str, int], Split]  # (scenario, seed) -> split
    epochs: tuple[float, ...] = ()  # epoch budgets; empty: each method's own epochs
    precision_speeds: dict | None = None  # img/s per precision when 'auto' measured them

    @property
    def experiment(self) -> str:
        return self.site.experiment or "unlearning-" + "+".join(s.name for s in self.scenarios)

    @property
    def scenario(self) -> Configured:
        """The plan's only scenario (tuning and check-attacks work on one)."""
        if len(self.scenarios) != 1:
            raise ValueError(f"this plan has {len(self.scenarios)} scenarios; expected one")
        return self.scenarios[0]

    def split(self, seed: int, scenario: str | None = None) -> Split:
        return self.splits[(scenario or self.scenario.name, seed)]

    def work(self) -> list[Split]:
        """Every split in run order: scenario by scenario, seed by seed."""
        return [self.splits[(s.name, seed)] for s in self.scenarios for seed in self.seeds]

    @property
    def bank_size(self) -> int:
        """Reference-bank models per split (retrains with other seeds) for per-example attacks."""
        return self.profile.bank_size if self.spec.bank_size is None else self.spec.bank_size

    @property
    def setting(self) -> dict:
        """What besides the method and split decides a cell's result (part of every cell's hash)."""
        return {"profile": self.profile.as_dict(), "model": self.model.name, "model_params": dict(self.model.params),
                "references": self.bank_size}

    def skipped_attacks(self, *, retrain: bool = True) -> dict[str, str]:
        """Attacks of this plan that cannot run with what it builds, and why (one line each)."""
        reasons = {a.name: a.component.unmet(a.params, retrain=retrain, bank_size=self.bank_size)
                   for a in self.attacks}
        return {name: why for name, why in reasons.items() if why}

    @property
    def hash(self) -> str:
        """The whole configuration (the key a rerun finds its parent run by). Every cell hash holds the
        results version and, through its split, the data fingerprint."""
        return stable_hash({
            "cells": [c.hash for split in self.work() for c in self.cells(split)],
            "scenarios": {s.name: dict(s.params) for s in self.scenarios}, "seeds": list(self.seeds),
            "epochs": list(self.epochs),
        })

    @property
    def compute(self) -> engine.Compute:
        return engine.Compute(self.device, self.profile.precision, self.profile.channels_last)

    def reference_models(self) -> ReferenceModels:
        """The service that trains and serves this plan's reference models (one per process; models cached
        in the cache folder)."""
        model = self.model
        return ReferenceModels(
            self.data, self.compute, model.name, lambda: model.component.fn(self.data.num_classes, **model.params),
            self.profile.recipe, ModelCache(self.cache_dir / "models"), show_progress=self.site.show_progress,
            calibration_steps=self.profile.calibration_steps, warmup_steps=self.profile.calibration_warmup)

    def cells(self, split: Split) -> list[Cell]:
        """The reference rows, then every method (once per epoch budget), on `split`. A method without an
        `epochs` parameter (one that does not train, like SSD) is one cell whatever the budgets, with the
        first budget's group."""
        cells = [Cell(name, None, {}, split, self.attacks, self.setting) for name in REFERENCE_ROWS]
        for i, budget in enumerate(self.epochs or (None,)):
            for m in self.methods:
                if budget is None or "epochs" not in m.component.space:
                    if i == 0:
                        cells.append(Cell(m.name, m.component, dict(m.params), split, self.attacks, self.setting))
                    continue
                params = m.component.resolve({**m.params, "epochs": budget})
                cells.append(Cell(m.name, m.component, params, split, self.attacks, self.setting, budget))
        return cells

    @property
    def attack_metrics(self) -> dict:
        """Each attack's metric declarations as plain data: what reports and the summary read."""
        return {a.name: {k: v.as_dict() for k, v in a.component.metrics.items()} for a in self.attacks}

    def sources(self) -> dict[str, str]:
        """Where each component of the plan comes from ("distribution version (entry point)"): what a
        reproduction compares before running."""
        parts = [*self.methods, *self.attacks, *self.scenarios, self.model]
        return {f"{c.component.kind} {c.name}": c.component.source for c in parts}

    def describe(self) -> dict:
        """The resolved configuration as plain data (logged as config.json)."""
        return {
            "harness": __version__, "results_version": RESULTS_VERSION, "profile": self.profile.as_dict(),
            "seeds": list(self.seeds),
            "device": str(self.device), "device_name": engine.device_name(self.device),
            "methods": {m.name: dict(m.params) for m in self.methods},
            "attacks": {a.name: dict(a.params) for a in self.attacks},
            "metrics": self.attack_metrics,
            "scenarios": {s.name: dict(s.params) for s in self.scenarios},
            "epochs": list(self.epochs),
            "model": {"name": self.model.name, "params": dict(self.model.params)},
            "data": {"source": self.data.source, "fingerprint": self.data.fingerprint},
            "plugins": self.sources(),
            "splits": {f"{sc}/{seed}": {"hash": split.hash, **split.sizes()}
                       for (sc, seed), split in self.splits.items()},
            "heldout_part": self.spec.heldout_part,
            "references": self.bank_size,
            "command": self.site.command,
            "spec": self.spec.to_dict(),
        }


def plan(spec: Spec, site: Site | None = None, host: Host | None = None, *, data: ImageData | None = None) -> Plan:
    """Resolve and validate `spec` to run at `site`; raises UsageError (bad input) or DataError (data
    unreadable). `data`: the data set already loaded by another plan of this process (the tuner's
    held-out plan shares its trials' plan's)."""
    site = site or Site()
    host = host or default_host()
    profile = _profile(spec)
    methods = _methods(spec, host)
    attacks = _configured(host.attacks, spec.attacks, spec.attack_options, "--attack-option")
    scenarios = _scenarios(spec, host)
    model = _one(host.models, spec.model, spec.model_options)
    seeds = _seeds(spec.seeds)
    epochs = _epochs(spec, methods)
    bank = spec.bank_size
    if bank is not None and (isinstance(bank, bool) or not isinstance(bank, int) or not 0 <= bank <= MAX_BANK):
        raise UsageError(f"--references {bank!r} is not valid: the bank size is an integer in [0, {MAX_BANK}]")
    try:
        device = engine.resolve_device(site.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cache = cache_dir(site.cache_dir)
    _check_writable_folder(cache, "cache folder (--cache-dir / $HARNESS_CACHE_DIR)")
    if site.tracking_uri is not None:
        try:
            check_tracking_uri(site.tracking_uri)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if data is None:
        data = load_cifar10(site.data_dir, cache).to(device)
    splits = {}
    for scenario in scenarios:
        for seed in seeds:
            try:
                splits[(scenario.name, seed)] = make_split(data, profile, scenario.component, seed,
                                                           dict(scenario.params), spec.heldout_part)
            except SplitError as exc:
                raise UsageError(str(exc)) from None
    precision, speeds = _precision(spec.precision or profile.precision, device, model, data.num_classes,
                                   profile.channels_last, cache)
    profile = replace(profile, precision=precision)
    return Plan(spec, site, profile, methods, attacks, scenarios, model, seeds, device, cache, data, splits, epochs,
                speeds)


def _profile(spec: Spec) -> Profile:
    name = spec.profile or default_profile_name()
    if name not in PROFILES:
        raise UsageError(str(UnknownComponent("profile", name, sorted(PROFILES))))
    if spec.precision not in (None, "auto", "bf16", "fp32"):
        raise UsageError(f"unknown precision {spec.precision!r}. Valid precisions: auto, bf16, fp32")
    return PROFILES[name]


def _methods(spec: Spec, host: Host) -> tuple[Configured, ...]:
    names = spec.methods
    if names is not None:
        if not names:
            raise UsageError("no method given: name at least one (or leave --methods out for all)")
        names = [n for n in names if n not in REFERENCE_ROWS]  # the reference rows are always there
    methods = _configured(host.methods, names, spec.params, "--param")
    return methods


def _scenarios(spec: Spec, host: Host) -> tuple[Configured, ...]:
    """The scenarios, each with the --scenario-option values it declares; an option no scenario declares
    is refused (a typo would otherwise silently build the default forget set)."""
    names = list(dict.fromkeys(spec.scenarios or []))
    if not names:
        raise UsageError("no scenario given: name at least one, e.g. --scenarios random,targeted-red")
    options = dict(spec.scenario_options or {})
    scenarios = []
    for name in names:
        try:
            component = host.scenarios.get(name)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        scenarios.append(_one(host.scenarios, name, {k: v for k, v in options.items() if k in component.space}))
    stray = sorted(k for k in options if not any(k in s.component.space for s in scenarios))
    if stray:
        declared = sorted({k for s in scenarios for k in s.component.space}) or ["(none)"]
        raise UsageError(f"--scenario-option {', '.join(stray)}: not a parameter of scenario(s) {', '.join(names)}; "
                         f"they take: {', '.join(declared)}")
    return tuple(scenarios)


def _epochs(spec: Spec, methods: tuple[Configured, ...]) -> tuple[float, ...]:
    """Epoch budgets, checked against every method that has an `epochs` parameter: it must accept each
    budget, and no --param may set `epochs` as well. Methods without one do not train by epochs and run
    once (see Plan.cells); naming only such methods with --epochs is a mistake."""
    if spec.epochs is None:
        return ()
    budgets = tuple(dict.fromkeys(spec.epochs))
    if not budgets:
        raise UsageError("--epochs names no budget; leave it out to use each method's own epochs")
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise UsageError(f"epoch budget {b!r} is not valid: budgets are positive numbers")
    if methods and not any("epochs" in m.component.space for m in methods):
        raise UsageError(f"--epochs sets each method's `epochs`, and {', '.join(m.name for m in methods)} "
                         f"has none; drop --epochs")
    for m in methods:
        if "epochs" not in m.component.space:
            continue
        if "epochs" in (spec.params.get(m.name) or {}):
            raise UsageError(f"{m.name}.epochs is given by --param and by --epochs; give one")
        for b in budgets:
            try:
                m.component.resolve({**m.params, "epochs": b})
            except ValueError as exc:
                raise UsageError(f"--epochs {b:g}: {exc}") from None
    return budgets


def _configured(registry: Registry, names: list[str] | None, options: dict, flag: str) -> tuple[Configured, ...]:
    """Components by name (None: all registered) with their parameters resolved; options for components
    not in the run are refused rather than silently ignored."""
    if names is None:
        names = registry.names()
    names = list(dict.fromkeys(names))
    stray = sorted(set(options) - set(names))
    if stray:
        raise UsageError(f"{flag} given for {registry.kind}(s) not in this run: {', '.join(stray)}")
    return tuple(_one(registry, name, options.get(name)) for name in names)


def _one(registry: Registry, name: str, options: dict | None) -> Configured:
    try:
        component: Component = registry.get(name)
        return Configured(component, component.resolve(options))
    except (LookupError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _seeds(seeds) -> tuple[int, ...]:
    if not seeds:
        raise UsageError("no seeds given")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UsageError(f"seed {seed!r} is not valid: seeds are integers in [0, {MAX_SEED}]")
    return tuple(dict.fromkeys(seeds))


def _check_writable_folder(path: Path, what: str) -> None:
    """`path` is, or can be created as, a folder we can write to; nothing is created here."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {path} is not writable")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} cannot be created: {parent} is not a writable folder")


def _precision(requested: str, device, model: Configured, num_classes: int, channels_last: bool,
               cache: Path) -> tuple[str, dict | None]:
    """'auto': the precision that trains `model` faster on this device, measured once per machine and
    torch version (about 10 s on a 2-core CPU) and remembered in the cache folder."""
    if requested != "auto":
        return requested, None
    key = f"{engine.device_name(device)} | torch {torch.__version__} | {model.name} {dict(model.params)} | " \
          f"channels_last={channels_last}"
    path = cache / "precision.json"
    known = {}
    if path.exists():
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
    if key not in known:
        speeds = engine.precision_speeds(lambda: model.component.fn(num_classes, **model.params), device,
                                         channels_last=channels_last)
        known[key] = {"choice": max(speeds, key=speeds.get), "img_per_s": speeds}
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return known[key]["choice"], known[key]["img_per_s"]
