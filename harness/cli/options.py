"""What the commands share: flags read into a spec and a site (over a TOML file), the options of run and tune, plan
errors as click errors, and SIGTERM handled like Ctrl-C."""
from __future__ import annotations

import contextlib
import signal

import click


def parse_assignments(values: tuple[str, ...], what: str, qualified: bool) -> dict:
    out: dict = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected {'COMPONENT.NAME' if qualified else 'NAME'}=VALUE",
                                     param_hint=what)
        if qualified:
            owner, dot, name = key.partition(".")
            if not dot or not name:
                raise click.BadParameter(f"{item!r}: expected COMPONENT.NAME=VALUE, e.g. simple.epochs=3",
                                         param_hint=what)
            out.setdefault(owner, {})[name] = value
        else:
            out[key] = value
    return out


COMMON_KEYS = ("scenario_options", "profile", "model", "model_options", "precision", "attack_options", "bank_size",
               "data_dir", "cache_dir", "device", "tracking_uri", "quiet")  # what common_options adds


def common_options(fn):
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
        click.option("--references", "bank_size", type=click.IntRange(0, 256), metavar="K",
                     help="Reference bank: K retrains with other seeds per split, for lira-offline, rmia and "
                          "forget-quality (each costs one retrain, once: cached and shared). Default: 0 on the cpu "
                          "profile, 4 on paper; attacks needing more are skipped with the reason."),
        click.option("--data-dir", type=click.Path(file_okay=True),
                     help="Local CIFAR-10 copy [env: HARNESS_DATA_DIR]."),
        click.option("--cache-dir", type=click.Path(), help="Downloads and cached models [env: HARNESS_CACHE_DIR]."),
        click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available)."),
        click.option("--tracking-uri",
                     help="MLflow tracking URI [env: MLFLOW_TRACKING_URI; default: sqlite in ./mlruns]."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn



class Terminated(KeyboardInterrupt):
    """SIGTERM (what `docker stop` and schedulers send), raised where Ctrl-C would be: runs end KILLED."""


@contextlib.contextmanager
def terminate_like_ctrl_c():
    """While the block runs, SIGTERM raises `Terminated`; the previous handler is restored after."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM is not caught again
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(exc: KeyboardInterrupt) -> int:
    return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130


def planned(spec, site):
    """plan(spec, site), its mistakes as click errors: bad input exits 2, unreadable data 1."""
    from ..data import DataError
    from ..plan import plan
    from ..spec import UsageError

    try:
        return plan(spec, site)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


# Flags of `run`, `tune` and `check-attacks` that are not named like the spec or site key they set.
RENAMED = {"method": "methods", "scenario": "scenarios", "seed": "seeds", "param": "params", "quiet": "quiet"}
TABLE_FLAGS = {"scenario_options": ("--scenario-option", False), "model_options": ("--model-option", False),
               "attack_options": ("--attack-option", True), "params": ("--param", True)}


def spec_and_site(opts: dict, keys: tuple[str, ...], config_file: str | None = None):
    """The (Spec, Site) the flags in `keys` ask for, over the settings of a TOML `config_file` if given:
    a flag given on the command line wins (per component and name for the NAME=VALUE tables); a flag left
    out leaves the file's value, else the spec's default. Bad values exit 2 with one line."""
    from click.core import ParameterSource

    from ..spec import Site, Spec, UsageError, read_run_file, split_keys

    ctx = click.get_current_context()
    try:
        values: dict = {}
        if config_file:
            spec, site = read_run_file(config_file)
            values = {**spec, **site}
        for name in keys:
            key = RENAMED.get(name, name)
            value = opts[name]
            if key in TABLE_FLAGS:
                flag, qualified = TABLE_FLAGS[key]
                given = parse_assignments(value, flag, qualified)
                if qualified:
                    merged = {c: dict(v) for c, v in values.get(key, {}).items()}
                    for component, entries in given.items():
                        merged.setdefault(component, {}).update(entries)
                    values[key] = merged
                else:
                    values[key] = {**values.get(key, {}), **given}
                continue
            if ctx.get_parameter_source(name) not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
                continue  # the file's value, or the default
            if key == "attacks" and isinstance(value, str) and value.strip().lower() == "none":
                value = []
            elif key == "methods" and isinstance(value, tuple):  # `tune --method` is repeated
                value = list(value)
            elif key == "seeds" and isinstance(value, int):
                value = [value]
            values[key] = value
        spec_values, site_values = split_keys(values, source="the command line")
        flags = {RENAMED.get(n, n): "--" + n.replace("_", "-") for n in keys}
        flags.update({"bank_size": "--references", "params": "--param"})
        return Spec.from_dict(spec_values, source="the command line", labels=flags), Site.from_dict(site_values)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
