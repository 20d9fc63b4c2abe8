"""The `unlearn` command line."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys

import click

from . import __version__


def _parse_list(value: str | None, flag: str) -> list[str] | None:
    """'a,b' -> ['a', 'b']; None (flag not given) -> None; an empty list is a mistake, not 'all'."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter(f"{value!r} names nothing; leave {flag} out for the default", param_hint=flag)
    return items


def _parse_seeds(value: str) -> list[int]:
    """'0,1,2' or '0-2' (the plan then checks each is a valid seed)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if match is None:
            raise click.BadParameter(f"{value!r}: expected integers like 0,1,2 or a range like 0-4", param_hint="--seeds")
        lo, hi = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if hi < lo:
            raise click.BadParameter(f"{part!r}: the range is empty", param_hint="--seeds")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return list(dict.fromkeys(seeds))


def _parse_epochs(value: str | None) -> list[float] | None:
    """'5,9,20' -> [5, 9, 20] (whole numbers as int, so an Int parameter takes them); None: not given."""
    items = _parse_list(value, "--epochs")
    if items is None:
        return None
    out = []
    for item in items:
        try:
            number = float(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a number; expected budgets like 5,9,20", param_hint="--epochs")
        out.append(int(number) if number.is_integer() else number)
    return out


def _parse_assignments(values: tuple[str, ...], what: str, qualified: bool) -> dict:
    out: dict = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected {'COMPONENT.NAME' if qualified else 'NAME'}=VALUE",
                                     param_hint=what)
        if qualified:
            owner, dot, name = key.partition(".")
            if not dot or not name:
                raise click.BadParameter(f"{item!r}: expected COMPONENT.NAME=VALUE, e.g. simple.epochs=3", param_hint=what)
            out.setdefault(owner, {})[name] = value
        else:
            out[key] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unlearning-harness")
def main():
    """Evaluate machine-unlearning methods on CIFAR-10 / ResNet18, tracked in MLflow."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _common_options(fn):
    """Options `run` and `tune` share: what data, which scenario, model, attacks, device, store."""
    options = [
        click.option("--scenario-option", "scenario_options", multiple=True, metavar="NAME=VALUE",
                     help="Scenario parameter, e.g. target_class=cat for --scenario class."),
        click.option("--profile", help="smoke, cpu or paper (default: paper with CUDA, else cpu)."),
        click.option("--model", default="resnet18", show_default=True),
        click.option("--model-option", "model_options", multiple=True, metavar="NAME=VALUE", help="Model parameter."),
        click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]),
                     help="Override the profile's precision (auto: whichever trains faster here, measured once)."),
        click.option("--attack-option", "attack_options", multiple=True, metavar="ATTACK.NAME=VALUE",
                     help="Attack parameter, e.g. mia.folds=5."),
        click.option("--references", type=click.IntRange(0, 256), metavar="K",
                     help="Reference bank: K retrains with other seeds per split, for lira-offline, rmia and "
                          "forget-quality (each costs one retrain, once: cached and shared). Default: 0 on the cpu "
                          "profile, 4 on paper; attacks needing more are skipped with the reason."),
        click.option("--data-dir", type=click.Path(file_okay=True), help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR]."),
        click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR]."),
        click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available)."),
        click.option("--tracking-uri", help="MLflow tracking URI [env: MLFLOW_TRACKING_URI; default: sqlite in ./mlruns]."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


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
@click.option("--benchmark", help="Share the run with other machines: publish its cells as benchmark NAME in --storage; "
              "`unlearn worker --benchmark NAME` elsewhere takes cells too.")
@click.option("--storage", help="With --benchmark: where the cells are queued, postgresql://... (several machines) "
              "or journal:PATH (one machine).")
@click.option("--heartbeat", default=10, show_default=True, type=int,
              help="With --benchmark: seconds between a worker's heartbeats; a cell whose worker is silent for 3 "
                   "heartbeats is queued again.")
@click.option("--log-models/--no-log-models", default=True, show_default=True,
              help="Log the original and retrain checkpoints as artifacts.")
@_common_options
def run(config_file, **opts):
    """Run unlearning methods and log every (method, seed) to MLflow."""
    from .plan import RunConfig
    from .report import format_summary
    from .runner import RunInProgress, Runner
    from .tracking import MlflowTracker, default_tracking_uri

    opts = _with_config_file(config_file, opts) if config_file else _parsed_tables(opts)
    attack_names = _parse_list(opts["attacks"], "--attacks")
    config = RunConfig(
        methods=_parse_list(opts["methods"], "--methods"), scenarios=_parse_list(opts["scenarios"], "--scenarios"),
        scenario_options=opts["scenario_options"], seeds=_parse_seeds(opts["seeds"]),
        epochs=_parse_epochs(opts["epochs"]), profile=opts["profile"],
        precision=opts["precision"], model=opts["model"], model_options=opts["model_options"],
        attacks=[] if attack_names == ["none"] else attack_names, attack_options=opts["attack_options"],
        method_params=opts["params"], data_dir=opts["data_dir"], cache_dir=opts["cache_dir"], device=opts["device"],
        tracking_uri=default_tracking_uri(opts["tracking_uri"]), experiment=opts["experiment"],
        log_models=opts["log_models"], show_progress=not opts["quiet"], rerun=opts["rerun"],
        references=opts["references"],
        command=" ".join(["unlearn", *sys.argv[1:]]))
    if opts["storage"] and not opts["benchmark"]:
        raise click.UsageError("--storage queues the cells of a --benchmark NAME; give both, or neither")
    p = _planned(config)
    storage = _benchmark_storage(opts["storage"], opts["benchmark"]) if opts["benchmark"] else None
    tracker = MlflowTracker(config.tracking_uri, p.experiment)
    click.echo(f"tracking: {tracker.uri} (experiment {p.experiment!r}); precision {p.profile.precision}", err=True)
    if storage is not None:
        from .distributed import publish

        _work_on(lambda: publish(p, tracker, storage, opts["benchmark"], heartbeat=opts["heartbeat"]))
        return
    try:
        with _terminate_like_ctrl_c():
            result = Runner(p, tracker).run()
    except RunInProgress as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: runs marked KILLED. The same command again runs what is missing.", err=True)
        sys.exit(_interrupted_status(exc))
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
@click.option("--data-dir", type=click.Path(file_okay=True), help="This machine's CIFAR-10 copy [env: HARNESS_DATA_DIR].")
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
    from .distributed import join
    from .plan import RunConfig

    handle = _benchmark_storage(storage, benchmark)
    local = RunConfig(data_dir=data_dir, cache_dir=cache_dir, device=device, tracking_uri=tracking_uri,
                      show_progress=not quiet)
    _work_on(lambda: join(benchmark, handle, local, heartbeat=heartbeat, wait_s=wait))


def _benchmark_storage(url: str | None, name: str):
    from pathlib import Path

    from .distributed import storage_for
    from .plan import UsageError

    if not url:
        raise click.UsageError(f"--benchmark {name} needs --storage postgresql://... (machines) or journal:PATH")
    try:
        return storage_for(url, Path.cwd() / "mlruns")
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None


def _work_on(open_benchmark) -> None:
    """Run cells of a benchmark as one of its workers; SIGTERM and Ctrl-C give the cell back to the queue."""
    from .data import DataError
    from .distributed import BenchmarkError, work
    from .plan import UsageError

    try:
        with _terminate_like_ctrl_c():
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
        sys.exit(_interrupted_status(exc))
    click.echo(f"no cell left; report with: unlearn report {bench.parent_id}", err=True)
    for f in failures:
        click.echo(f"  {f['method']} seed={f['seed']}: {f['error']} (run {f['run_id']})", err=True)
    if failures:
        sys.exit(1)


def _report_after_run(uri: str, parent_id: str) -> None:
    from .run_report import publish_after_run

    page = publish_after_run(uri, parent_id)
    if page is not None:
        click.echo(f"report: {page} (again with `unlearn report {parent_id}`)", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `docker stop` and schedulers send), raised where Ctrl-C would be: runs end KILLED."""


@contextlib.contextmanager
def _terminate_like_ctrl_c():
    """While the block runs, SIGTERM raises `Terminated`; the previous handler is restored after."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM is not caught again
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted_status(exc: KeyboardInterrupt) -> int:
    return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130


def _planned(config):
    """plan(config), its mistakes as click errors: bad input exits 2, unreadable data 1."""
    from .data import DataError
    from .plan import UsageError, plan

    try:
        return plan(config)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


_TABLE_FLAGS = {"scenario_options": ("--scenario-option", False), "model_options": ("--model-option", False),
                "attack_options": ("--attack-option", True), "params": ("--param", True)}


def _parsed_tables(opts: dict) -> dict:
    """The NAME=VALUE flags as dicts (COMPONENT.NAME=VALUE ones as a dict per component)."""
    out = dict(opts)
    for key, (flag, qualified) in _TABLE_FLAGS.items():
        if key in out:
            out[key] = _parse_assignments(out[key], flag, qualified)
    return out


def _with_config_file(path: str, opts: dict) -> dict:
    """Settings from the TOML file under the flags that were given on the command line."""
    from click.core import ParameterSource

    from .config_file import ConfigFileError, load_run_file

    try:
        file = load_run_file(path)
    except ConfigFileError as exc:
        raise click.UsageError(str(exc)) from None
    ctx = click.get_current_context()
    out = _parsed_tables(opts)
    for key, value in file.items():
        if key in _TABLE_FLAGS:
            if _TABLE_FLAGS[key][1]:  # per component: the flags' values win, name by name
                merged = {c: dict(v) for c, v in value.items()}
                for component, values in out[key].items():
                    merged.setdefault(component, {}).update(values)
                out[key] = merged
            else:
                out[key] = {**value, **out[key]}
        elif ctx.get_parameter_source(key) != ParameterSource.COMMANDLINE:
            out[key] = value
    return out


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
@click.option("--sampler-seed", default=0, show_default=True, type=int, help="TPE sampler seed: exact for a study with one process on a file storage; varied per process (host and pid) where several share it.")
@click.option("--heartbeat", default=10, show_default=True, type=int,
              help="Seconds between a trial's heartbeats on an RDB storage; a trial silent for 3 beats is retried.")
@click.option("--experiment", help="MLflow experiment (default: tuning-<scenario>).")
@click.option("--scenario", default="random", show_default=True, help="Forget-set builder.")
@_common_options
def tune(**opts):
    """Tune methods' hyperparameters with Optuna; judge the result on held-out seeds."""
    from .data import DataError
    from .plan import UsageError
    from .tracking import MlflowTracker, default_tracking_uri
    from .tuning import TuneConfig, run_studies
    from .tuning.report import terminal_summary
    from .tuning.study import Tuner

    opts = _parsed_tables(opts)
    holdout = [] if opts["holdout_seeds"].strip().lower() == "none" else _parse_seeds(opts["holdout_seeds"])
    config = TuneConfig(
        methods=list(opts["methods"]), trials=opts["trials"], seeds=_parse_seeds(opts["seeds"]), holdout_seeds=holdout,
        objective=opts["objective"], attack_metric=opts["attack_metric"], tolerance=opts["tolerance"],
        time_budget=opts["time_budget"], storage=opts["storage"], study=opts["study"], timeout=opts["timeout"],
        workers=opts["workers"], space_file=opts["space_file"], export=opts["export"],
        sampler_seed=opts["sampler_seed"], heartbeat=opts["heartbeat"], profile=opts["profile"],
        scenario=opts["scenario"], scenario_options=opts["scenario_options"], model=opts["model"],
        model_options=opts["model_options"], precision=opts["precision"], attack_options=opts["attack_options"],
        data_dir=opts["data_dir"], cache_dir=opts["cache_dir"], device=opts["device"],
        tracking_uri=default_tracking_uri(opts["tracking_uri"]), experiment=opts["experiment"],
        references=opts["references"], show_progress=not opts["quiet"], command=" ".join(["unlearn", *sys.argv[1:]]))
    try:
        tuner = Tuner(config)  # every check, before a store, study or run is created
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    tuner.tracker = MlflowTracker(config.tracking_uri, tuner.experiment)
    click.echo(f"tracking: {tuner.tracker.uri} (experiment {tuner.experiment!r}); studies: {tuner.storage.display}; "
               f"precision {tuner.plan.profile.precision}", err=True)
    try:
        with _terminate_like_ctrl_c():
            results = run_studies(tuner)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: the running trial is marked FAIL and its run KILLED. Run the same command again "
                   "to continue the study.", err=True)
        sys.exit(_interrupted_status(exc))
    for result in results:
        click.echo(terminal_summary(result))


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of plugins that failed to load.")
def plugins(verbose):
    """List installed methods, attacks, scenarios and models with the package that provides each."""
    import harness

    from .host import default_host

    host = default_host()
    click.echo(f"unlearning-harness {harness.__version__}, plugin contract version {harness.__api_version__}")
    for kind, registry in host.registries.items():
        click.echo(f"{kind}s:")
        for comp in registry:
            extra = "  [" + ", ".join(f"{k}={v}" for k, v in comp.defaults.items()) + "]" if comp.space else ""
            if kind == "attack":
                extra += "\n" + " " * 17 + "metrics: " + ", ".join(
                    f"{k} ({m.ideal}{', CI' if m.interval else ''})" if m.ideal else k
                    for k, m in comp.metrics.items() if m.summary or m.interval)
                extra += _attack_needs(comp)
            click.echo(f"  {comp.name:<14} {comp.source:<44} {comp.description}{extra}")
        for name, sources in registry.conflicts.items():
            click.echo(f"  {name:<14} CONFLICT: registered by {' and '.join(sources)}")
    if host.failures:
        click.echo("plugins that failed to load:")
        for info in host.failures:
            click.echo(f"  {info.name} ({info.source}): {info.error}")
            if verbose and info.details:
                click.echo("    " + info.details.replace("\n", "\n    "))


def _attack_needs(attack) -> str:
    """What an attack needs beyond the model under test, with its default parameters."""
    params = attack.resolve()
    parts = list(attack.needs)
    if attack.references_needed(params):
        parts.append(f"{attack.references_needed(params)} reference model(s)")
    if attack.reruns_needed(params):
        parts.append(f"{attack.reruns_needed(params)} rerun(s) of the method")
    return ("\n" + " " * 17 + "needs: " + ", ".join(parts)) if parts else ""


@main.command()
@click.argument("names", nargs=-1)
@click.option("--model", default="resnet18", show_default=True, help="Model the method checks run on.")
def check(names, model):
    """Run the conformance checks on methods, attacks and scenarios (default: every registered one).

    Tiny synthetic data on the CPU: a few seconds per component. Exit status 1 if any check fails."""
    import traceback

    from . import testing
    from .host import default_host

    host = default_host()
    kinds = [("method", host.methods, testing.METHOD_CHECKS), ("attack", host.attacks, testing.ATTACK_CHECKS),
             ("scenario", host.scenarios, testing.SCENARIO_CHECKS)]
    wanted = set(names)
    known = {c.name for _, registry, _ in kinds for c in registry}
    if wanted - known:
        raise click.UsageError(f"nothing registered as {', '.join(sorted(wanted - known))}; "
                               f"registered: {', '.join(sorted(known))}")
    try:
        factory = host.models.get(model)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    bench = testing.Bench.build(lambda: factory.fn(10, **factory.resolve()))
    failed = 0
    for kind, registry, checks in kinds:
        for component in registry:
            if wanted and component.name not in wanted:
                continue
            for fn in checks:
                try:
                    fn(component, bench)
                    click.echo(f"PASS {kind} {component.name}: {fn.__name__}")
                except Exception as exc:  # a failing check is reported, the others still run
                    failed += 1
                    click.echo(f"FAIL {kind} {component.name}: {fn.__name__}: {type(exc).__name__}: {exc}")
                    click.echo("    " + traceback.format_exc().replace("\n", "\n    "), err=True)
    if host.failures:
        failed += len(host.failures)
        for info in host.failures:
            click.echo(f"FAIL plugin {info.name} ({info.source}) did not load: {info.error}")
    sys.exit(1 if failed else 0)


@main.command("check-attacks")
@click.option("--profile", help="smoke, cpu or paper (default: paper with CUDA, else cpu).")
@click.option("--references", type=click.IntRange(0, 256), metavar="K",
              help="Reference bank size (default: the profile's); attacks needing more are reported SKIPPED.")
@click.option("--seed", default=0, show_default=True, type=int, help="Split seed of the forget set.")
@click.option("--attacks", help="Comma-separated attacks (default: all registered).")
@click.option("--attack-option", "attack_options", multiple=True, metavar="ATTACK.NAME=VALUE",
              help="Attack parameter, e.g. mia.folds=5.")
@click.option("--scenario", default="random", show_default=True, help="Forget-set builder.")
@click.option("--model", default="resnet18", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), help="Override the profile's precision.")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR].")
@click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR].")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def check_attacks_command(**opts):
    """Check that each attack can tell the original (it saw the forget set) from a held-out retrain.

    The original must score clearly on the "remembers" side and a retrain outside the reference bank
    within its interval of the ideal; exit status 1 if any attack fails. Trains (once, cached) the
    original, the gold retrain, the bank and the held-out retrain."""
    from .attack_check import check_attacks, format_verdicts
    from .plan import RunConfig

    attack_names = _parse_list(opts["attacks"], "--attacks")
    config = RunConfig(methods=None, scenarios=[opts["scenario"]], seeds=[opts["seed"]], profile=opts["profile"],
                       precision=opts["precision"], model=opts["model"], attacks=attack_names,
                       attack_options=_parse_assignments(opts["attack_options"], "--attack-option", True),
                       data_dir=opts["data_dir"], cache_dir=opts["cache_dir"], device=opts["device"],
                       references=opts["references"], show_progress=not opts["quiet"])
    p = _planned(config)
    if not p.attacks:
        raise click.UsageError("no attack to check")
    result = check_attacks(p)
    click.echo(f"profile {p.profile.name}, split seed {result.split_seed}, {result.references} reference model(s), "
               f"held-out retrain seed {result.witness_seed}, precision {p.profile.precision}; models ready in "
               f"{result.setup_seconds:.1f} s")
    click.echo(format_verdicts(result))
    if not result.ok:
        sys.exit(1)


@main.command()
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", help="Report the newest parent run of this experiment.")
@click.option("--tracking-uri", help="MLflow tracking URI [default: the one `unlearn run` uses].")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write markdown here instead of stdout "
              "(a study's Pareto figure is copied into figures/ beside it).")
@click.option("--title", default="Unlearning results", show_default=True)
@click.option("--preamble", type=click.Path(exists=True, dir_okay=False),
              help="Markdown inserted after the title (hand-written analysis of generated tables).")
def report(run_ids, experiment, tracking_uri, output, title, preamble):
    """Markdown of parent runs: an `unlearn run` (mean ± std over seeds, every run) or `unlearn tune` studies
    (held-out comparison, parameters, trials); several study RUN_IDS make one document."""
    from .tracking import MlflowStore

    if not run_ids and not experiment:
        raise click.UsageError("give parent RUN_IDS or --experiment NAME")
    try:
        store = MlflowStore(tracking_uri)
        ids = list(run_ids) or [store.latest_parent(experiment)]
    except (FileNotFoundError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        parents = [store.parent(i) for i in ids]
    except Exception as exc:  # MLflow's "run not found" and the like
        raise click.ClickException(f"cannot read run(s) {', '.join(ids)} from {store.uri}: {exc}") from None
    kinds = {p["tags"].get("run_kind") for p in parents}
    if len(kinds) > 1 or (len(ids) > 1 and kinds != {"study"}):
        raise click.UsageError("several RUN_IDS must all be study parents of `unlearn tune`; report a run on its own")
    regenerate = " ".join(["unlearn", "report", *(["--experiment", experiment] if experiment else ids),
                           *(["--output", output] if output else []), "--title", repr(title),
                           *(["--preamble", preamble] if preamble else [])])
    extra = None
    if preamble:
        with open(preamble) as fh:
            extra = fh.read().strip()
    if kinds != {"study"}:
        text, folder = _run_report(store, parents[0], title, regenerate, extra, output)
        click.echo(f"report files: {folder}" + (f"; wrote {output}" if output else ""), err=True)
        if not output:
            click.echo(text)
        return
    head = [f"# {title}", "", "Generated by `unlearn report`; do not edit by hand.", *(["", extra] if extra else [])]
    text = _study_report(store, parents, output, head, regenerate)
    if output:
        with open(output, "w") as fh:
            fh.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)


def _run_report(store, parent, title, regenerate, preamble: str | None, output: str | None):
    """Write the report of a run parent (figures, tables, page) into its folder and the parent's artifacts:
    beside --output (docs/x.md -> docs/x/), else beside the store. Returns (page, folder)."""
    from pathlib import Path

    from .run_report import default_folder, publish

    run_id = parent["run_id"]
    folder = Path(output).with_suffix("") if output else default_folder(store.uri, run_id)
    command = parent["tags"].get("command")
    if command:  # the run, then this report: the two commands that regenerate the document
        command += "\n" + regenerate
    try:
        page, _ = publish(store, parent, folder, title=title, command=command, preamble=preamble,
                          markdown_path=Path(output) if output else None)
    except (FileNotFoundError, LookupError, KeyError) as exc:
        raise click.ClickException(f"run {run_id} is not a parent run of `unlearn run`: {exc}") from None
    return page, folder


def _study_report(store, parents: list[dict], output: str | None, head: list[str], regenerate: str) -> str:
    from pathlib import Path

    from .tuning.report import study_markdown

    commands, sections = [], []
    for parent in parents:
        run_id = parent["run_id"]
        try:
            summary = store.load_json(run_id, "tuning.json")
        except Exception:
            raise click.ClickException(f"study run {run_id} ({parent['status']}) has no tuning.json yet: its trials "
                                       f"or held-out evaluation did not finish; run the same `unlearn tune` again") from None
        figure = None
        if output:
            folder = Path(output).parent / "figures"
            figure_path = folder / f"{summary['study']}-pareto.png"
            try:
                store.download(run_id, "pareto_front.png", figure_path)
                figure = str(figure_path.relative_to(Path(output).parent))
            except Exception:
                figure = None  # score studies have no Pareto front
        if summary.get("command") not in commands:
            commands.append(summary.get("command") or "?")
        sections.append(study_markdown(summary, run_id, figure))
    lines = [*head, "", "Regenerate with:", "", "```bash", *commands, regenerate, "```", "", *sections]
    return "\n".join(lines) + "\n"


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tracking-uri", help="MLflow tracking URI [default: the one `unlearn run` uses].")
@click.option("--experiment", help="Experiment to import into [default: the one the runs were planned for].")
def import_command(path, tracking_uri, experiment):
    """Import runs saved on a machine without MLflow (`benchmarks/profile_run.py --save FILE`, the GPU
    check) into the MLflow store, then `unlearn report` and `unlearn ui` work on them as on any run."""
    from .tracking import default_tracking_uri, import_runs

    uri = default_tracking_uri(tracking_uri)
    try:
        parents = import_runs(path, uri, experiment)
    except (ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None
    for run_id in parents:
        click.echo(run_id)
    click.echo(f"imported {path} into {uri}; report: unlearn report {' '.join(parents)}", err=True)


@main.command()
@click.argument("run_id")
@click.option("--tracking-uri", help="MLflow tracking URI [default: the one `unlearn run` uses].")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR].")
@click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR].")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def reproduce(run_id, tracking_uri, data_dir, cache_dir, device, quiet):
    """Run one logged cell (a child run) again from its logged configuration and print each metric's
    difference; exit 1 if a metric other than a timing differs."""
    from .data import DataError
    from .plan import RunConfig, UsageError
    from .reproduce import CannotReproduce, reproduce as run_again
    from .tracking import MlflowStore

    local = RunConfig(data_dir=data_dir, cache_dir=cache_dir, device=device, show_progress=not quiet)
    try:
        store = MlflowStore(tracking_uri)
        rows = run_again(store, run_id, local, on_warning=lambda w: click.echo(f"differs: {w}", err=True))
    except (CannotReproduce, FileNotFoundError, DataError) as exc:
        raise click.ClickException(str(exc)) from None
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # MLflow's "run not found" and the like
        raise click.ClickException(f"cannot reproduce run {run_id}: {type(exc).__name__}: {exc}") from None
    width = max(len(r.metric) for r in rows)
    click.echo(f"{'metric':{width}}  {'logged':>12}  {'now':>12}  {'difference':>12}")
    for r in rows:
        note = "  (timing)" if r.timing else ("" if r.same else "  DIFFERS")
        click.echo(f"{r.metric:{width}}  {r.logged:12.6g}  {r.now:12.6g}  {r.difference:12.3g}{note}")
    differ = [r.metric for r in rows if not r.same]
    if differ:
        click.echo(f"{len(differ)} metric(s) differ: {', '.join(differ)}", err=True)
        sys.exit(1)
    click.echo(f"all {sum(not r.timing for r in rows)} metrics reproduced exactly (timings shown, not compared)",
               err=True)


@main.command()
@click.option("--storage", help="Study storage (default: mlruns/optuna.db, or mlruns/optuna-journal.log).")
@click.option("--port", default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
def dashboard(storage, port, host):
    """Start optuna-dashboard on the studies of `unlearn tune`."""
    import shutil
    from pathlib import Path

    from . import serve
    from .tuning.storage import StorageError, resolve_storage

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


@main.command()
@click.option("--tracking-uri", help="Store to browse [default: the one `unlearn run` uses].")
@click.option("--port", default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--open", "open_browser", is_flag=True, help="Open the newest benchmark's comparison view in a browser.")
def ui(tracking_uri, port, host, open_browser):
    """Start the MLflow UI on the harness's tracking store; print each benchmark's comparison view."""
    import subprocess

    from . import serve
    from .mlflow_view import view_urls
    from .tracking import MlflowStore, artifact_root_for, default_tracking_uri

    uri = default_tracking_uri(tracking_uri)
    warning = serve.exposure_warning(host, port, "every run, model and experiment in the store")
    if warning:
        click.echo(warning, err=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        urls = view_urls(MlflowStore(uri).client, f"http://{shown}:{port}")
    except Exception:  # no store yet: the UI still starts (empty)
        urls = []
    for name, url in urls:
        click.echo(f"compare methods, {name}: {url}")
    if open_browser and urls:  # waits for the server, then opens; survives the exec below
        subprocess.Popen([sys.executable, "-m", "harness.mlflow_view", urls[0][1]], start_new_session=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    root = artifact_root_for(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    click.echo(f"MLflow UI on http://{host}:{port} for {uri}", err=True)
    argv = serve.supervised(cmd)
    os.execv(argv[0], argv)  # a small supervisor replaces `unlearn`; stopping it stops every server process


if __name__ == "__main__":
    main()
