"""`unlearn tune` and `unlearn dashboard`."""
from __future__ import annotations

import os
import sys

import click

from . import main
from .options import COMMON_KEYS, common_options, interrupted_status, spec_and_site, terminate_like_ctrl_c

TUNE_KEYS = ("methods", "seeds", "scenario", "experiment", *COMMON_KEYS)


@main.command()
@click.option("--method", "methods", multiple=True, required=True,
              help="Method to tune (repeat for several: one study each).")
@click.option("--trials", default=20, show_default=True, type=int, help="Trials per study (ended ones: "
              "complete, pruned or failed by the method).")
@click.option("--seeds", default="0", show_default=True, help="Split seeds the trials tune on.")
@click.option("--holdout-seeds", default="1-3", show_default=True,
              help="Split seeds that judge default vs tuned after the trials ('none': judge nowhere).")
@click.option("--objective", type=click.Choice(["pareto", "score"]), default="pareto", show_default=True,
              help="pareto: minimise |F/V ratio - 1| and the attack metric's distance to ideal; score: one weighted "
                   "number with a median pruner.")
@click.option("--attack-metric", default="mia/signed_auc", show_default=True, help="ATTACK/METRIC to optimise.")
@click.option("--tolerance", default=0.03, show_default=True, type=float,
              help="Validation accuracy a trial may lose against the original (0.03 = 3 points).")
@click.option("--time-budget", default=20.0, show_default=True, type=float,
              help="Unlearning time allowed, in % of a retrain.")
@click.option("--storage", help="Optuna storage: sqlite:///PATH.db, journal:PATH or postgresql://... "
              "(default: mlruns/optuna.db; a journal file with --workers > 1).")
@click.option("--study", help="Study name (default: METHOD-SCENARIO-PROFILE). The same command continues it.")
@click.option("--timeout", type=float, help="Seconds after which no new trial starts.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Processes on this host sharing the study; the cores are divided between them.")
@click.option("--space", "space_file", type=click.Path(dir_okay=False), help="TOML narrowing or fixing the space.")
@click.option("--export", type=click.Path(dir_okay=False), help="Write the recommended configuration (TOML for "
              "`unlearn run --config`).")
@click.option("--sampler-seed", default=0, show_default=True, type=int,
              help="TPE sampler seed: exact for a study with one process on a file storage; varied per process "
                   "(host and pid) where several share it.")
@click.option("--heartbeat", default=10, show_default=True, type=int,
              help="Seconds between a trial's heartbeats on an RDB storage; a trial silent for 3 beats is retried.")
@click.option("--experiment", help="MLflow experiment (default: tuning-<scenario>).")
@click.option("--scenario", default="random", show_default=True, help="Forget-set builder.")
@common_options
def tune(**opts):
    """Tune methods' hyperparameters with Optuna; judge the result on held-out seeds."""
    from ..data import DataError
    from ..reporting.study_report import terminal_summary
    from ..spec import UsageError, seed_list
    from ..tracking import MlflowTracker, default_tracking_uri
    from ..tuning import TuneConfig, run_studies
    from ..tuning.study import Tuner

    spec, site = spec_and_site(opts, TUNE_KEYS)
    site = site.with_(tracking_uri=default_tracking_uri(site.tracking_uri),
                      command=" ".join(["unlearn", *sys.argv[1:]]))
    try:
        holdout = [] if opts["holdout_seeds"].strip().lower() == "none" else list(seed_list(opts["holdout_seeds"],
                                                                                              "--holdout-seeds"))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    config = TuneConfig(
        spec=spec, site=site, trials=opts["trials"], holdout_seeds=holdout, objective=opts["objective"],
        attack_metric=opts["attack_metric"], tolerance=opts["tolerance"], time_budget=opts["time_budget"],
        storage=opts["storage"], study=opts["study"], timeout=opts["timeout"], workers=opts["workers"],
        space_file=opts["space_file"], export=opts["export"], sampler_seed=opts["sampler_seed"],
        heartbeat=opts["heartbeat"])
    try:
        tuner = Tuner(config)  # every check, before a store, study or run is created
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    tuner.tracker = MlflowTracker(site.tracking_uri, tuner.experiment)
    click.echo(f"tracking: {tuner.tracker.uri} (experiment {tuner.experiment!r}); studies: {tuner.storage.display}; "
               f"precision {tuner.plan.profile.precision}", err=True)
    try:
        with terminate_like_ctrl_c():
            results = run_studies(tuner)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: the running trial is marked FAIL and its run KILLED. Run the same command again "
                   "to continue the study.", err=True)
        sys.exit(interrupted_status(exc))
    for result in results:
        click.echo(terminal_summary(result))


@main.command()
@click.option("--storage", help="Study storage (default: mlruns/optuna.db, or mlruns/optuna-journal.log).")
@click.option("--port", default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
def dashboard(storage, port, host):
    """Start optuna-dashboard on the studies of `unlearn tune`."""
    import shutil
    from pathlib import Path

    from .. import serve
    from ..fleet.storage import StorageError, resolve_storage

    if storage is None:
        folder = Path.cwd() / "mlruns"
        found = [p for p in (folder / "optuna.db", folder / "optuna-journal.log") if p.exists()]
        if not found:
            raise click.UsageError(f"no study storage in {folder}: run `unlearn tune` first or pass --storage")
        storage = f"sqlite:///{found[0]}" if found[0].suffix == ".db" else f"journal:{found[0]}"
    try:
        target = resolve_storage(storage, 1, Path.cwd()).dashboard_target
    except StorageError as exc:
        raise click.UsageError(str(exc)) from None
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    warning = serve.exposure_warning(host, port, "every study")
    if warning:
        click.echo(warning, err=True)
    click.echo(f"optuna-dashboard on http://{host}:{port} for {storage}", err=True)
    argv = serve.supervised([exe, *target, "--host", host, "--port", str(port)])
    os.execv(argv[0], argv)  # a small supervisor replaces `unlearn`; stopping it stops the whole server
