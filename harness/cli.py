"""The `unlearn` command line."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import click

from . import __version__
from .data import DataError


def _parse_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _parse_seeds(value: str) -> list[int]:
    """'0,1,2' or '0-2'."""
    seeds: list[int] = []
    try:
        for part in value.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected integers like 0,1,2 or a range like 0-4") from None
    if not seeds:
        raise click.BadParameter("no seeds given")
    return list(dict.fromkeys(seeds))


def _parse_assignments(values: tuple[str, ...], what: str, qualified: bool) -> dict:
    out: dict = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected {'METHOD.NAME' if qualified else 'NAME'}=VALUE", param_hint=what)
        if qualified:
            method, dot, name = key.partition(".")
            if not dot or not name:
                raise click.BadParameter(f"{item!r}: expected METHOD.NAME=VALUE, e.g. simple.epochs=3", param_hint=what)
            out.setdefault(method, {})[name] = value
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
@click.option("--methods", help="Comma-separated methods (default: all registered). retrain always runs: it is the reference.")
@click.option("--scenario", default="random", show_default=True, help="Forget-set builder.")
@click.option("--seeds", default="0", show_default=True, help="Split seeds: 0,1,2 or 0-2.")
@click.option("--profile", help="smoke, cpu or paper (default: paper with CUDA, else cpu).")
@click.option("--model", default="resnet18", show_default=True)
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), help="Override the profile's precision.")
@click.option("--attacks", help="Comma-separated attacks (default: all registered).")
@click.option("--param", "params", multiple=True, metavar="METHOD.NAME=VALUE", help="Override a method parameter.")
@click.option("--scenario-option", "scenario_options", multiple=True, metavar="NAME=VALUE",
              help="Scenario option, e.g. target_class=cat for --scenario class.")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR].")
@click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR].")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--tracking-uri", help="MLflow tracking URI [env: MLFLOW_TRACKING_URI; default: sqlite in ./mlruns].")
@click.option("--experiment", help="MLflow experiment (default: unlearning-<scenario>).")
@click.option("--resume", is_flag=True, help="Continue the newest unfinished run of the same configuration.")
@click.option("--log-models/--no-log-models", default=True, show_default=True,
              help="Log the original and retrain checkpoints as artifacts.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(methods, scenario, seeds, profile, model, precision, attacks, params, scenario_options, data_dir, cache_dir, device,
        tracking_uri, experiment, resume, log_models, quiet):
    """Run unlearning methods and log every (method, seed) to MLflow."""
    from .report import format_summary
    from .runner import RunConfig, Runner, UsageError, plan
    from .splits import SplitError
    from .tracking import MlflowTracker

    config = RunConfig(
        methods=_parse_list(methods), scenario=scenario, seeds=_parse_seeds(seeds), profile=profile, model=model,
        precision=precision,
        attacks=_parse_list(attacks), method_params=_parse_assignments(params, "--param", True),
        scenario_options=_parse_assignments(scenario_options, "--scenario-option", False),
        data_dir=data_dir, cache_dir=cache_dir, device=device, experiment=experiment, log_models=log_models,
        show_progress=not quiet, resume=resume, command=" ".join(["unlearn", *sys.argv[1:]]))
    try:
        p = plan(config)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        tracker = MlflowTracker(tracking_uri, p.experiment)
        click.echo(f"tracking: {tracker.uri} (experiment {p.experiment!r})", err=True)
        result = Runner(p, tracker).run()
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    except SplitError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted: runs marked KILLED. Continue with the same command and --resume.", err=True)
        sys.exit(130)
    summary = result.summary()
    if not summary.empty:
        click.echo(format_summary(summary).to_string())
    click.echo(f"parent run: {result.parent_run_id}", err=True)
    if result.failures:
        click.echo(f"\n{len(result.failures)} method run(s) failed:", err=True)
        for f in result.failures:
            click.echo(f"  {f['method']} seed={f['seed']}: {f['error']}", err=True)
        sys.exit(1)


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of plugins that failed to load.")
def plugins(verbose):
    """List installed methods, attacks, scenarios and models with the package that provides each."""
    from .host import default_host

    host = default_host()
    for kind, registry in host.registries.items():
        click.echo(f"{kind}s:")
        for comp in registry:
            extra = ""
            if kind == "method":
                extra = "  [" + ", ".join(f"{k}={v}" for k, v in comp.defaults.items()) + "]"
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
@click.argument("run_id", required=False)
@click.option("--experiment", help="Use the newest finished parent run of this experiment.")
@click.option("--tracking-uri", help="MLflow tracking URI [default: the one `unlearn run` uses].")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write markdown here instead of stdout.")
@click.option("--title", default="Unlearning results", show_default=True)
def report(run_id, experiment, tracking_uri, output, title):
    """Markdown table (mean ± std over seeds, and every run) of a parent run logged by `unlearn run`."""
    from mlflow import MlflowClient

    from .report import results_markdown, rows_from_mlflow
    from .runner import RunResult
    from .tracking import default_tracking_uri

    client = MlflowClient(tracking_uri=default_tracking_uri(tracking_uri))
    if run_id is None:
        if not experiment:
            raise click.UsageError("give a parent RUN_ID or --experiment NAME")
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise click.UsageError(f"no experiment named {experiment!r}")
        parents = client.search_runs([exp.experiment_id], filter_string="tags.run_kind = 'parent'",
                                     order_by=["attributes.start_time DESC"], max_results=50)
        parents = [r for r in parents if r.info.status == "FINISHED"]
        if not parents:
            raise click.ClickException(f"experiment {experiment!r} has no finished parent run")
        run_id = parents[0].info.run_id
    parent = client.get_run(run_id)
    result = RunResult(rows_from_mlflow(client, run_id), [], run_id, {})
    tags, params = parent.data.tags, parent.data.params
    facts = {"parent run": f"`{run_id}` ({parent.info.status})", "profile": params.get("profile", "?"),
             "scenario": params.get("scenario", "?"), "seeds": params.get("seeds", "?"),
             "device": tags.get("device", "?"), "precision": params.get("precision", "?"),
             "harness": f"{tags.get('harness_version', '?')} (commit {str(tags.get('git_commit', '?'))[:10]})"}
    command = tags.get("command")
    if command:  # the run, then this report: the two commands that regenerate the document
        command += "\n" + " ".join(["unlearn", "report", *(["--experiment", experiment] if experiment else [run_id]),
                                    *(["--output", output] if output else []), "--title", repr(title)])
    text = results_markdown(result.summary(), result.frame(), title=title, command=command, facts=facts)
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
