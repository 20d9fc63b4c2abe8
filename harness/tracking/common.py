"""What every part of tracking shares: run statuses, the tracker protocol, tracking URIs and their
checks, the checkout's commit."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DIR = "mlruns"
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"


class TrackedRun(Protocol):
    run_id: str

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int | None = None) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def log_dict(self, data: Any, path: str) -> None: ...
    def log_text(self, text: str, path: str) -> None: ...
    def log_figure(self, figure, path: str) -> None: ...
    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def location(self, path: str) -> str: ...
    def end(self, status: str) -> None: ...


class Tracker(Protocol):
    def start_parent(self, name: str, tags: dict) -> TrackedRun: ...
    def reopen(self, run_id: str) -> TrackedRun: ...
    def start_child(self, parent: TrackedRun, name: str, tags: dict) -> TrackedRun: ...
    def find_parent(self, config_hash: str) -> dict | None: ...
    def finished_cells(self, hashes: set[str]) -> dict[str, dict]: ...
    def kill_running_children(self, parent_id: str, cell_hash: str | None = None) -> int: ...


def default_tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else an SQLite store in ./mlruns (MLflow 3 refuses the
    old file store, so the default is an explicit SQLite URI with artifacts in a folder beside it)."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path.cwd() / DEFAULT_DIR / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def shown_uri(uri: str) -> str:
    """A store URI as a report page shows it: a file under the working folder as a relative path
    (sqlite:///mlruns/mlflow.db, journal:mlruns/x.log), so a page committed from a checkout names no path
    of the machine it was written on; anything else as it is."""
    for prefix in ("sqlite:///", "journal:"):
        if uri.startswith(prefix):
            path = Path(uri[len(prefix):])
            try:
                return prefix + str(path.resolve().relative_to(Path.cwd().resolve()))
            except ValueError:
                return uri
    return uri


def artifact_root_for(uri: str) -> str | None:
    """Artifacts beside an SQLite database; None lets a tracking server decide."""
    path = sqlite_path(uri)
    return (path.parent / "artifacts").resolve().as_uri() if path is not None else None


def store_lock(uri: str):
    """A lock beside a SQLite store, held while it is created or its experiment is: MLflow migrates a new
    database on first use, and two processes doing it at once crash in alembic ("table
    _alembic_tmp_... already exists"). Other stores are servers that serialise this themselves."""
    from contextlib import nullcontext

    from filelock import FileLock

    path = sqlite_path(uri)
    if path is None:
        return nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """A ValueError in one line if runs could not be written to `uri`; creates nothing.

    An unreachable server is found in seconds here, where MLflow's client would retry for minutes."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            raise ValueError(f"tracking URI {uri!r}: use sqlite:///PATH/mlflow.db")
        if path.is_dir():
            raise ValueError(f"tracking URI {uri!r} points at a folder; name the database file, e.g. {path}/mlflow.db")
        parent = path.resolve().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"tracking URI {uri!r}: cannot create the store, {parent} is not a writable folder")
    elif scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # the server answered (auth or no /health): it is there
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ValueError(f"tracking server {uri} is unreachable ({reason}); start it or check "
                             f"--tracking-uri / $MLFLOW_TRACKING_URI") from None
    elif scheme in ("", "file"):
        raise ValueError(f"tracking URI {uri!r} is a plain folder, which MLflow 3 refuses as a store: "
                         f"use sqlite:///{Path(uri.removeprefix('file://')) / 'mlflow.db'} or an http:// server")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit, once per process (every run's tags carry it)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def flat_params(params: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:6000]
    return out


