"""Experiment tracking: every MLflow call of the harness lives here.

`Tracker` / `TrackedRun` are the protocol the runner writes through; `MlflowTracker` writes to a store
users browse, `MemoryTracker` keeps runs in memory (the Python API, tests, machines without a store).
`MlflowStore` answers the read-side questions (which parent run, its rows and files) for reports.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
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
    def finished_children(self, parent_id: str) -> list[dict]: ...
    def kill_running_children(self, parent_id: str, cell_hash: str | None = None) -> int: ...


def default_tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else an SQLite store in ./mlruns (MLflow 3 refuses the
    old file store, so the default is an explicit SQLite URI with artifacts in a folder beside it)."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path.cwd() / DEFAULT_DIR / 'mlflow.db').resolve()}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root_for(uri: str) -> str | None:
    """Artifacts beside an SQLite database; None lets a tracking server decide."""
    path = _sqlite_path(uri)
    return (path.parent / "artifacts").resolve().as_uri() if path is not None else None


def store_lock(uri: str):
    """A lock beside a SQLite store, held while it is created or its experiment is: MLflow migrates a new
    database on first use, and two processes doing it at once crash in alembic ("table
    _alembic_tmp_... already exists"). Other stores are servers that serialise this themselves."""
    from contextlib import nullcontext

    from filelock import FileLock

    path = _sqlite_path(uri)
    if path is None:
        return nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """A ValueError in one line if runs could not be written to `uri`; creates nothing.

    An unreachable server is found in seconds here, where MLflow's client would retry for minutes."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        path = _sqlite_path(uri)
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


def _flat(params: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:6000]
    return out


# -- MLflow ----------------------------------------------------------------------------------------------
class MlflowRun:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in _flat(params).items()])

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step or 0)
                                                    for k, v in metrics.items() if v is not None])

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])

    def log_dict(self, data: Any, path: str) -> None:
        self.client.log_dict(self.run_id, data, path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def location(self, path: str) -> str:
        return f"{self.client.get_run(self.run_id).info.artifact_uri}/{path}"

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class MlflowTracker:
    """Writes runs to an MLflow store; creates the experiment if needed."""

    def __init__(self, uri: str | None = None, experiment: str = "unlearning"):
        import mlflow
        from mlflow import MlflowClient

        self.uri = default_tracking_uri(uri)
        mlflow.set_tracking_uri(self.uri)
        with store_lock(self.uri):  # the client creates the schema of a new store; two processes must not both
            self.client = MlflowClient(tracking_uri=self.uri)
            existing = self.client.get_experiment_by_name(experiment)
            if existing is not None:
                self.experiment_id = existing.experiment_id
            else:
                self.experiment_id = self.client.create_experiment(experiment,
                                                                   artifact_location=artifact_root_for(self.uri))
        self.experiment = experiment

    def start_parent(self, name: str, tags: dict) -> MlflowRun:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items() if v is not None})
        return MlflowRun(self.client, run.info.run_id)

    def reopen(self, run_id: str) -> MlflowRun:
        self.client.update_run(run_id, status=RUNNING)
        return MlflowRun(self.client, run_id)

    def start_child(self, parent: MlflowRun, name: str, tags: dict) -> MlflowRun:
        tags = {**{k: str(v) for k, v in tags.items() if v is not None}, "mlflow.parentRunId": parent.run_id}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return MlflowRun(self.client, run.info.run_id)

    def find_parent(self, config_hash: str) -> dict | None:
        """The newest parent run of this configuration, of any status: {run_id, status, tags}."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.config_hash = '{config_hash}' and tags.run_kind = 'parent'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return next(({"run_id": r.info.run_id, "status": r.info.status, "tags": dict(r.data.tags)} for r in runs), None)

    def finished_cells(self, hashes: set[str]) -> dict[str, dict]:
        """cell hash -> {run_id, metrics} of the newest FINISHED run of each of `hashes` in the experiment,
        whichever parent it ran under."""
        return {h: {"run_id": r.info.run_id, "metrics": dict(r.data.metrics)}
                for h, r in _newest_finished_cells(self.client, self.experiment_id, hashes).items()}

    def kill_running_children(self, parent_id: str, cell_hash: str | None = None) -> int:
        """Mark the children still RUNNING under `parent_id` (only those of `cell_hash` if given) KILLED:
        their process is gone. Returns how many."""
        where = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'"
        if cell_hash is not None:
            where += f" and tags.cell_hash = '{cell_hash}'"
        orphans = _all_runs(self.client, self.experiment_id, where)
        for r in orphans:
            self.client.set_tag(r.info.run_id, "end_reason", "its process died")
            self.client.set_terminated(r.info.run_id, status=KILLED)
        return len(orphans)

    def finished_children(self, parent_id: str) -> list[dict]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000)
        return [{"tags": dict(r.data.tags), "metrics": dict(r.data.metrics), "run_id": r.info.run_id}
                for r in runs if r.info.status == FINISHED]


def _all_runs(client, experiment_id: str, filter_string: str, order_by: list[str] | None = None) -> list:
    """Every run matching the filter, page by page (one search returns at most a page)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _newest_finished_cells(client, experiment_id: str, hashes: set[str]) -> dict:
    """cell hash -> the newest FINISHED child run with that hash in the experiment."""
    if not hashes:
        return {}
    where = "tags.run_kind = 'child' and attributes.status = 'FINISHED'"
    if len(hashes) == 1:  # a worker asking about its next cell: let the store filter, not scan the experiment
        where += f" and tags.cell_hash = '{next(iter(hashes))}'"
    runs = _all_runs(client, experiment_id, where, ["attributes.start_time DESC"])
    found: dict = {}
    for r in runs:
        h = r.data.tags.get("cell_hash")
        if h in hashes and h not in found:
            found[h] = r
    return found


class MlflowStore:
    """Read-only questions about a store, for reports. Never creates a store that is not there."""

    def __init__(self, uri: str | None = None):
        from mlflow import MlflowClient

        self.uri = default_tracking_uri(uri)
        path = _sqlite_path(self.uri)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"no tracking store at {path}: run `unlearn run` first or pass --tracking-uri")
        with store_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)

    def latest_parent(self, experiment: str) -> str:
        """The newest parent run of `experiment` (of any status: a FAILED one is reported with its failures)."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in self.client.search_experiments())
            raise LookupError(f"no experiment named {experiment!r} in {self.uri}; experiments: {', '.join(names) or '(none)'}")
        runs = self.client.search_runs([exp.experiment_id], filter_string="tags.run_kind = 'parent'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise LookupError(f"experiment {experiment!r} has no parent run")
        return runs[0].info.run_id

    def parent(self, run_id: str) -> dict:
        run = self.client.get_run(run_id)
        return {"run_id": run_id, "status": run.info.status, "tags": dict(run.data.tags),
                "params": dict(run.data.params), "experiment_id": run.info.experiment_id}

    def rows(self, parent_id: str) -> list[dict]:
        """One row per cell of the parent's plan (its `cells.json`): the newest FINISHED run of that cell in
        the experiment, under this parent or an earlier one it reused, else the cell's newest attempt here
        (FAILED, KILLED). A cell re-run after a crash is one row, never two."""
        experiment_id = self.client.get_run(parent_id).info.experiment_id
        children = _all_runs(self.client, experiment_id, f"tags.mlflow.parentRunId = '{parent_id}'",
                             ["attributes.start_time ASC"])
        try:
            planned = [c["cell_hash"] for c in self.load_json(parent_id, "cells.json")]
        except Exception:  # a parent written before cells.json: its own children are the plan
            planned = list(dict.fromkeys(r.data.tags.get("cell_hash", r.info.run_id) for r in children))
        by_hash: dict = {}
        for r in children:  # oldest first: a later attempt replaces an earlier one unless that FINISHED
            h = r.data.tags.get("cell_hash", r.info.run_id)
            if by_hash.get(h) is None or by_hash[h].info.status != FINISHED or r.info.status == FINISHED:
                by_hash[h] = r
        missing = {h for h in planned if by_hash.get(h) is None or by_hash[h].info.status != FINISHED}
        by_hash.update(_newest_finished_cells(self.client, experiment_id, missing))
        return [_row(by_hash[h]) for h in planned if h in by_hash]

    def histories(self, run_ids: list[str], names: list[str]) -> list[dict]:
        """Every logged step of metrics `names` (a run without one has no rows): {run_id, metric, step,
        value} rows."""
        out = []
        for run_id in run_ids:
            for name in names:
                out += [{"run_id": run_id, "metric": name, "step": m.step, "value": m.value}
                        for m in self.client.get_metric_history(run_id, name)]
        return out

    def download(self, run_id: str, path: str, destination: str | os.PathLike) -> Path:
        """Copy one artifact of `run_id` to `destination` (a file path)."""
        import shutil
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{self.client.get_run(run_id).info.artifact_uri}/{path}", dst_path=tmp)
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, destination)
        return Path(destination)

    def load_json(self, run_id: str, path: str) -> Any:
        import mlflow

        return mlflow.artifacts.load_dict(f"{self.client.get_run(run_id).info.artifact_uri}/{path}")


def _row(r) -> dict:
    """A child run as a result row: what it is (method, scenario, budget, seed), its status and metrics."""
    tags = r.data.tags
    epochs = tags.get("epochs") or None
    return {"method": tags["method"], "scenario": tags.get("scenario"), "epochs": float(epochs) if epochs else None,
            "seed": int(tags["seed"]), "status": r.info.status, "error": tags.get("error"), "run_id": r.info.run_id,
            "cell_hash": tags.get("cell_hash"), **r.data.metrics}


# -- in memory -------------------------------------------------------------------------------------------
SAVED_RUNS_FORMAT = "unlearning-harness runs 1"  # what `MemoryTracker.save` writes and `import_runs` reads


@dataclass
class MemoryRun:
    name: str
    tags: dict
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # name -> list of (step, value)
    artifacts: dict = field(default_factory=dict)
    files: set = field(default_factory=set)  # artifacts that are figures or local files, not content
    status: str = RUNNING
    run_id: str = ""
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))  # ms, as MLflow keeps them
    end_time: int | None = None

    def log_params(self, params: dict) -> None:
        self.params.update(_flat(params))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step or 0, float(v)))

    def set_tags(self, tags: dict) -> None:
        self.tags.update({k: str(v) for k, v in tags.items() if v is not None})

    def log_dict(self, data, path):
        self.artifacts[path] = json.loads(json.dumps(data, default=str))

    def log_text(self, text, path):
        self.artifacts[path] = text

    def log_figure(self, figure, path):
        self.artifacts[path] = "figure"
        self.files.add(path)

    def log_artifact(self, local_path, artifact_path=None):
        path = f"{artifact_path or ''}/{Path(local_path).name}"
        self.artifacts[path] = str(local_path)
        self.files.add(path)

    def location(self, path: str) -> str:
        return f"memory run {self.run_id}: {path}"

    def end(self, status: str) -> None:
        self.status = status
        self.end_time = int(time.time() * 1000)

    def last(self, metric: str) -> float:
        return self.metrics[metric][-1][1]


class MemoryTracker:
    """Keeps runs in memory: for the Python API, tests and machines without a tracking store. `save` writes
    them to a file that `import_runs` (`unlearn import`) replays into MLflow, so a run on a machine without
    MLflow (an air-gapped GPU box) can still be browsed and reported on."""

    def __init__(self):
        self.runs: list[MemoryRun] = []

    def save(self, path: str | os.PathLike, experiment: str) -> Path:
        """Every run as JSON (params, metric histories, tags, JSON and text artifacts, times, statuses);
        figures and files are left out: reports draw their own figures from the metrics."""
        runs = [{"run_id": r.run_id, "name": r.name, "tags": r.tags, "params": r.params, "status": r.status,
                 "start_time": r.start_time, "end_time": r.end_time,
                 "metrics": {k: [list(p) for p in v] for k, v in r.metrics.items()},
                 "artifacts": {k: v for k, v in r.artifacts.items() if k not in r.files}}
                for r in self.runs]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps({"format": SAVED_RUNS_FORMAT, "experiment": experiment, "runs": runs}))
        tmp.replace(path)  # never a half-written file under the final name
        return path

    def _new(self, name: str, tags: dict) -> MemoryRun:
        run = MemoryRun(name=name, tags={k: str(v) for k, v in tags.items() if v is not None}, run_id=str(len(self.runs)))
        self.runs.append(run)
        return run

    def start_parent(self, name: str, tags: dict) -> MemoryRun:
        return self._new(name, tags)

    def reopen(self, run_id: str) -> MemoryRun:
        run = self.runs[int(run_id)]
        run.status = RUNNING
        return run

    def start_child(self, parent: MemoryRun, name: str, tags: dict) -> MemoryRun:
        return self._new(name, {**tags, "mlflow.parentRunId": parent.run_id})

    def find_parent(self, config_hash: str) -> dict | None:
        for run in reversed(self.runs):
            if run.tags.get("config_hash") == config_hash and run.tags.get("run_kind") == "parent":
                return {"run_id": run.run_id, "status": run.status, "tags": dict(run.tags)}
        return None

    def finished_cells(self, hashes: set[str]) -> dict[str, dict]:
        found = {}
        for r in reversed(self.runs):
            h = r.tags.get("cell_hash")
            if r.status == FINISHED and h in hashes and h not in found:
                found[h] = {"run_id": r.run_id, "metrics": {k: v[-1][1] for k, v in r.metrics.items()}}
        return found

    def kill_running_children(self, parent_id: str, cell_hash: str | None = None) -> int:
        orphans = [r for r in self.runs if r.tags.get("mlflow.parentRunId") == parent_id and r.status == RUNNING
                   and (cell_hash is None or r.tags.get("cell_hash") == cell_hash)]
        for r in orphans:
            r.status = KILLED
        return len(orphans)

    def finished_children(self, parent_id: str) -> list[dict]:
        return [{"tags": r.tags, "metrics": {k: v[-1][1] for k, v in r.metrics.items()}, "run_id": r.run_id}
                for r in self.runs if r.tags.get("mlflow.parentRunId") == parent_id and r.status == FINISHED]


def import_runs(path: str | os.PathLike, uri: str | None = None, experiment: str | None = None) -> list[str]:
    """Replay runs saved by `MemoryTracker.save` into the MLflow store at `uri` (their experiment unless
    `experiment`); returns the new ids of the parent runs. Times, steps, statuses and the parent/child
    links are kept; each run is tagged `imported_from` with the file's hash, and a file already imported
    into that experiment is refused, so importing twice does not double the cells."""
    import hashlib

    from mlflow.entities import Metric, Param

    raw = Path(path).read_bytes()
    try:
        saved = json.loads(raw)
    except ValueError:
        raise ValueError(f"{path} is not a saved-runs file (not JSON)") from None
    if not isinstance(saved, dict) or saved.get("format") != SAVED_RUNS_FORMAT:
        raise ValueError(f"{path} is not a saved-runs file of this harness (expected format {SAVED_RUNS_FORMAT!r})")
    digest = hashlib.sha256(raw).hexdigest()[:16]
    tracker = MlflowTracker(uri, experiment or saved["experiment"])
    client = tracker.client
    done = _all_runs(client, tracker.experiment_id, f"tags.imported_from = '{digest}'")
    if done:
        raise ValueError(f"{path} was already imported into experiment {tracker.experiment!r} "
                         f"(run {done[0].info.run_id})")
    ids: dict[str, str] = {}
    parents = []
    for run in sorted(saved["runs"], key=lambda r: "mlflow.parentRunId" in r["tags"]):  # parents first
        tags = dict(run["tags"], imported_from=digest)
        if "mlflow.parentRunId" in tags:
            tags["mlflow.parentRunId"] = ids[tags["mlflow.parentRunId"]]
        created = client.create_run(tracker.experiment_id, start_time=run["start_time"], tags=tags,
                                    run_name=run["name"])
        run_id = ids[run["run_id"]] = created.info.run_id
        if "mlflow.parentRunId" not in tags:
            parents.append(run_id)
        params = [Param(k, v) for k, v in run["params"].items()]
        metrics = [Metric(k, float(v), run["start_time"], int(step)) for k, points in run["metrics"].items()
                   for step, v in points]
        for i in range(0, len(params), 100):  # MLflow's batch limits: 100 params, 1000 metrics
            client.log_batch(run_id, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        for name, content in run["artifacts"].items():
            if isinstance(content, str):
                client.log_text(run_id, content, name)
            else:
                client.log_dict(run_id, content, name)
        client.set_terminated(run_id, status=run["status"], end_time=run["end_time"])
    return parents
