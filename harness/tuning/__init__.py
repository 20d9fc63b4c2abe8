"""Hyperparameter tuning with Optuna: `harness.tune(TuneConfig(...))` and `unlearn tune`.

space.py: the searched space; storage.py: where studies live and how dead workers' trials come back;
objective.py: what a trial is scored on; study.py: planning, studies and trials; holdout.py: choosing
and judging on held-out seeds; this module: the whole job, several local workers, outputs.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from ..host import Host
from ..spec import Spec
from ..tracking import FINISHED, KILLED, Tracker
from .holdout import choose, evaluate_holdout, judge, trial_rows
from .objective import PARETO, SCORE
from .study import Study, StudyResult, TuneConfig, Tuner, _ended

log = logging.getLogger(__name__)
__all__ = ["tune", "run_studies", "TuneConfig", "StudyResult", "Tuner", "PARETO", "SCORE"]


def tune(config: TuneConfig, host: Host | None = None, tracker: Tracker | None = None) -> list[StudyResult]:
    """Tune every method of `config`: plan and check all studies, run their trials (in `config.workers`
    local processes), then choose, judge on the held-out seeds, log and export. Bad input raises
    UsageError before any trial or run exists."""
    return run_studies(Tuner(config, host, tracker))


def run_studies(tuner: Tuner) -> list[StudyResult]:
    """The work of `tune` once its plan is checked (the CLI checks before it creates a tracking store)."""
    config = tuner.cfg
    studies = tuner.open_all()
    results = []
    for study in studies:
        try:
            if config.workers > 1:
                run_local_workers(tuner, study)
            else:
                tuner.run_trials(study)
            if tuner.holdout_plan is not None:
                results.append(finish(tuner, study))
            else:
                log.info("study %s: no held-out seeds, so nothing is judged or recommended here (another worker "
                         "may)", study.optuna.study_name)
                results.append(StudyResult(study.method, study.optuna.study_name, study.storage.display,
                                           study.parent_run_id, {"trials": trial_rows(study.optuna)}))
        except KeyboardInterrupt:
            _interrupted(tuner, study)
            raise
    if config.export and results:
        export_config(config.export, tuner, [r.summary for r in results])
        log.info("wrote %s", config.export)
    return results


def _interrupted(tuner: Tuner, study: Study) -> None:
    parent = tuner.tracker.reopen(study.parent_run_id)
    parent.set_tags({"interrupted": "true"})
    parent.end(KILLED)


def run_local_workers(tuner: Tuner, study: Study) -> None:
    """`workers` processes on this host share the study (journal file or RDB): this one and K - 1 worker
    processes. The cores are divided between them, since torch processes that each take every core run
    many times slower together."""
    import torch

    cfg = tuner.cfg
    tuner.original_on_tuning_seeds(study)  # trained, cached and stored once, before the workers start
    if sum(_ended(t) for t in study.optuna.get_trials(deepcopy=False)) >= cfg.trials:
        return  # continuing a finished study: nothing for workers to do
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    worker_cfg = replace(cfg, spec=cfg.spec.with_(methods=[study.method]), site=cfg.site.with_(show_progress=False),
                         study=study.optuna.study_name, storage=tuner.storage.url, workers=1, holdout_seeds=[],
                         export=None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(worker_cfg.to_dict(), fh)
    env = {**os.environ, "HARNESS_TUNE_WORKER": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HARNESS_THREADS": str(threads)}
    log.info("study %s: %d workers with %d torch thread(s) each", study.optuna.study_name, cfg.workers, threads)
    procs = [subprocess.Popen([sys.executable, "-m", "harness.tuning.worker", fh.name], env=env)
             for _ in range(cfg.workers - 1)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        tuner.run_trials(study)  # this process is a worker too
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(2)
        for p in procs:
            p.wait()
        raise
    finally:
        torch.set_num_threads(before)
        os.unlink(fh.name)
    bad = [c for c in codes if c != 0]
    if bad:
        log.warning("%d worker(s) ended with status %s; their unfinished trials are retried here", len(bad), bad)
        tuner.run_trials(study)  # whatever they left (a worker that died)


def finish(tuner: Tuner, study: Study) -> StudyResult:
    """Choose, judge on the held-out seeds, write tuning.json and the figures to the parent, export."""
    cfg, objective = tuner.cfg, tuner.objective
    rows = trial_rows(study.optuna)
    original = tuner.original_on_tuning_seeds(study)
    chosen = choose(rows, objective.kind, original)
    parent = tuner.tracker.reopen(study.parent_run_id)
    tuned = chosen["params"] if chosen else None
    full_tuned = study.space.method.resolve({**study.space.fixed, **tuned}) if tuned else None
    holdout_rows = evaluate_holdout(tuner, study, full_tuned, parent)
    verdict = judge(holdout_rows, objective, chosen)
    recommended = full_tuned if verdict["recommended"] == "tuned" else study.space.defaults
    summary = {
        "study": study.optuna.study_name, "storage": study.storage.display, "method": study.method,
        "objective": objective.describe(), "space": study.space.describe(), "defaults": study.space.defaults,
        "tuning_seeds": list(tuner.plan.seeds), "holdout_seeds": list(tuner.holdout_plan.seeds),
        "profile": tuner.plan.profile.name, "scenario": tuner.plan.scenario.name,
        "precision": tuner.plan.profile.precision, "device": tuner.models().device_name,
        "original_tuning": original, "trials": rows, "chosen": _strip(chosen), "tuned_params": full_tuned,
        "holdout": holdout_rows, **verdict, "recommended_params": recommended,
        "counts": _counts(rows), "pruning": _pruning(rows), "wall_seconds": _span(study.optuna),
        "trial_seconds": sum(r["seconds"] or 0 for r in rows), "command": cfg.site.command,
        "forget_overlap": _forget_overlap(tuner),
    }
    parent.log_dict(summary, "tuning.json")
    _log_figures(parent, study, objective)
    parent.set_tags({"verdict": verdict["verdict"][:250], "recommended": verdict["recommended"]})
    parent.log_metrics({f"holdout/{c}/{k}": v[0] for c, stats in verdict["summary"].items()
                        for k, v in stats.items() if isinstance(v, list) and v[0] == v[0]})
    parent.end(FINISHED)
    return StudyResult(study.method, study.optuna.study_name, study.storage.display, study.parent_run_id, summary)


def _span(study) -> float:
    """Seconds from the first trial's start to the last one's end, over every session and worker."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if not trials:
        return 0.0
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def _strip(chosen: dict | None) -> dict | None:
    return None if chosen is None else {k: v for k, v in chosen.items() if k in (
        "number", "params", "values", "objective", "distance", "front", "metrics", "infeasible")}


def _counts(rows: list[dict]) -> dict:
    out: dict[str, int] = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    out["feasible"] = sum(bool(r["feasible"]) for r in rows)
    return out


def _pruning(rows: list[dict]) -> dict:
    """How many trials were stopped early, the time they ran, and about how much time stopping saved: a
    trial stopped after epoch k of its `epochs` would have run about epochs / k times as long (time taken
    as linear in epochs; trials without an `epochs` parameter are not estimated)."""
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    reasons: dict[str, int] = {}
    ran = saved = 0.0
    for r in pruned:
        key = "time budget" if "time budget" in (r["reason"] or "") else "pruner"
        reasons[key] = reasons.get(key, 0) + 1
        seconds = r["seconds"] or 0.0
        ran += seconds
        match = re.search(r"after epoch (\d+)", r["reason"] or "")
        planned = r["params"].get("epochs")
        if match and isinstance(planned, (int, float)) and int(match[1]) > 0:
            saved += max(0.0, seconds * planned / int(match[1]) - seconds)
    return {"pruned": len(pruned), "pruned_seconds": ran, "saved_seconds_estimate": saved, "reasons": reasons}


def _forget_overlap(tuner: Tuner) -> dict:
    """Share of each held-out forget set that was also in a tuning forget set (random scenarios draw
    them independently: about the forget fraction, by chance)."""
    tuning = set()
    for split in tuner.plan.splits.values():
        tuning |= set(split.forget.tolist())
    return {s.seed: len(tuning & set(s.forget.tolist())) / len(s.forget) for s in tuner.holdout_plan.work()}


def _log_figures(parent, study: Study, objective) -> None:
    """Pareto front, optimisation history and parameter importances (Optuna's matplotlib plots)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    if len(study.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        log.warning("fewer than 2 complete trials: no study figures")
        return
    names = objective.names
    plots = {"optimization_history.png": lambda: ovm.plot_optimization_history(
        study.optuna, target=(lambda t: t.values[0]) if len(names) > 1 else None, target_name=names[0])}
    if len(names) > 1:
        plots["pareto_front.png"] = lambda: ovm.plot_pareto_front(study.optuna, target_names=names)
    plots["param_importances.png"] = lambda: ovm.plot_param_importances(
        study.optuna, target=(lambda t: t.values[0]) if len(names) > 1 else None, target_name=names[0])
    for path, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = ax.figure if hasattr(ax, "figure") else ax.flatten()[0].figure
            fig.set_size_inches(7, 5)
            fig.tight_layout()
            parent.log_figure(fig, path)
            plt.close(fig)
        except Exception as exc:  # too few trials for importances, say: the study is still reported
            log.warning("figure %s not logged: %s", path, exc)


def export_config(path: str, tuner: Tuner, summaries: list[dict]) -> None:
    """A TOML file `unlearn run --config` reads: the run's settings and each method's recommended parameters."""
    from ..config_file import dump_toml

    p = tuner.plan
    recommended = {s["method"]: s["recommended_params"] for s in summaries}
    spec = Spec(methods=tuple(recommended), params=recommended, scenarios=p.spec.scenarios,
                scenario_options=dict(p.scenario.params), profile=p.profile.name, precision=p.spec.precision,
                model=p.model.name, model_options=dict(p.model.params))
    defaults = Spec().to_dict()
    data = {k: v for k, v in spec.to_dict().items()
            if v is not None and (v != defaults[k] or k in ("methods", "params", "profile", "scenarios"))}
    header = [f"written by: {summaries[0]['command']}"]
    for s in summaries:
        header.append(f"{s['method']}: {s['recommended']} parameters (study {s['study']}, {len(s['trials'])} trials): "
                      f"{s['verdict']}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(dump_toml(data, header))
    os.replace(tmp, path)
