"""`unlearn tune`: an Optuna study per method, every trial an `evaluate_cell` on the tuning seeds.

Lineage: one MLflow parent run per study (its id stored in the study, the study's name and storage in
the parent's tags), one child per trial and one per held-out evaluation. Trials reuse the cached
original model, split and evaluation pass; nothing is retrained per trial but what the method does,
and the retrain model is not even loaded (no tuning signal may use it).

Counting: `--trials N` is the number of trials that *ended* (complete, pruned, or failed by the method
itself). A trial whose worker died is failed, queued again with the same parameters and not counted;
a trial that would exceed N because several workers started at once is refused before it runs.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..cell import Cell, evaluate_cell
from ..fleet.storage import (
    StorageError,
    StudyStorage,
    fail_dead_local_trials,
    fail_stale_trials,
    resolve_storage,
    retry,
    worker_id,
)
from ..host import Host, default_host
from ..params import ParamError
from ..plan import plan
from ..recorder import Recorder
from ..spec import Site, Spec, UsageError
from ..tracking import FAILED, FINISHED, KILLED, MemoryTracker, Tracker, git_commit
from .objective import PARETO, SCORE, Objective
from .space import SearchSpace, SpaceError, load_space_file, narrowed_space

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


def sampler_seed(base: int, workers: int, storage_kind: str) -> int:
    """The TPE seed of this process. Processes sharing a study must not draw the same random start-up
    points, so the seed is varied by process unless this is the study's only process: one launcher with
    `--workers 1` on a SQLite or journal file. A PostgreSQL study may be joined from other machines at any
    time, and pids repeat across machines and containers (each compose worker may be pid 7), so the
    host name is part of it."""
    if workers == 1 and not os.environ.get("HARNESS_TUNE_WORKER") and storage_kind != "rdb":
        return base
    return base + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())


@dataclass
class TuneConfig:
    """What `unlearn tune` asks for; see `harness.tune`.

    `spec` is the work each trial runs: its methods (one study each), its seeds (the tuning seeds), one
    scenario, the profile, model and attack options; the attack is the one `attack_metric` names.
    `site` is where this process runs it. The other fields are the study's own."""

    spec: Spec
    site: Site = field(default_factory=Site)
    trials: int = 20
    holdout_seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    objective: str = PARETO
    attack_metric: str = "mia/signed_auc"
    tolerance: float = 0.03
    time_budget: float = 20.0
    storage: str | None = None
    study: str | None = None  # None: "<method>-<scenario>-<profile>"
    timeout: float | None = None  # seconds; no new trial starts after it
    workers: int = 1
    space_file: str | None = None
    export: str | None = None
    sampler_seed: int = 0
    heartbeat: int = 10  # seconds between heartbeats of a trial on an RDB storage

    @property
    def methods(self) -> list[str]:
        return list(self.spec.methods or ())

    def to_dict(self) -> dict:
        """Plain data for a worker process (`from_dict` reads it back); spec and site as they serialise."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("spec", "site")}
        return {**out, "holdout_seeds": list(self.holdout_seeds), "spec": self.spec.to_dict(),
                "site": self.site.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> TuneConfig:
        data = dict(data)
        return cls(spec=Spec.from_dict(data.pop("spec")), site=Site.from_dict(data.pop("site")), **data)


class TrialFailed(Exception):
    """The method failed on these parameters: the trial ends FAIL and counts as one of the N."""


class SurplusTrial(Exception):
    """Workers started more trials than asked for at once: this one is refused before it runs."""


@dataclass
class Study:
    """One method's study, checked and opened (created if new), with what its trials need."""

    method: str
    space: SearchSpace
    objective: Objective
    optuna: Any  # optuna.Study
    storage: StudyStorage
    parent_run_id: str


@dataclass
class StudyResult:
    method: str
    study: str
    storage: str
    parent_run_id: str
    summary: dict  # what tuning.json holds


# -- planning ------------------------------------------------------------------------------------------
class Tuner:
    """Plans every study of `config` up front (bad input fails before any trial or run), then runs them."""

    def __init__(self, config: TuneConfig, host: Host | None = None, tracker: Tracker | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours (see _trial_line)
        self.cfg, self.host = config, host or default_host()
        self.tracker = tracker if tracker is not None else MemoryTracker()
        _check_numbers(config)
        attack, metric = _attack_metric(config.attack_metric)
        overlap = sorted(set(config.spec.seeds) & set(config.holdout_seeds))
        if overlap:
            raise UsageError(f"seed(s) {', '.join(map(str, overlap))} are both tuning and held-out seeds: a "
                             f"configuration must be judged on forget sets it was not chosen on")
        spec, site = config.spec, config.site
        if not spec.methods:
            raise UsageError("name a method to tune with --method")
        if len(spec.scenarios) != 1:
            raise UsageError(f"a study tunes on one scenario; got {', '.join(spec.scenarios)}")
        site = site.with_(experiment=site.experiment or f"tuning-{spec.scenarios[0]}")
        self.plan = plan(spec.with_(attacks=[attack], heldout_part="tune"), site, self.host)
        if not self.plan.methods:
            raise UsageError("no method to tune: name one with --method (the original and retrain rows are references)")
        self.holdout_plan = plan(spec.with_(seeds=config.holdout_seeds, attacks=[attack], heldout_part="judge"), site,
                                 self.host, data=self.plan.data) if config.holdout_seeds else None
        skipped = self.plan.skipped_attacks(retrain=False)
        if skipped:
            raise UsageError(f"attack {attack!r} cannot give the tuning signal: {skipped[attack]}")
        declared = self.plan.attacks[0].component.metrics
        if metric not in declared:
            raise UsageError(f"attack {attack!r} has no metric {metric!r}; its metrics: {', '.join(declared)}")
        if declared[metric].target is None and declared[metric].higher_is_better is None:
            raise UsageError(f"{config.attack_metric} declares no ideal value (target or direction): "
                             "it cannot be optimised")
        self.objective = Objective(config.objective, config.attack_metric, declared[metric], config.tolerance,
                                   config.time_budget)
        self.spaces = self._spaces()
        folder = _tracking_folder(config.site.tracking_uri)
        try:
            self.storage = resolve_storage(config.storage, config.workers, folder)
        except StorageError as exc:
            raise UsageError(str(exc)) from None
        self._models = None
        self._check_existing_studies()

    def _check_existing_studies(self) -> None:
        """A study of the same name made with other settings is refused now, before a store or run exists.
        (A file storage that is not there yet holds no study, and is not created here.)"""
        import optuna

        path = self.storage.path
        if path is not None and not path.exists():
            return
        storage = self.storage.open(self.cfg.heartbeat)
        known = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
        for m in self.plan.methods:
            name = self.study_name(m.name)
            if name in known:
                _check_signature(known[name], name, self.signature(m.name), self.objective.directions)

    @property
    def experiment(self) -> str:
        return self.plan.experiment

    def _spaces(self) -> dict[str, SearchSpace]:
        file = {}
        if self.cfg.space_file:
            try:
                file = load_space_file(self.cfg.space_file)
            except SpaceError as exc:
                raise UsageError(str(exc)) from None
        names = [m.name for m in self.plan.methods]
        stray = sorted(set(file) - set(names))
        if stray:
            raise UsageError(f"space file {self.cfg.space_file} has table(s) for {', '.join(stray)}, not tuned in this "
                             f"run; tuned: {', '.join(names)}")
        try:
            return {m.name: narrowed_space(m.component, file.get(m.name)) for m in self.plan.methods}
        except SpaceError as exc:
            raise UsageError(str(exc)) from None

    def study_name(self, method: str) -> str:
        base = self.cfg.study or f"{{method}}-{self.plan.scenario.name}-{self.plan.profile.name}"
        if "{method}" in base:
            return base.format(method=method)
        return base if len(self.plan.methods) == 1 else f"{base}-{method}"

    def signature(self, method: str) -> dict:
        """What a study is: a worker joining it, or a later command continuing it, must ask for the same."""
        p = self.plan
        return {"method": method, "objective": self.objective.describe(), "space": self.spaces[method].describe(),
                "profile": p.profile.name, "scenario": p.scenario.name, "scenario_params": dict(p.scenario.params),
                "seeds": list(p.seeds), "model": p.model.name, "model_params": dict(p.model.params),
                "attack": {a.name: dict(a.params) for a in p.attacks}}

    # -- opening studies -------------------------------------------------------------------------------
    def open_all(self) -> list[Study]:
        """Check (and create where new) every study before the first trial anywhere."""
        return [self.open(m.name) for m in self.plan.methods]

    def open(self, method: str, wait_for_parent: float = 60.0) -> Study:
        import optuna

        name, signature = self.study_name(method), self.signature(method)
        storage = self.storage.open(self.cfg.heartbeat, on_stale=self._on_stale)
        created = False
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=self.objective.directions,
                                        sampler=self._sampler(), pruner=self._pruner())
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=self._sampler(), pruner=self._pruner())
        except Exception as exc:
            raise UsageError(f"storage {self.storage.display}: cannot open study {name!r}: {exc}") from None
        if not created:
            _check_signature(study, name, signature, self.objective.directions)  # a worker may have made it since
        else:
            study.set_user_attr("signature", signature)
            study.set_user_attr("storage", self.storage.display)
            defaults = self.spaces[method].defaults
            study.enqueue_trial({k: v for k, v in defaults.items() if k in self.spaces[method].tuned},
                                user_attrs={"baseline": "defaults"}, skip_if_exists=True)
        parent = study.user_attrs.get("mlflow_parent_run_id")
        deadline = time.monotonic() + wait_for_parent
        while parent is None and not created and time.monotonic() < deadline:
            time.sleep(0.5)  # the creator is starting the parent run
            parent = optuna.load_study(study_name=name, storage=storage).user_attrs.get("mlflow_parent_run_id")
        if parent is None:
            run = self.tracker.start_parent(f"tune {method}", tags=self._tags(
                run_kind="study", method=method, study_name=name, study_storage=self.storage.display,
                command=self.cfg.site.command, objective=self.objective.kind))
            run.log_params({"method": method, "trials": self.cfg.trials, "seeds": ",".join(map(str, self.plan.seeds)),
                            "holdout_seeds": ",".join(map(str, self.cfg.holdout_seeds)) or "none",
                            "objective": self.objective.kind, "attack_metric": self.objective.attack_metric,
                            "tolerance": self.objective.tolerance, "time_budget": self.objective.time_budget,
                            "profile": self.plan.profile.name, "scenario": self.plan.scenario.name,
                            "precision": self.plan.profile.precision})
            run.log_dict({"signature": signature, "config": self.plan.describe()}, "study.json")
            parent = run.run_id
            study.set_user_attr("mlflow_parent_run_id", parent)
            study.set_user_attr("mlflow_experiment", self.experiment)
        return Study(method, self.spaces[method], self.objective, study, self.storage, parent)

    def _sampler(self):
        import optuna

        seed = sampler_seed(self.cfg.sampler_seed, self.cfg.workers, self.storage.kind)
        # Optuna's 10 random start-up trials would be half of a 20-trial study: a quarter (3 to 10) of them
        # leaves the model-guided search most of the budget.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, self.cfg.trials // 4)))

    def _pruner(self):
        import optuna

        if self.objective.kind == SCORE:
            return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
        return optuna.pruners.NopPruner()

    def _tags(self, **extra) -> dict:
        p = self.plan
        return {"harness_version": __version__, "git_commit": git_commit(), "device": str(p.device),
                "profile": p.profile.name, "scenario": p.scenario.name, "model": p.model.name, **extra}

    def _on_stale(self, study, trial) -> None:
        retry(study, trial, "its worker stopped sending heartbeats", self._mark_run_killed)

    def _mark_run_killed(self, trial, reason: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                run = self.tracker.reopen(run_id)
                run.set_tags({"end_reason": f"worker died: {reason}"})
                run.end(KILLED)
            except Exception as exc:  # the study goes on; the run stays as it was
                log.warning("could not mark run %s of trial %d KILLED: %s", run_id, trial.number, exc)

    # -- trials --------------------------------------------------------------------------------------------
    def models(self):
        """The reference-model service of the trials' plan (built on first use)."""
        if self._models is None:
            self._models = self.plan.reference_models()
        return self._models

    def original_on_tuning_seeds(self, study: Study) -> dict:
        """The original model's metrics on the tuning splits (mean over seeds): the utility constraint's
        reference and the normalisation of the recommendation rule. Stored in the study for reports."""
        known = study.optuna.user_attrs.get("original")
        if known is not None:
            return known
        rows = []
        for seed in self.plan.seeds:
            split = self.plan.split(seed)
            row = self.plan.cells(split)[0]  # the original reference row: its metrics and attacks
            result = evaluate_cell(row, self.models().for_split(split, retrain=False, bank_size=self.plan.bank_size))
            if result.attack_errors:
                raise RuntimeError("the attack failed on the original model: "
                                   f"{next(iter(result.attack_errors.values()))}")
            rows.append(result.metrics)
        original = _mean(rows)
        s = self.objective.reference(original)
        original.update({"objective/ratio": s.ratio, "objective/attack": s.attack})
        study.optuna.set_user_attr("original", original)
        return original

    def run_trials(self, study: Study) -> None:
        """Run trials until N have ended (with other workers, if any), or the timeout passes."""
        from optuna.trial import TrialState
        from tqdm.auto import tqdm

        original = self.original_on_tuning_seeds(study)
        objective = _TrialObjective(self, study, original)
        n = self.cfg.trials
        start = time.monotonic()
        bar = tqdm(total=n, desc=f"tune {study.method}", unit="trial", disable=not self.cfg.site.show_progress)
        try:
            while True:
                fail_dead_local_trials(study.optuna, self._mark_run_killed)
                fail_stale_trials(study.optuna)  # heartbeats stopped (RDB storages): failed and retried
                trials = study.optuna.get_trials(deepcopy=False)
                ended = sum(_ended(t) for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                waiting = sum(t.state == TrialState.WAITING for t in trials)
                bar.update(min(ended, n) - bar.n)
                if ended >= n:
                    break
                if self.cfg.timeout is not None and time.monotonic() - start > self.cfg.timeout:
                    log.warning("study %s: --timeout of %.0f s reached with %d of %d trials", study.optuna.study_name,
                                self.cfg.timeout, ended, n)
                    break
                if ended + running >= n and not waiting:
                    time.sleep(POLL_SECONDS)  # the last trials run elsewhere; wait in case their worker dies
                    continue
                study.optuna.optimize(objective, n_trials=1, catch=(TrialFailed, SurplusTrial), gc_after_trial=False,
                                      callbacks=[lambda s, t: _trial_line(t, bar, self.objective)])
        finally:
            bar.close()


def _ended(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or \
        (trial.state == TrialState.FAIL and bool(trial.user_attrs.get("counted")))


class _TrialObjective:
    """One trial: sample, run the method on each tuning seed, report, score."""

    def __init__(self, tuner: Tuner, study: Study, original: dict):
        self.tuner, self.study, self.original = tuner, study, original
        self.parent = tuner.tracker.reopen(study.parent_run_id)  # RUNNING again while trials run

    def __call__(self, trial):
        import optuna
        from optuna.trial import TrialState

        t, cfg, plan_ = self.tuner, self.tuner.cfg, self.tuner.plan
        ahead = [x for x in self.study.optuna.get_trials(deepcopy=False) if x.number < trial.number
                 and (_ended(x) or x.state in (TrialState.RUNNING, TrialState.WAITING))]
        if len(ahead) >= cfg.trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"{cfg.trials} trials already ended or running")
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("counted", False)
        try:
            params = self.study.space.sample(trial)
        except ParamError as exc:  # each value in range, but not together (the method's check): a failed trial
            trial.set_user_attr("counted", True)
            trial.set_user_attr("error", str(exc)[:500])
            raise TrialFailed(str(exc)) from None
        method = next(m for m in plan_.methods if m.name == self.study.method)
        child = t.tracker.start_child(self.parent, f"trial {trial.number}", tags=t._tags(
            run_kind="trial", method=method.name, trial_number=trial.number, study_name=self.study.optuna.study_name,
            worker=worker_id(), baseline=trial.user_attrs.get("baseline")))
        trial.set_user_attr("mlflow_run_id", child.run_id)
        child.log_params({**params, "trial_number": trial.number, "seeds": ",".join(map(str, plan_.seeds))})
        step = 0

        def on_epoch(epoch: int, metrics: dict) -> None:  # the cell's run logs the curves; this prunes
            nonlocal step
            step += 1
            pct = metrics.get("epoch_pct_retrain", 0.0)
            if pct > t.objective.time_budget:
                # Infeasible whatever comes next, so the sampler must learn to avoid its region: a pruned
                # trial without constraints teaches a multi-objective TPE nothing, and the violation so far is
                # only a lower bound (it ranked such trials above finished ones that missed the utility
                # constraint by a little). 1 + the violation so far ranks it below every finished trial.
                trial.set_constraint("time", 1.0 + (pct - t.objective.time_budget) / 100.0)
                raise optuna.TrialPruned(f"over the time budget: {pct:.1f}% of retrain after epoch {epoch} "
                                         f"(budget {t.objective.time_budget:g}%)")
            if t.objective.kind == SCORE and len(plan_.seeds) == 1:
                trial.report(t.objective.intermediate(metrics, self.original["acc_validation"]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"median pruner after epoch {epoch}: intermediate score worse than the "
                                             f"median of earlier trials at this step")

        recorder = Recorder(t.tracker, child, plan_, tags={"study_name": self.study.optuna.study_name,
                                                           "trial_number": trial.number})
        rows = []
        try:
            for seed in plan_.seeds:
                split = plan_.split(seed)
                cell = Cell(method.name, method.component, params, split, plan_.attacks, plan_.setting)
                recorded = recorder.finished([cell]).get(cell.hash)
                if recorded is None or t.objective.attack_metric not in recorded.metrics:
                    models = t.models().for_split(split, retrain=False, bank_size=plan_.bank_size)
                    recorded = recorder.record(cell, models, on_epoch=on_epoch)
                if recorded.failures:
                    error = recorded.error or recorded.failures[0]["error"]
                    child.set_tags({"error": error[:500], "trial_state": "FAIL"})
                    child.end(FAILED)
                    trial.set_user_attr("counted", True)
                    trial.set_user_attr("error", error[:500])
                    raise TrialFailed(error)
                rows.append(recorded.metrics)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("counted", True)
            trial.set_user_attr("reason", str(exc))
            child.set_tags({"trial_state": "PRUNED", "end_reason": str(exc)})
            child.end(KILLED)
            raise
        except (KeyboardInterrupt, SystemExit):
            child.set_tags({"trial_state": "FAIL", "end_reason": "interrupted"})
            child.end(KILLED)
            raise
        except TrialFailed:
            raise
        except Exception as exc:
            child.log_text(traceback.format_exc(), "traceback.txt")
            child.set_tags({"trial_state": "FAIL", "end_reason": str(exc)[:500]})
            child.end(FAILED)
            raise
        metrics = _mean(rows)
        signals = t.objective.signals(metrics, self.original["acc_validation"])
        trial.set_constraint("utility", signals.utility)
        trial.set_constraint("time", signals.time)
        for k, v in {**metrics, **signals.as_dict()}.items():
            trial.set_user_attr(k, v)
        child.log_metrics({**metrics, **signals.as_dict(), "feasible": float(signals.feasible)})
        child.set_tags({"trial_state": "COMPLETE", "feasible": signals.feasible})
        child.end(FINISHED)
        return t.objective.values(signals)


def _mean(rows: list[dict]) -> dict:
    """Metrics averaged over the tuning seeds (those every seed has)."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if all(k in r for r in rows)}


def _trial_line(trial, bar, objective: Objective) -> None:
    """One line per trial, above the progress bar."""
    if trial.user_attrs.get("surplus"):
        return
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    state = trial.state.name
    if state == "COMPLETE":
        a = trial.user_attrs
        what = (f"ratio {a['forget_val_ratio']:.3f}, {objective.attack_metric} {a[objective.attack_metric]:.3f}, "
                f"valid {a['acc_validation']:.3f}, {a['pct_retrain_time']:.1f}% of retrain, "
                f"{'feasible' if a['constraint/utility'] <= 0 and a['constraint/time'] <= 0 else 'INFEASIBLE'}")
    else:
        what = trial.user_attrs.get("reason") or trial.user_attrs.get("error") or "interrupted"
    bar.write(f"trial {trial.number} {state}: {params} -> {what}", file=sys.stderr)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- checks --------------------------------------------------------------------------------------------
def _check_numbers(cfg: TuneConfig) -> None:
    if not cfg.methods:
        raise UsageError("name a method to tune with --method")
    if cfg.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {cfg.trials}")
    if cfg.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.objective not in (PARETO, SCORE):
        raise UsageError(f"unknown objective {cfg.objective!r}. Valid objectives: {PARETO}, {SCORE}")
    if not 0 <= cfg.tolerance < 1:
        raise UsageError(f"--tolerance is an accuracy drop in [0, 1), got {cfg.tolerance}")
    if not cfg.time_budget > 0:
        raise UsageError(f"--time-budget is a % of retrain above 0, got {cfg.time_budget}")
    if cfg.timeout is not None and cfg.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {cfg.timeout}")
    if cfg.export and not cfg.holdout_seeds:
        raise UsageError("--export writes a configuration recommended from held-out seeds: give --holdout-seeds")
    if cfg.heartbeat < 1:
        raise UsageError(f"heartbeat must be at least 1 s, got {cfg.heartbeat}")


def _attack_metric(name: str) -> tuple[str, str]:
    attack, sep, metric = name.partition("/")
    if not sep or not attack or not metric:
        raise UsageError(f"--attack-metric {name!r}: expected ATTACK/METRIC, e.g. mia/signed_auc")
    return attack, metric


def _check_signature(study, name: str, signature: dict, directions: list[str]) -> None:
    theirs = study.user_attrs.get("signature")
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise UsageError(f"study {name!r} exists with {len(study.directions)} objective(s) "
                         f"({', '.join(d.name.lower() for d in study.directions)}); this run has {len(directions)}: "
                         f"pick another --study name or the same --objective")
    if theirs is None:
        raise UsageError(f"study {name!r} exists but was not made by unlearn tune; pick another --study name")
    ours = json.loads(json.dumps(signature))  # as the storage keeps it (tuples become lists)
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        detail = "; ".join(f"{k}: study has {theirs.get(k)!r}, this run {ours.get(k)!r}" for k in differ[:3])
        raise UsageError(f"study {name!r} exists with another configuration ({detail}); continue it with the same "
                         f"settings or pick another --study name")


def _tracking_folder(uri: str | None) -> Path:
    """Studies live beside the MLflow store by default (./mlruns)."""
    from ..tracking import DEFAULT_DIR, default_tracking_uri, sqlite_path

    path = sqlite_path(default_tracking_uri(uri))
    return path.parent if path is not None else (Path.cwd() / DEFAULT_DIR).resolve()

