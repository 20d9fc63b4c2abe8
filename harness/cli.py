"""The `unlearn` command line."""
from __future__ import annotations

import logging
import os
import re
import subprocess
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
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.option("--methods", help="Comma-separated methods (default: all registered). The original and retrain "
              "reference rows are always there.")
@click.option("--scenario", default="random", show_default=True, help="Forget-set builder.")
@click.option("--scenario-option", "scenario_options", multiple=True, metavar="NAME=VALUE",
              help="Scenario parameter, e.g. target_class=cat for --scenario class.")
@click.option("--seeds", default="0", show_default=True, help="Split seeds: 0,1,2 or 0-2.")
@click.option("--profile", help="smoke, cpu or paper (default: paper with CUDA, else cpu).")
@click.option("--model", default="resnet18", show_default=True)
@click.option("--model-option", "model_options", multiple=True, metavar="NAME=VALUE", help="Model parameter.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]),
              help="Override the profile's precision (auto: whichever trains faster here, measured once).")
@click.option("--attacks", help="Comma-separated attacks (default: all registered; 'none' for none).")
@click.option("--attack-option", "attack_options", multiple=True, metavar="ATTACK.NAME=VALUE",
              help="Attack parameter, e.g. mia.folds=5.")
@click.option("--param", "params", multiple=True, metavar="METHOD.NAME=VALUE", help="Method parameter.")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR].")
@click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR].")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--tracking-uri", help="MLflow tracking URI [env: MLFLOW_TRACKING_URI; default: sqlite in ./mlruns].")
@click.option("--experiment", help="MLflow experiment (default: unlearning-<scenario>).")
@click.option("--resume", is_flag=True, help="Continue the newest unfinished run of the same configuration.")
@click.option("--log-models/--no-log-models", default=True, show_default=True,
              help="Log the original and retrain checkpoints as artifacts.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(methods, scenario, scenario_options, seeds, profile, model, model_options, precision, attacks, attack_options,
        params, data_dir, cache_dir, device, tracking_uri, experiment, resume, log_models, quiet):
    """Run unlearning methods and log every (method, seed) to MLflow."""
    from .data import DataError
    from .plan import RunConfig, UsageError, plan
    from .report import format_summary
    from .runner import Runner
    from .tracking import MlflowTracker, default_tracking_uri

    attack_names = _parse_list(attacks, "--attacks")
    config = RunConfig(
        methods=_parse_list(methods, "--methods"), scenario=scenario,
        scenario_options=_parse_assignments(scenario_options, "--scenario-option", False),
        seeds=_parse_seeds(seeds), profile=profile, precision=precision, model=model,
        model_options=_parse_assignments(model_options, "--model-option", False),
        attacks=[] if attack_names == ["none"] else attack_names,
        attack_options=_parse_assignments(attack_options, "--attack-option", True),
        method_params=_parse_assignments(params, "--param", True), data_dir=data_dir, cache_dir=cache_dir,
        device=device, tracking_uri=default_tracking_uri(tracking_uri), experiment=experiment,
        log_models=log_models, show_progress=not quiet, resume=resume,
        command=" ".join(["unlearn", *sys.argv[1:]]))
    try:
        p = plan(config)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    tracker = MlflowTracker(config.tracking_uri, p.experiment)
    click.echo(f"tracking: {tracker.uri} (experiment {p.experiment!r}); precision {p.profile.precision}", err=True)
    try:
        result = Runner(p, tracker).run()
    except KeyboardInterrupt:
        click.echo("\ninterrupted: runs marked KILLED. Continue with the same command and --resume.", err=True)
        sys.exit(130)
    summary = result.summary()
    if not summary.empty:
        click.echo(format_summary(summary, p.attack_metrics).to_string())
    click.echo(f"parent run: {result.parent_run_id}", err=True)
    if result.failures:
        click.echo(f"\n{len(result.failures)} failure(s):", err=True)
        for f in result.failures:
            click.echo(f"  {f['method']} seed={f['seed']}: {f['error']}\n    run {f['run_id']}, details: {f['where']}",
                       err=True)
        sys.exit(1)


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
                extra += "  metrics: " + ", ".join(f"{k} ({m.ideal})" if m.ideal else k for k, m in comp.metrics.items())
            click.echo(f"  {comp.name:<14} {comp.source:<44} {comp.description}{extra}")
        for name, sources in registry.conflicts.items():
            click.echo(f"  {name:<14} CONFLICT: registered by {' and '.join(sources)}")
    if host.failures:
        click.echo("plugins that failed to load:")
        for info in host.failures:
            click.echo(f"  {info.name} ({info.source}): {info.error}")
            if verbose and info.details:
                click.echo("    " + info.details.replace("\n", "\n    "))


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


@main.command()
@click.argument("run_id", required=False)
@click.option("--experiment", help="Report the newest parent run of this experiment.")
@click.option("--tracking-uri", help="MLflow tracking URI [default: the one `unlearn run` uses].")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write markdown here instead of stdout.")
@click.option("--title", default="Unlearning results", show_default=True)
def report(run_id, experiment, tracking_uri, output, title):
    """Markdown table (mean ± std over seeds, and every run) of a parent run logged by `unlearn run`."""
    from .report import results_markdown
    from .runner import summarize
    from .tracking import MlflowStore

    import pandas as pd

    if run_id is None and not experiment:
        raise click.UsageError("give a parent RUN_ID or --experiment NAME")
    try:
        store = MlflowStore(tracking_uri)
        run_id = run_id or store.latest_parent(experiment)
        parent = store.parent(run_id)
        rows = store.rows(run_id)
        config = store.load_json(run_id, "config.json")
    except (FileNotFoundError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    tags, params = parent["tags"], parent["params"]
    facts = {"parent run": f"`{run_id}` ({parent['status']}) in {store.uri}", "profile": params.get("profile", "?"),
             "scenario": params.get("scenario", "?"), "seeds": params.get("seeds", "?"),
             "device": tags.get("device_name", tags.get("device", "?")), "precision": params.get("precision", "?"),
             "harness": f"{tags.get('harness_version', '?')} (commit {str(tags.get('git_commit', '?'))[:10]})"}
    command = tags.get("command")
    if command:  # the run, then this report: the two commands that regenerate the document
        command += "\n" + " ".join(["unlearn", "report", *(["--experiment", experiment] if experiment else [run_id]),
                                    *(["--output", output] if output else []), "--title", repr(title)])
    frame = pd.DataFrame(rows)
    failures = [{"method": r["method"], "seed": r["seed"], "error": r.get("error") or r["status"]}
                for r in rows if r["status"] != "FINISHED"]
    text = results_markdown(summarize(frame), frame, config.get("metrics", {}), title=title, command=command,
                            facts=facts, failures=failures)
    if output:
        with open(output, "w") as fh:
            fh.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)


@main.command()
@click.option("--tracking-uri", help="Store to browse [default: the one `unlearn run` uses].")
@click.option("--port", default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
def ui(tracking_uri, port, host):
    """Start the MLflow UI on the harness's tracking store."""
    from .tracking import artifact_root_for, default_tracking_uri

    uri = default_tracking_uri(tracking_uri)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    root = artifact_root_for(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    click.echo(f"MLflow UI on http://{host}:{port} for {uri}", err=True)
    raise SystemExit(subprocess.call(cmd, env=os.environ.copy()))


if __name__ == "__main__":
    main()
