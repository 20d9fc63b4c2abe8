"""`unlearn plugins`, `unlearn check` and `unlearn check-attacks`: what is installed, and whether it works."""
from __future__ import annotations

import sys

import click

from . import main
from .options import planned, spec_and_site


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of plugins that failed to load.")
def plugins(verbose):
    """List installed methods, attacks, scenarios and models with the package that provides each."""
    import harness

    from ..host import default_host

    host = default_host()
    click.echo(f"unlearning-harness {harness.__version__}, plugin contract version {harness.__api_version__}")
    for kind, registry in host.registries.items():
        click.echo(f"{kind}s:")
        for comp in registry:
            extra = "  [" + ", ".join(f"{k}={v}" for k, v in comp.defaults.items()) + "]" if comp.space else ""
            if kind == "method" and (comp.family or comp.touches or comp.citation):
                indent = "\n" + " " * 17
                extra += f"{indent}family: {comp.family or '?'}; data: {comp.touches or '?'}"
                extra += f"{indent}source: {comp.citation}" if comp.citation else ""
            if kind == "attack":
                extra += "\n" + " " * 17 + "metrics: " + ", ".join(
                    f"{k} ({m.ideal}{', CI' if m.interval else ''})" if m.ideal else k
                    for k, m in comp.metrics.items() if m.summary or m.interval)
                extra += _attack_needs(comp)
            click.echo(f"  {comp.name:<14} {comp.source:<44} {comp.description}{extra}")
        for name, sources in registry.conflicts.items():
            click.echo(f"  {name:<14} CONFLICT: registered by {' and '.join(sources)}")
    if host.refusals:
        click.echo("components refused (their plugins' other components loaded):")
        for refusal in host.refusals:
            click.echo(f"  {refusal.line()}")
    if host.failures:
        click.echo("plugins that failed to load:")
        for info in host.failures:
            click.echo(f"  {info.name} ({info.source}): {info.error}")
            if verbose and info.details:
                click.echo("    " + info.details.replace("\n", "\n    "))
    if host.not_loaded:
        click.echo(f"not loaded ($HARNESS_LOAD_PLUGINS): {', '.join(host.not_loaded)}")


def _attack_needs(attack) -> str:
    """What an attack needs beyond the model under test, with its default parameters."""
    params = attack.resolve()
    parts = list(attack.needs)
    if attack.bank_needed(params):
        parts.append(f"{attack.bank_needed(params)} reference model(s)")
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

    from .. import testing
    from ..host import default_host

    host = default_host()
    kinds = [("method", host.methods, testing.METHOD_CHECKS), ("attack", host.attacks, testing.ATTACK_CHECKS),
             ("scenario", host.scenarios, testing.SCENARIO_CHECKS)]
    wanted = set(names)
    known = {c.name for _, registry, _ in kinds for c in registry} | {r.name for r in host.refusals}
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
    for info in host.failures:
        failed += 1
        click.echo(f"FAIL plugin {info.name} ({info.source}) did not load: {info.error}")
    for refusal in host.refusals:
        if not wanted or refusal.name in wanted:
            failed += 1
            click.echo(f"FAIL {refusal.line()}")
    sys.exit(1 if failed else 0)


@main.command("check-attacks")
@click.option("--profile", help="smoke, cpu or paper (default: paper with CUDA, else cpu).")
@click.option("--references", "bank_size", type=click.IntRange(0, 256), metavar="K",
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
    from ..attack_check import check_attacks, format_verdicts
    spec, site = spec_and_site(opts, ("profile", "bank_size", "seed", "attacks", "attack_options", "scenario", "model",
                                      "precision", "data_dir", "cache_dir", "device", "quiet"))
    p = planned(spec, site)
    if not p.attacks:
        raise click.UsageError("no attack to check")
    result = check_attacks(p)
    click.echo(f"profile {p.profile.name}, split seed {result.split_seed}, {result.references} reference model(s), "
               f"held-out retrain seed {result.witness_seed}, precision {p.profile.precision}; models ready in "
               f"{result.setup_seconds:.1f} s")
    click.echo(format_verdicts(result))
    if not result.ok:
        sys.exit(1)
