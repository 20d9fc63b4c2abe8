"""Run settings in a TOML file: `unlearn run --config FILE.toml`, and what `unlearn tune --export` writes.

The keys are the flags of `unlearn run` (dashes or underscores), with tables for the per-component
options; flags given on the command line win over the file:

    methods = ["deviation"]          # or "deviation,pruning"
    seeds = "0-2"                    # or [0, 1, 2]
    epochs = [5, 9, 20]              # epoch budgets (optional)
    profile = "cpu"
    scenarios = ["random", "targeted-red"]   # or scenario = "random"
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

SCALARS = {"methods", "scenarios", "seeds", "epochs", "profile", "model", "precision", "attacks", "data_dir", "cache_dir",
           "device", "tracking_uri", "experiment", "rerun", "log_models", "quiet", "references"}
TABLES = {"scenario_options", "model_options", "attack_options", "params"}


class ConfigFileError(ValueError):
    """A config file that is missing, malformed or has unknown keys."""


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file's content; a ConfigFileError says in one line what is wrong with it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigFileError(f"{what} {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{what} {path}: {exc}") from None


def load_run_file(path: str | Path) -> dict[str, Any]:
    """The file's settings, keys normalised to underscores and checked against the known ones."""
    raw = read_toml(path)
    data = {k.replace("-", "_"): v for k, v in raw.items()}
    if "scenario" in data:  # one scenario, as `unlearn tune --export` writes it
        if "scenarios" in data:
            raise ConfigFileError(f"config file {path}: give scenario or scenarios, not both")
        data["scenarios"] = data.pop("scenario")
    unknown = sorted(set(data) - SCALARS - TABLES)
    if unknown:
        raise ConfigFileError(f"config file {path}: unknown key(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(sorted(SCALARS | TABLES))}")
    for key in TABLES & set(data):
        if not isinstance(data[key], dict):
            raise ConfigFileError(f"config file {path}: {key} must be a table ([{key}])")
    for key in ("params", "attack_options"):
        bad = [k for k, v in data.get(key, {}).items() if not isinstance(v, dict)]
        if bad:
            raise ConfigFileError(f"config file {path}: {key} holds one table per component ([{key}.NAME]), "
                                  f"found plain key(s) {', '.join(bad)}")
    for key in ("methods", "attacks", "seeds", "scenarios", "epochs"):
        if isinstance(data.get(key), list):
            data[key] = ",".join(str(v) for v in data[key])
        elif key in data and not isinstance(data[key], (str, int)):
            raise ConfigFileError(f"config file {path}: {key} must be a list or a string")
        if key in data:
            data[key] = str(data[key])
    return data


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
