"""Runs kept in memory (the Python API, tests, machines without a store), and saved to a file that
`unlearn import` replays into MLflow."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import FINISHED, KILLED, RUNNING, flat_params

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
        self.params.update(flat_params(params))

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
        run = MemoryRun(name=name, tags={k: str(v) for k, v in tags.items() if v is not None},
                        run_id=str(len(self.runs)))
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



