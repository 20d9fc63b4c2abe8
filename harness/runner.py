"""`unlearn run`: a loop over the cells of a plan, each logged as a child run of one parent run.

Planning (plan.py), the reference models (reference_models.py), a cell's work (cell.py) and its record
(recorder.py) live elsewhere; this module orders the cells, reuses finished ones and keeps the parent.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass

import pandas as pd

from . import __version__
from .cell import Cell
from .host import Host
from .metrics import UTILITY
from .owners import dead_here, on_this_host, worker_id
from .plan import Plan, plan
from .recorder import Recorded, Recorder, finished
from .reference_models import SplitModels
from .reporting.mlflow_view import view_groups, write_benchmark_view
from .reporting.tables import columns
from .spec import Site, Spec
from .tracking import FAILED, FINISHED, KILLED, RUNNING, MemoryTracker, TrackedRun, Tracker, git_commit

log = logging.getLogger(__name__)
HEARTBEAT_S = 30  # how often a running parent says it is alive
STALE_S = 300  # a parent on another host silent this long is taken for dead


class RunInProgress(RuntimeError):
    """The run of this configuration is still owned by a live process: continuing it here would run every
    remaining cell twice."""


def owner_alive(tags: dict, now: float | None = None) -> bool:
    """Whether the process that owns a run (its `owner` and `heartbeat` tags) is still running it: on this
    host the kernel knows; elsewhere a heartbeat younger than STALE_S says so."""
    owner = tags.get("owner", "")
    if ":" not in owner:
        return False  # written before owners were recorded: nobody can be running it
    if on_this_host(owner):
        return not dead_here(owner)
    try:
        return (now or time.time()) - float(tags.get("heartbeat", 0)) < STALE_S
    except ValueError:
        return False


class Heartbeat:
    """Refreshes the parent's `heartbeat` tag from a daemon thread while the run is alive."""

    def __init__(self, run, interval: float = HEARTBEAT_S):
        self.run, self.interval, self._stop = run, interval, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="harness-heartbeat")

    def __enter__(self):
        self.run.set_tags({"owner": worker_id(), "heartbeat": f"{time.time():.0f}"})
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.interval):
            try:
                self.run.set_tags({"heartbeat": f"{time.time():.0f}"})
            except Exception as exc:  # a store hiccup must not kill the run; the next beat retries
                log.debug("heartbeat not written: %s", exc)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class RunResult:
    rows: list[dict]
    failures: list[dict]  # {"method", "seed", "error", "run_id", "where"}; attack failures name the attack
    parent_run_id: str | None
    split_hashes: dict[tuple[str, int], str]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> pd.DataFrame:
        return summarize(self.frame())

    def summaries(self) -> list[tuple[str, pd.DataFrame]]:
        """(title, mean and std per method) per scenario and epoch budget: the terminal's tables."""
        from .reporting.analysis import group_title, groups

        frame = self.frame()
        if frame.empty:
            return []
        return [(group_title(*key), summarize(rows)) for key, rows in groups(frame)]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every numeric metric, one row per method in run order
    (reference rows first); FINISHED rows only. Give it one scenario and budget (see RunResult.summaries)."""
    if frame.empty:
        return frame
    df = frame[frame["status"] == FINISHED]
    cols = [c for c in df.columns if c not in ("method", "scenario", "epochs", "seed", "status", "run_id", "error",
                                               "cell_hash") and pd.api.types.is_numeric_dtype(df[c])]
    grouped = df.groupby("method", sort=False)[cols]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    out = pd.concat([mean, std.add_suffix("_std")], axis=1)
    out.insert(0, "seeds", grouped.size())
    return out


def run(spec: Spec, site: Site | None = None, host: Host | None = None, tracker: Tracker | None = None) -> RunResult:
    """Plan and run `spec` at `site` (the Python API). Runs go to `tracker`; without one, to the site's
    tracking store if it names one, else they are kept in memory."""
    p = plan(spec, site, host)
    if tracker is None:
        from .tracking import MlflowTracker

        tracker = MlflowTracker(p.site.tracking_uri, p.experiment) if p.site.tracking_uri else MemoryTracker()
    return Runner(p, tracker).run()


class Runner:
    def __init__(self, p: Plan, tracker: Tracker):
        self.p, self.tracker, self.site = p, tracker, p.site
        self.models = p.reference_models()
        self.recorder: Recorder | None = None  # made with the parent run
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.attack_columns = {c for c, _ in columns(p.attack_metrics) if "/" in c}  # shown in log lines

    def run(self) -> RunResult:
        p = self.p
        parent, done = self._open_parent()
        for name, why in p.skipped_attacks().items():
            log.warning("attack %s skipped: %s", name, why)
        with Heartbeat(parent):
            return self._run_cells(parent, done)

    def recorder_for(self, parent: TrackedRun) -> Recorder:
        if self.recorder is None or self.recorder.parent.run_id != parent.run_id:
            self.recorder = Recorder(self.tracker, parent, self.p, log_models=self.site.log_models,
                                     tags={"scenario": "+".join(s.name for s in self.p.scenarios)})
        return self.recorder

    def _run_cells(self, parent: TrackedRun, done: dict[str, Recorded]) -> RunResult:
        p = self.p
        try:
            for split in p.work():
                cells = p.cells(split)
                if all(c.hash in done for c in cells):  # nothing to run: not even the references are needed
                    self.rows += [done[c.hash].row() for c in cells]
                    continue
                models = self.models.for_split(split, bank_size=p.bank_size)
                for cell in cells:
                    if cell.hash in done:
                        self.rows.append(done[cell.hash].row())
                    else:
                        self.run_cell(parent, cell, models)
        except KeyboardInterrupt:
            parent.set_tags({"interrupted": "true"})
            parent.end(KILLED)
            raise
        except BaseException:
            parent.log_text(traceback.format_exc(), "traceback.txt")
            parent.end(FAILED)
            raise
        result = RunResult(self.rows, self.failures, parent.run_id, {k: s.hash for k, s in p.splits.items()})
        self.log_summary(parent, result)
        parent.end(FAILED if self.failures else FINISHED)
        return result

    def _open_parent(self) -> tuple[TrackedRun, dict[str, Recorded]]:
        """The parent run of this configuration (a new one, or the earlier one reopened) and the cells
        already FINISHED in the experiment, by cell hash. A rerun of the same command runs only what is
        missing; --rerun runs everything again under a new parent."""
        p = self.p
        if self.site.rerun:
            return self.new_parent(), {}
        done = finished(self.tracker, [c for split in p.work() for c in p.cells(split)])
        found = self.tracker.find_parent(p.hash)
        if found is None:
            parent = self.new_parent()
        else:
            if found["status"] == RUNNING and owner_alive(found["tags"]):
                raise RunInProgress(
                    f"run {found['run_id']} of this configuration is still running "
                    f"(owner {found['tags'].get('owner')}); "
                    f"wait for it or stop it (Ctrl-C or SIGTERM), then run the same command again")
            orphans = self.tracker.kill_running_children(found["run_id"])
            if orphans:
                log.info("run %s: %d cell(s) left RUNNING by a dead process marked KILLED", found["run_id"], orphans)
            parent = self.tracker.reopen(found["run_id"])
            parent.set_tags({"interrupted": "false"})
        write_benchmark_view(self.tracker, p.attack_metrics, group_by=view_groups(len(p.scenarios), bool(p.epochs)))
        log.info("%s run %s: %d of %d cell(s) already FINISHED in the experiment are reused (--rerun runs them again)",
                 "continuing" if found else "new", parent.run_id, len(done), sum(len(p.cells(s)) for s in p.work()))
        return parent, done

    def new_parent(self) -> TrackedRun:
        p = self.p
        parent = self.tracker.start_parent(f"{p.profile.name}-{'+'.join(s.name for s in p.scenarios)}",
                                           tags=self._tags(run_kind="parent", config_hash=p.hash,
                                                           command=self.site.command))
        parent.log_params(self._parent_params())
        parent.log_dict(p.describe(), "config.json")
        parent.log_dict([self._cell_entry(c) for split in p.work() for c in p.cells(split)], "cells.json")
        self._log_forget_examples(parent)
        return parent

    @staticmethod
    def _cell_entry(cell: Cell) -> dict:
        return {"cell_hash": cell.hash, "method": cell.name, "scenario": cell.split.scenario,
                "seed": cell.split.seed, "epochs": cell.budget}

    def _log_forget_examples(self, parent: TrackedRun) -> None:
        """A grid of each split's forget images (`forget_examples/<scenario>-seed<N>.png`): what the scenario chose."""
        from .reporting.tables import forget_grid

        data = self.p.data
        for split in self.p.work():
            seed = split.seed
            idx = split.forget[:32].to(data.images.device)
            try:
                parent.log_figure(forget_grid(data.images[idx], data.labels[idx], data.classes,
                                              f"{split.scenario}, seed {seed}: {len(split.forget)} forget images"),
                                  f"forget_examples/{split.scenario}-seed{seed}.png")
            except Exception as exc:  # a plotting problem must not stop a benchmark
                log.warning("forget examples not logged: %s", exc)

    def run_cell(self, parent: TrackedRun, cell: Cell, models: SplitModels) -> Recorded:
        """Evaluate and record one cell under `parent`; its row and failures join the run's."""
        recorded = self.recorder_for(parent).record(cell, models)
        self.rows.append(recorded.row())
        self.failures += recorded.failures
        if recorded.ok:
            self._log_line(recorded)
        return recorded

    def _log_line(self, recorded: Recorded) -> None:
        cell, m, result = recorded.cell, recorded.metrics, recorded.result
        head = f"{self.recorder.label(cell)}:"
        if cell.name == "original":
            head += f" trained in {m['train_seconds']:.1f} s (cached: {result.info['cached']})"
        elif "unlearn_seconds" in m:
            head += f" {m['unlearn_seconds']:.1f} s ({m['pct_retrain_time']:.1f}% of retrain)"
        shown = [f"{UTILITY[k].label} {m[k]:.3f}" for k in ("acc_retain", "acc_forget", "acc_validation",
                                                              "forget_val_ratio") if k in m]
        shown += [f"{k} {v:.3f}" for k, v in m.items() if k in self.attack_columns]
        log.info("%s; %s", head, ", ".join(shown))

    def _tags(self, **extra) -> dict:
        p = self.p
        return {"harness_version": __version__, "git_commit": git_commit(), "device": str(p.device),
                "device_name": self.models.device_name, "profile": p.profile.name,
                "scenario": "+".join(s.name for s in p.scenarios), "model": p.model.name, **extra}

    def _parent_params(self) -> dict:
        p = self.p
        speeds = {f"precision_img_per_s.{k}": round(v, 1) for k, v in (p.precision_speeds or {}).items()}
        return {"methods": ",".join(m.name for m in p.methods), "attacks": ",".join(a.name for a in p.attacks),
                "scenario": ",".join(s.name for s in p.scenarios), "seeds": ",".join(map(str, p.seeds)),
                "epochs": ",".join(f"{b:g}" for b in p.epochs) or "method defaults",
                "profile": p.profile.name, "model": p.model.name, "data_fingerprint": p.data.fingerprint,
                **{f"recipe.{k}": v for k, v in p.profile.recipe.as_dict().items()},
                "train_size": p.profile.train_size, "precision": p.profile.precision,
                "references": p.bank_size, **speeds}

    def log_summary(self, parent: TrackedRun, result: RunResult) -> None:
        """Every cell's row as results.json, and the failures (the report is made from the store)."""
        frame = result.frame()
        if frame.empty:
            return
        # log_dict rewrites the file; MLflow's log_table would append to it on every resume.
        parent.log_dict(json.loads(frame.to_json(orient="split", index=False, default_handler=str)), "results.json")
        if result.failures:
            parent.log_dict(result.failures, "failures.json")
