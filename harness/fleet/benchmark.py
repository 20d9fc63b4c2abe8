"""One benchmark, many workers: `unlearn run --benchmark NAME --storage URL` and `unlearn worker`.

The benchmark's cells are the trials of an Optuna study in an RDB (PostgreSQL) or journal storage, the
engine the tuner already uses: `publish` creates the study, enqueues one trial per cell and creates the
MLflow parent run; each worker asks the study for the next waiting trial, runs that cell under the
parent, and tells the trial. Optuna's heartbeats fail the trial of a worker that died (a worker on the
same host sees the dead pid at once) and the retry callback queues the cell again; no queue or lock of
our own. The worker that finds nothing waiting or running writes the benchmark's summary and ends the
parent.

Every worker plans the benchmark's configuration itself (its own data folder, cache and device) and
must arrive at the same plan hash: a worker with another harness version, data copy or precision is
refused before it takes a cell, so results from different setups are never mixed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .. import RESULTS_VERSION, __version__
from ..cell import Cell
from ..plan import Plan
from ..recorder import finished
from ..runner import Runner, RunResult
from ..spec import Site, Spec, UsageError
from ..splits import Split
from ..tracking import FAILED, FINISHED, MlflowStore, MlflowTracker
from .storage import (
    StorageError,
    StudyStorage,
    fail_dead_local_trials,
    fail_stale_trials,
    resolve_storage,
    retry,
    trial_by_number,
    worker_id,
)

log = logging.getLogger(__name__)
KIND = "unlearning-benchmark"  # the study attribute that tells a benchmark from a tuning study
POLL_S = 2.0  # how often an idle worker looks for cells queued again after a worker died


class BenchmarkError(RuntimeError):
    """A benchmark that cannot be joined: missing, not a benchmark, or planned differently here."""


@dataclass
class Benchmark:
    """An open benchmark: its study, its configuration as planned on this worker, and its parent run."""

    study: object  # optuna.Study
    plan: Plan
    runner: Runner
    parent_id: str
    cells: list[tuple[Split, Cell]]  # trial parameter `cell` indexes this list


def storage_for(url: str, folder) -> StudyStorage:
    """The study storage of a benchmark: PostgreSQL (several machines) or a journal file (one machine)."""
    try:
        return resolve_storage(url, workers=2, folder=folder, flag_optional=False)
    except StorageError as exc:
        raise UsageError(str(exc)) from None


def publish(p: Plan, tracker: MlflowTracker, storage: StudyStorage, name: str, heartbeat: int = 10) -> Benchmark:
    """Create benchmark `name` (study, queued cells, parent run), or join it if it exists with this same
    configuration. The first of several publishers to create the study does the rest; the others join."""
    import optuna

    handle = storage.open(heartbeat, on_stale=_on_stale)
    try:
        study = optuna.create_study(study_name=name, storage=handle)
    except optuna.exceptions.DuplicatedStudyError:
        return join(name, storage, p.site, heartbeat=heartbeat, tracker=tracker, planned=p)
    cells = _cells(p)
    runner = Runner(p, tracker)
    parent = runner.new_parent()
    parent.set_tags({"benchmark": name, "study_storage": storage.display})
    for key, value in {"spec": p.spec.to_dict(), "plan_hash": p.hash, "harness": __version__,
                       "parent_run_id": parent.run_id, "tracking_uri": tracker.uri, "experiment": p.experiment,
                       "facts": _facts(p)}.items():
        study.set_user_attr(key, value)
    for i, (_, cell) in enumerate(cells):
        study.enqueue_trial({"cell": i}, user_attrs={"cell_hash": cell.hash, "method": cell.name})
    study.set_user_attr("kind", KIND)  # last: a joiner waits for it, so it never sees half a benchmark
    log.info("benchmark %s: %d cells queued in %s; parent run %s", name, len(cells), storage.display, parent.run_id)
    return Benchmark(study, p, runner, parent.run_id, cells)


def join(name: str, storage: StudyStorage, site: Site, *, heartbeat: int = 10,
         tracker: MlflowTracker | None = None, planned: Plan | None = None, wait_s: float = 60.0) -> Benchmark:
    """Open benchmark `name` as a worker: its spec run at this machine's `site` (data folder, cache, device;
    its tracking URI, or the publisher's), planned here and checked against the publisher's plan."""
    import optuna

    from ..plan import plan

    handle = storage.open(heartbeat, on_stale=_on_stale)
    deadline = time.time() + wait_s
    while True:  # workers may start before the publisher has created the study
        try:
            study = optuna.load_study(study_name=name, storage=handle)
            break
        except KeyError:
            if time.time() > deadline:
                names = sorted(s.study_name for s in optuna.get_all_study_summaries(handle)
                               if s.user_attrs.get("kind") == KIND)
                raise BenchmarkError(f"no benchmark named {name!r} in {storage.display} after {wait_s:.0f} s; "
                                     f"benchmarks there: {', '.join(names) or '(none)'}. Publish it with "
                                     f"`unlearn run --benchmark {name} --storage ...`") from None
            time.sleep(1.0)
    while study.user_attrs.get("kind") != KIND:  # the publisher may still be queueing its cells
        if "plan_hash" not in study.user_attrs and time.time() > deadline:
            raise BenchmarkError(f"study {name!r} in {storage.display} is not a benchmark of `unlearn run`")
        if time.time() > deadline:
            raise BenchmarkError(f"benchmark {name!r} is still being published after {wait_s:.0f} s")
        time.sleep(0.5)
    attrs = study.user_attrs
    if planned is None:
        site = site.with_(tracking_uri=site.tracking_uri or attrs["tracking_uri"], experiment=attrs["experiment"])
        planned = plan(Spec.from_dict(attrs["spec"], source=f"benchmark {name}"), site)
    if planned.hash != attrs["plan_hash"]:
        raise BenchmarkError(f"benchmark {name!r} was planned differently on its publisher: "
                             f"{_difference(attrs.get('facts', {}), _facts(planned))}; this worker would mix results")
    tracker = tracker or MlflowTracker(planned.site.tracking_uri, attrs["experiment"])
    return Benchmark(study, planned, Runner(planned, tracker), attrs["parent_run_id"], _cells(planned))


class SpareTrial(Exception):
    """The study made a new trial because another worker took the last queued cell first: nothing to run."""


def work(bench: Benchmark) -> list[dict]:
    """Take cells until none is waiting or running, run each under the benchmark's parent, and finish the
    benchmark if this worker saw the last one end. Returns the failures of the cells this worker ran.

    Each cell is one `study.optimize(n_trials=1)`: Optuna pops the next queued trial and keeps its
    heartbeat while the cell runs."""
    from optuna.trial import TrialState

    study, runner = bench.study, bench.runner
    parent = runner.tracker.reopen(bench.parent_id)
    models_by_split: dict[str, object] = {}
    current: list = []

    def run_one(trial) -> float:
        current[:] = [trial]
        if "cell_hash" not in trial.user_attrs:
            trial.set_user_attr("note", "spare trial: no cell was left")
            raise SpareTrial()
        split, cell = bench.cells[trial.suggest_int("cell", 0, len(bench.cells) - 1)]
        trial.set_user_attr("worker", worker_id())
        if finished(runner.tracker, [cell]):  # done under an earlier run or by another worker
            trial.set_user_attr("status", "reused")
            return 0.0
        runner.tracker.kill_running_children(bench.parent_id, cell.hash)  # a dead worker's attempt
        if split.hash not in models_by_split:
            models_by_split[split.hash] = runner.models.for_split(split, bank_size=bench.plan.bank_size)
        trial.set_user_attr("status", runner.run_cell(parent, cell, models_by_split[split.hash]).status)
        return 0.0

    while True:
        fail_stale_trials(study)  # RDB heartbeats: a dead worker's cell is failed and queued again
        fail_dead_local_trials(study)  # on this host the dead pid is seen at once
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if TrialState.WAITING not in states:
            if TrialState.RUNNING in states:
                time.sleep(POLL_S)  # another worker's cell may yet be queued again
                continue
            break
        try:
            study.optimize(run_one, n_trials=1, catch=(SpareTrial,), gc_after_trial=False)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the cell goes back to the queue for another worker
            if current and "cell_hash" in current[0].user_attrs:
                retry(study, trial_by_number(study, current[0].number), "its worker was stopped")
            raise
    finish(bench, parent)
    return runner.failures


def finish(bench: Benchmark, parent) -> RunResult:
    """The benchmark's results from the store (one row per cell, whoever ran it), its summary, and the
    parent's end. Idempotent: two workers ending together write the same files."""
    rows = MlflowStore(bench.runner.tracker.uri).rows(bench.parent_id)
    failures = [{"method": r["method"], "seed": r["seed"], "run_id": r["run_id"], "where": r["run_id"],
                 "error": r.get("error") or r["status"]} for r in rows if r["status"] != FINISHED]
    result = RunResult(rows, failures, bench.parent_id, {k: s.hash for k, s in bench.plan.splits.items()})
    bench.runner.log_summary(parent, result)
    parent.end(FAILED if failures else FINISHED)
    from ..reporting.run_report import publish_after_run

    publish_after_run(bench.runner.tracker.uri, bench.parent_id)
    return result


def _cells(p: Plan) -> list[tuple[Split, Cell]]:
    return [(split, cell) for split in p.work() for cell in p.cells(split)]


def _facts(p: Plan) -> dict:
    """What must agree between workers for their cells to be comparable (part of the plan hash)."""
    return {"results version": RESULTS_VERSION, "data fingerprint": p.data.fingerprint, "profile": p.profile.as_dict(),
            "model": p.model.name, "references": p.bank_size}


def _difference(theirs: dict, ours: dict) -> str:
    diffs = [f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in ours if theirs.get(k) != ours.get(k)]
    return "; ".join(diffs) or "the cells differ (another plugin version?)"


def _on_stale(study, trial) -> None:
    retry(study, trial, "its worker stopped sending heartbeats")
