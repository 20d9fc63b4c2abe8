"""TOML files the harness reads and writes: run files (`unlearn run --config FILE.toml`, read as a spec
and a site by `harness.spec.split_keys`), what `unlearn tune --export` writes, and tuning space files.

A run file's keys are the spec's and the site's (dashes or underscores), with tables for the
per-component options; flags given on the command line win over the file:

    methods = ["deviation"]          # or "deviation,pruning"
    seeds = "0-2"                    # or [0, 1, 2]
    epochs = [5, 9, 20]              # epoch budgets (optional)
    profile = "cpu"
    scenarios = ["random", "targeted-red"]
    bank_size = 4                    # --references
    [scenario_options]
    [params.deviation]
    sigma = 0.31
    [attack_options.mia]
    folds = 5
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from .spec import UsageError


class ConfigFileError(UsageError):
    """A TOML file that is missing or malformed."""


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file's content; a ConfigFileError says in one line what is wrong with it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigFileError(f"{what} {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{what} {path}: {exc}") from None


def dump_toml(data: dict[str, Any], header: list[str] | None = None) -> str:
    """TOML for the plain data this harness writes: scalars, lists of scalars, nested tables."""
    lines = [f"# {h}" for h in header or []]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    lines += _tables(tables, [])
    return "\n".join(lines) + "\n"


def _tables(tables: dict, prefix: list[str]) -> list[str]:
    lines = []
    for name, table in tables.items():
        path = [*prefix, name]
        plain = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
        if plain or not table:
            lines += ["", f"[{'.'.join(_key(p) for p in path)}]", *plain]
        lines += _tables({k: v for k, v in table.items() if isinstance(v, dict)}, path)
    return lines


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
