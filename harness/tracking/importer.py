"""`unlearn import FILE`: runs saved by `MemoryTracker.save` replayed into an MLflow store.

An import lands whole or leaves nothing: the file is read and checked completely before the first run is
created (a bad file gets one line naming what is wrong), and if the store fails half-way the runs made so
far are deleted again, so a second import of the same file is not refused as already done.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .common import FAILED, FINISHED, KILLED, RUNNING
from .memory import SAVED_RUNS_FORMAT
from .writer import MlflowTracker, all_runs

STATUSES = (FINISHED, FAILED, KILLED, RUNNING, "SCHEDULED")


class ImportRefused(ValueError):
    """A saved-runs file that cannot be imported (one line: which run, what is wrong)."""


def import_runs(path: str | os.PathLike, uri: str | None = None, experiment: str | None = None) -> list[str]:
    """Replay runs saved by `MemoryTracker.save` into the MLflow store at `uri` (their experiment unless
    `experiment`); returns the new ids of the parent runs. Times, steps, statuses and the parent/child
    links are kept; each run is tagged `imported_from` with the file's hash, and a file already imported
    into that experiment is refused, so importing twice does not double the cells."""
    from mlflow.entities import Metric, Param

    raw = Path(path).read_bytes()
    saved = read_saved_runs(raw, str(path))
    digest = hashlib.sha256(raw).hexdigest()[:16]
    tracker = MlflowTracker(uri, experiment or saved["experiment"])
    client = tracker.client
    done = all_runs(client, tracker.experiment_id, f"tags.imported_from = '{digest}'")
    if done:
        raise ImportRefused(f"{path} was already imported into experiment {tracker.experiment!r} "
                            f"(run {done[0].info.run_id})")
    ids: dict[str, str] = {}
    parents: list[str] = []
    current = None
    try:
        for run in saved["runs"]:  # in the order they were made: a parent before its children
            current = run
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
    except Exception as exc:
        for run_id in reversed(list(ids.values())):
            try:
                client.delete_run(run_id)
            except Exception:  # the store is failing; what is left is marked by imported_from
                pass
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        raise ImportRefused(f"import of {path} failed at run {current and current['name']!r} ({reason}); "
                            f"nothing was imported ({len(ids)} partial run(s) deleted again)") from None
    return parents


def read_saved_runs(raw: bytes, where: str) -> dict:
    """The saved-runs file's content, every field checked: ImportRefused names the first problem."""
    try:
        saved = json.loads(raw)
    except ValueError:
        raise ImportRefused(f"{where} is not a saved-runs file (not JSON)") from None
    if not isinstance(saved, dict) or saved.get("format") != SAVED_RUNS_FORMAT:
        raise ImportRefused(f"{where} is not a saved-runs file of this harness (expected format {SAVED_RUNS_FORMAT!r})")
    if not isinstance(saved.get("experiment"), str) or not isinstance(saved.get("runs"), list):
        raise ImportRefused(f"{where}: expected an 'experiment' name and a list of 'runs'")
    seen: set[str] = set()
    for i, run in enumerate(saved["runs"]):
        name = run.get("name") if isinstance(run, dict) else None
        problem = _problem(run, seen)
        if problem:
            raise ImportRefused(f"{where}: run {i} ({name!r}): {problem}; nothing was imported")
        seen.add(run["run_id"])
    return saved


def _problem(run: Any, seen: set[str]) -> str | None:
    """What is wrong with one saved run (None: nothing). `seen`: the ids of the runs before it."""
    if not isinstance(run, dict):
        return "not a table of run fields"
    kinds = {"run_id": str, "name": str, "tags": dict, "params": dict, "metrics": dict, "artifacts": dict,
             "status": str, "start_time": int}
    for key, kind in kinds.items():
        if not isinstance(run.get(key), kind) or isinstance(run.get(key), bool):
            return f"{key} missing or not a {kind.__name__}"
    if run["run_id"] in seen:
        return f"run id {run['run_id']!r} appears twice"
    if run["status"] not in STATUSES:
        return f"status {run['status']!r} is not one of {', '.join(STATUSES)}"
    if run.get("end_time") is not None and (not isinstance(run["end_time"], int) or isinstance(run["end_time"], bool)):
        return "end_time is not a time in milliseconds"
    for table in ("tags", "params"):
        bad = [k for k, v in run[table].items() if not isinstance(v, str)]
        if bad:
            return f"{table} {', '.join(map(repr, bad[:3]))} are not strings"
    parent = run["tags"].get("mlflow.parentRunId")
    if parent is not None and parent not in seen:
        return f"its parent run {parent!r} is not earlier in the file"
    for metric, points in run["metrics"].items():
        if not isinstance(points, list) or not all(_point(p) for p in points):
            return f"metric {metric!r} is not a list of [step, value] pairs"
    for artifact, content in run["artifacts"].items():
        if not safe_artifact_path(artifact):
            return f"artifact name {artifact!r} is not a relative path inside the run"
        if not isinstance(content, (str, dict, list)):
            return f"artifact {artifact!r} is neither text nor JSON"
    return None


def _point(point: Any) -> bool:
    return (isinstance(point, list) and len(point) == 2 and isinstance(point[0], int) and not isinstance(point[0], bool)
            and isinstance(point[1], (int, float)) and not isinstance(point[1], bool))


def safe_artifact_path(name: Any) -> bool:
    """A relative POSIX path that stays inside the run's artifact folder: what MLflow accepts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts) and ":" not in parts[0]
