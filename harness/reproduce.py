"""`unlearn reproduce RUN_ID`: run one logged cell again from its parent's resolved configuration and
compare every metric with the logged one.

The cell is rebuilt, not guessed: the parent's config.json holds every resolved parameter, and the
child's tags name the method, scenario, seed and epoch budget; the rebuilt cell must have the logged
cell hash, or the reproduction says what differs (harness version, data, plugin versions) before it
runs anything. On the same machine the numbers come out equal; timings are reported, never compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import __version__
from .cell import REFERENCE_ROWS
from .plan import plan
from .spec import Site, Spec

TIMINGS = ("unlearn_seconds", "retrain_seconds", "pct_retrain_time", "eval_overhead_seconds", "rerun_seconds",
           "train_seconds", "retrain_seconds_recorded", "attack_seconds/", "epoch_seconds", "epoch_pct_retrain")


class CannotReproduce(RuntimeError):
    """The logged cell cannot be rebuilt here (what differs is in the message)."""


@dataclass
class Comparison:
    metric: str
    logged: float
    now: float
    timing: bool

    @property
    def difference(self) -> float:
        return self.now - self.logged

    @property
    def same(self) -> bool:
        return self.timing or self.now == self.logged or (math.isnan(self.now) and math.isnan(self.logged))


def rebuild(store, run_id: str, site: Site):
    """(plan, split, cell, logged metrics, warnings) of child run `run_id`, planned at this machine's `site`
    (data folder, cache, device). Raises CannotReproduce when the cell hash does not match."""
    child = store.client.get_run(run_id)
    tags = child.data.tags
    if tags.get("run_kind") != "child" or "mlflow.parentRunId" not in tags:
        raise CannotReproduce(f"run {run_id} is not a cell (no parent run, run_kind {tags.get('run_kind')!r})")
    parent_id = tags["mlflow.parentRunId"]
    parent = store.client.get_run(parent_id)
    if parent.data.tags.get("run_kind") != "parent":
        raise CannotReproduce(f"run {run_id} is a cell of a tuning study ({parent.data.tags.get('run_kind')} run "
                              f"{parent_id}); reproduce runs cells of `unlearn run` and benchmarks")
    config = store.load_json(parent_id, "config.json")
    method, seed = tags["method"], int(tags["seed"])
    scenario = tags.get("scenario") or parent.data.params.get("scenario")
    budget = tags.get("epochs") or None
    spec = _cell_spec(config, parent.data.params, method, scenario, seed, budget)
    p = plan(spec, site)
    warnings = _differences(tags, config, p)
    split = p.split(seed, scenario)
    cell = next((c for c in p.cells(split) if c.hash == tags.get("cell_hash")), None)
    if cell is None:
        raise CannotReproduce("this machine plans a different cell (cell hash differs)"
                              + (": " + "; ".join(warnings) if warnings else ": same harness, data and plugins, "
                                 "so a parameter's default or range changed"))
    return p, split, cell, dict(child.data.metrics), warnings


def _cell_spec(config: dict, params: dict, method: str, scenario: str, seed: int, budget: str | None) -> Spec:
    """The spec of one logged cell: the parent's spec narrowed to the cell's method (none for a reference
    row), scenario, seed and budget, with the method's parameters as they were resolved. Parents logged
    before config.json carried the spec are read from their resolved sections."""
    resolved = {} if method in REFERENCE_ROWS else {method: dict(config["methods"][method])}
    if budget is not None:
        resolved[method].pop("epochs", None)
    if "spec" in config:
        spec = Spec.from_dict(config["spec"], source="the logged config.json")
    else:
        spec = Spec(profile=config["profile"]["name"], precision=params.get("precision"),
                    model=config["model"]["name"], model_options=dict(config["model"]["params"]),
                    attacks=tuple(config["attacks"]), attack_options={a: dict(p) for a, p in config["attacks"].items()},
                    bank_size=config.get("references", 0))
    scenario_params = config["scenarios"][scenario] if "scenarios" in config else config["scenario"]["params"]
    return spec.with_(methods=[method], params=resolved, scenarios=[scenario], scenario_options=dict(scenario_params),
                      seeds=[seed], epochs=[float(budget) if "." in budget else int(budget)] if budget else None,
                      precision=params.get("precision") or spec.precision)  # as resolved where it ran


def reproduce(store, run_id: str, site: Site, on_warning=print) -> list[Comparison]:
    """Rebuild and run the cell again; every logged metric beside its new value."""
    from .cell import evaluate_cell

    p, split, cell, logged, warnings = rebuild(store, run_id, site)
    for w in warnings:
        on_warning(w)
    refs = p.reference_models().for_split(split, bank_size=p.bank_size)
    result = evaluate_cell(cell, refs, show_progress=site.show_progress)
    if not result.ok:
        raise CannotReproduce(f"the cell failed this time: {result.error}")
    names = sorted(set(logged) & set(result.metrics))
    return [Comparison(n, logged[n], result.metrics[n], _is_timing(n)) for n in names
            if not n.startswith("epoch_")]


def _is_timing(name: str) -> bool:
    return any(name == t or (t.endswith("/") and name.startswith(t)) for t in TIMINGS)


def _differences(tags: dict, config: dict, p) -> list[str]:
    """What differs between the logged run and this machine's plan of it: harness, data, plugins."""
    out = []
    if tags.get("harness_version") not in (None, __version__):
        out.append(f"harness version {tags['harness_version']} logged, {__version__} here")
    logged_data = config.get("data", {}).get("fingerprint")
    if logged_data and logged_data != p.data.fingerprint:
        out.append(f"data fingerprint {logged_data} logged, {p.data.fingerprint} here ({p.data.source})")
    logged, here = config.get("plugins", {}), p.sources()
    out += [f"{name}: {logged[name]} logged, {here.get(name, 'not installed')} here"
            for name in sorted(logged) if logged[name] != here.get(name)]
    return out
