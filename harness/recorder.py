"""Recording cells: one way to write a cell as a run, and one way to find a cell already done.

Every caller that evaluates a cell (the serial runner, a benchmark worker, a tuning trial, the held-out
evaluation of a study) records it here, so a cell's run looks the same wherever it ran: one child run of
the caller's parent with the cell's tags (method, scenario, epoch budget, seed, split and cell hash),
its parameters, per-epoch curves, metrics, attack tables and errors, and its status. `Recorder.finished`
is the reuse lookup: a cell FINISHED anywhere in the experiment, under any parent, by its hash.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import __version__, engine
from .cell import Callbacks, Cell, CellResult, evaluate_cell
from .plan import Plan
from .reference_models import ORIGINAL_SEED, SplitModels
from .tracking import FAILED, FINISHED, KILLED, TrackedRun, Tracker, git_commit

log = logging.getLogger(__name__)
CELL_RUN = "child"  # the run_kind tag of a cell's run (the reuse lookup searches for it)


@dataclass
class Recorded:
    """A cell as recorded: its status, metrics and run, the failures it adds to the run's list (the
    cell's own and each of its attacks'), and the evaluation itself (None when reused)."""

    cell: Cell
    status: str
    metrics: dict
    run_id: str
    error: str | None = None
    failures: list[dict] = field(default_factory=list)  # {"method", "seed", "error", "run_id", "where"}
    result: CellResult | None = None
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    def row(self) -> dict:
        """The cell as a result row (what reports and the terminal summary read)."""
        cell = self.cell
        return {"method": cell.name, "scenario": cell.split.scenario, "epochs": cell.budget, "seed": cell.split.seed,
                "status": self.status, "run_id": self.run_id, "cell_hash": cell.hash, **self.metrics}


def finished(tracker: Tracker, cells: Iterable[Cell]) -> dict[str, Recorded]:
    """The cells among `cells` already FINISHED in the tracker's experiment, by hash, whichever parent and
    caller recorded them: what every caller reuses instead of running a cell again."""
    by_hash = {c.hash: c for c in cells}
    done = tracker.finished_cells(set(by_hash))
    return {h: Recorded(by_hash[h], FINISHED, dict(d["metrics"]), d["run_id"], reused=True) for h, d in done.items()}


class Recorder:
    """Records the cells of one plan as child runs of `parent` in `tracker`."""

    def __init__(self, tracker: Tracker, parent: TrackedRun, plan: Plan, *, log_models: bool = False,
                 tags: dict | None = None):
        self.tracker, self.parent, self.plan, self.log_models = tracker, parent, plan, log_models
        self.tags = {"harness_version": __version__, "git_commit": git_commit(), "device": str(plan.device),
                     "device_name": engine.device_name(plan.device), "profile": plan.profile.name,
                     "model": plan.model.name, **(tags or {})}
        self.active: TrackedRun | None = None  # the cell's run while it is being evaluated

    def finished(self, cells: Iterable[Cell]) -> dict[str, Recorded]:
        return finished(self.tracker, cells)

    def label(self, cell: Cell) -> str:
        """'simple e=5 targeted-red seed=0': the run's name and log lines (budget and scenario only where the
        plan has several)."""
        return " ".join([cell.name, *([f"e={cell.budget:g}"] if cell.budget is not None else []),
                         *([cell.split.scenario] if len(self.plan.scenarios) > 1 else []), f"seed={cell.split.seed}"])

    def record(self, cell: Cell, models: SplitModels, *, name: str | None = None, tags: dict | None = None,
               on_epoch: Callable[[int, dict], None] | None = None) -> Recorded:
        """Evaluate `cell` on `models` into a new child run and end it with the cell's status. `on_epoch`
        follows the epochs besides the run's curves; what it raises (a tuner's pruning, Ctrl-C) ends the run
        KILLED and reaches the caller."""
        split, site = cell.split, self.plan.site
        budget = "" if cell.budget is None else f"{cell.budget:g}"
        child = self.tracker.start_child(self.parent, name or self.label(cell), tags={
            **self.tags, "run_kind": CELL_RUN, "method": cell.name, "scenario": split.scenario, "epochs": budget,
            "seed": split.seed, "split_hash": split.hash, "cell_hash": cell.hash, **(tags or {})})
        self.active = child
        child.log_params({**cell.params, **self._split_params(cell)})

        stopped_by_caller = []

        def epoch(e: int, metrics: dict) -> None:
            child.log_metrics(metrics, step=e)
            if on_epoch is not None:
                try:
                    on_epoch(e, metrics)
                except BaseException:
                    stopped_by_caller.append(True)
                    raise

        try:
            result = evaluate_cell(cell, models, Callbacks(on_epoch=epoch), show_progress=site.show_progress,
                                   epoch_eval_size=self.plan.spec.epoch_eval_size)
        except BaseException as exc:  # stopped (pruned, Ctrl-C, SIGTERM) or the harness itself failed
            stopped = bool(stopped_by_caller) or isinstance(exc, (KeyboardInterrupt, SystemExit))
            child.set_tags({"end_reason": (f"{type(exc).__name__}: {exc}".strip(": "))[:500]})
            child.end(KILLED if stopped else FAILED)
            self.active = None
            raise
        recorded = self._write(child, result, models)
        self.active = None
        return recorded

    def _write(self, child: TrackedRun, result: CellResult, models: SplitModels) -> Recorded:
        cell, split = result.cell, result.cell.split
        if cell.method is None:  # reference rows: their training curves and checkpoints
            for row in result.history:
                child.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            child.set_tags(result.info)
            if self.log_models and (cell.name == "retrain" or split.seed == self.plan.seeds[0]):
                child.log_artifact(models.service.cache.path(result.info["cache_key"]), "model")
        child.log_metrics(result.metrics)
        for name, table in result.tables.items():
            child.log_dict(json.loads(table.to_json(orient="split", index=False)), f"attacks/{name}.json")
        if result.skipped:
            child.set_tags({"skipped_attacks": ",".join(result.skipped)})
        failures = []
        for name, text in result.attack_errors.items():
            child.log_text(text, f"attack_errors/{name}.txt")
            failures.append({"method": cell.name, "seed": split.seed, "run_id": child.run_id,
                             "error": f"attack {name} failed: {text.splitlines()[0]}",
                             "where": child.location(f"attack_errors/{name}.txt")})
        if result.ok:
            if result.attack_errors:
                child.set_tags({"attack_errors": ",".join(result.attack_errors)})
        else:
            child.log_text(result.traceback or result.error or "", "traceback.txt")
            child.set_tags({"error": (result.error or "")[:500]})
            failures.append({"method": cell.name, "seed": split.seed, "error": result.error, "run_id": child.run_id,
                             "where": child.location("traceback.txt")})
            log.error("%s FAILED: %s (run %s)", self.label(cell), result.error, child.run_id)
        child.end(result.status)
        return Recorded(cell, result.status, dict(result.metrics), child.run_id, result.error, failures, result)

    def _split_params(self, cell: Cell) -> dict:
        split, p = cell.split, self.plan
        extra = {"train_seed": ORIGINAL_SEED, **p.profile.recipe.as_dict()} if cell.name == "original" else {}
        return {**extra, "seed": split.seed, "scenario": split.scenario, "profile": p.profile.name,
                "split_hash": split.hash, "model": p.model.name, "precision": p.profile.precision,
                **{f"n_{k}": v for k, v in split.sizes().items()},
                **{f"scenario_{k}": v for k, v in {**split.options, **split.info}.items()}}
