"""`unlearn run` and `unlearn worker`: run a benchmark here, or take cells of a shared one."""
from __future__ import annotations

import sys

import click

from . import main
from .options import COMMON_KEYS, common_options, interrupted_status, planned, spec_and_site, terminate_like_ctrl_c

RUN_KEYS = ("methods", "scenarios", "seeds", "epochs", "attacks", "params", "experiment", "rerun", "log_models",
            *COMMON_KEYS)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with these settings (keys as the flags, [params.METHOD] tables), e.g. one written by "
                   "`unlearn tune --export`; flags given here win.")
@click.option("--methods", help="Comma-separated methods (default: all registered). The original and retrain "
              "reference rows are always there.")
@click.option("--scenarios", "--scenario", "scenarios", default="random", show_default=True,
              help="Comma-separated forget-set builders, e.g. random,targeted-red.")
@click.option("--seeds", default="0", show_default=True, help="Split seeds: 0,1,2 or 0-2.")
@click.option("--epochs", help="Comma-separated epoch budgets, e.g. 5,9,20: each runs every method with its `epochs` "
              "set to it (default: each method's own).")
@click.option("--attacks", help="Comma-separated attacks (default: all registered; 'none' for none).")
@click.option("--param", "params", multiple=True, metavar="METHOD.NAME=VALUE", help="Method parameter.")
@click.option("--experiment", help="MLflow experiment (default: unlearning-<scenario>[+<scenario>...]).")
@click.option("--rerun", is_flag=True, help="Run every cell again, even those already FINISHED in the experiment "
              "(by default a rerun of the same command runs only the missing, failed or killed ones).")
@click.option("--resume", is_flag=True, hidden=True, help="The default now; kept for old scripts.")
@click.option("--benchmark", help="Share the run with other machines: publish its cells as benchmark NAME in "
              "--storage; `unlearn worker --benchmark NAME` elsewhere takes cells too.")
@click.option("--storage", help="With --benchmark: where the cells are queued, postgresql://... (several machines) "
              "or journal:PATH (one machine).")
@click.option("--heartbeat", default=10, show_default=True, type=int,
              help="With --benchmark: seconds between a worker's heartbeats; a cell whose worker is silent for 3 "
                   "heartbeats is queued again.")
@click.option("--log-models/--no-log-models", default=True, show_default=True,
              help="Log the original and retrain checkpoints as artifacts.")
@common_options
def run(config_file, **opts):
    """Run unlearning methods and log every (method, seed) to MLflow."""
    from ..reporting.tables import format_summary
    from ..runner import RunInProgress, Runner
    from ..tracking import MlflowTracker, default_tracking_uri

    spec, site = spec_and_site(opts, RUN_KEYS, config_file)
    site = site.with_(tracking_uri=default_tracking_uri(site.tracking_uri),
                      command=" ".join(["unlearn", *sys.argv[1:]]))
    if opts["storage"] and not opts["benchmark"]:
        raise click.UsageError("--storage queues the cells of a --benchmark NAME; give both, or neither")
    p = planned(spec, site)
    storage = _benchmark_storage(opts["storage"], opts["benchmark"]) if opts["benchmark"] else None
    tracker = MlflowTracker(site.tracking_uri, p.experiment)
    click.echo(f"tracking: {tracker.uri} (experiment {p.experiment!r}); precision {p.profile.precision}", err=True)
    if storage is not None:
        from ..fleet.benchmark import publish

        _work_on(lambda: publish(p, tracker, storage, opts["benchmark"], heartbeat=opts["heartbeat"]))
        return
    try:
        with terminate_like_ctrl_c():
            result = Runner(p, tracker).run()
    except RunInProgress as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: runs marked KILLED. The same command again runs what is missing.", err=True)
        sys.exit(interrupted_status(exc))
    groups = result.summaries()
    for title, summary in groups:
        if len(groups) > 1:
            click.echo(f"\n{title}")
        if not summary.empty:
            click.echo(format_summary(summary, p.attack_metrics).to_string())
    click.echo(f"parent run: {result.parent_run_id}", err=True)
    _report_after_run(tracker.uri, result.parent_run_id)
    if result.failures:
        click.echo(f"\n{len(result.failures)} failure(s):", err=True)
        for f in result.failures:
            click.echo(f"  {f['method']} seed={f['seed']}: {f['error']}\n    run {f['run_id']}, details: {f['where']}",
                       err=True)
        sys.exit(1)


@main.command()
@click.option("--benchmark", required=True, help="The benchmark to work on (published by `unlearn run --benchmark`).")
@click.option("--storage", required=True, help="Where its cells are queued: postgresql://... or journal:PATH.")
@click.option("--data-dir", type=click.Path(file_okay=True),
              help="This machine's CIFAR-10 copy [env: HARNESS_DATA_DIR].")
@click.option("--cache-dir", type=click.Path(), help="This machine's model cache [env: HARNESS_CACHE_DIR]; a folder "
              "shared by the workers trains each reference model once.")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
              help="MLflow store [env: MLFLOW_TRACKING_URI; default: the one the benchmark was published with].")
@click.option("--heartbeat", default=10, show_default=True, type=int,
              help="Seconds between heartbeats (a silent worker's cell is queued again after 3).")
@click.option("--wait", default=300, show_default=True, type=float,
              help="Seconds to wait for the benchmark to be published (workers may start first).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def worker(benchmark, storage, data_dir, cache_dir, device, tracking_uri, heartbeat, wait, quiet):
    """Take cells of a shared benchmark until none is left (run it on as many machines as you like)."""
    from ..fleet.benchmark import join
    from ..spec import Site

    handle = _benchmark_storage(storage, benchmark)
    site = Site(data_dir=data_dir, cache_dir=cache_dir, device=device, tracking_uri=tracking_uri,
                show_progress=not quiet)
    _work_on(lambda: join(benchmark, handle, site, heartbeat=heartbeat, wait_s=wait))


def _benchmark_storage(url: str | None, name: str):
    from pathlib import Path

    from ..fleet.benchmark import storage_for
    from ..plan import UsageError

    if not url:
        raise click.UsageError(f"--benchmark {name} needs --storage postgresql://... (machines) or journal:PATH")
    try:
        return storage_for(url, Path.cwd() / "mlruns")
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None


def _work_on(open_benchmark) -> None:
    """Run cells of a benchmark as one of its workers; SIGTERM and Ctrl-C give the cell back to the queue."""
    from ..data import DataError
    from ..fleet.benchmark import BenchmarkError, work
    from ..plan import UsageError

    try:
        with terminate_like_ctrl_c():
            try:
                bench = open_benchmark()
            except (BenchmarkError, DataError) as exc:
                raise click.ClickException(str(exc)) from None
            except UsageError as exc:
                raise click.UsageError(str(exc)) from None
            click.echo(f"benchmark {bench.study.study_name}: {len(bench.cells)} cells, parent run {bench.parent_id}",
                       err=True)
            failures = work(bench)
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: the cell in progress is queued again for another worker.", err=True)
        sys.exit(interrupted_status(exc))
    click.echo(f"no cell left; report with: unlearn report {bench.parent_id}", err=True)
    for f in failures:
        click.echo(f"  {f['method']} seed={f['seed']}: {f['error']} (run {f['run_id']})", err=True)
    if failures:
        sys.exit(1)


def _report_after_run(uri: str, parent_id: str) -> None:
    from ..reporting.run_report import publish_after_run

    page = publish_after_run(uri, parent_id)
    if page is not None:
        click.echo(f"report: {page} (again with `unlearn report {parent_id}`)", err=True)
