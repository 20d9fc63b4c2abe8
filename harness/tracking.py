"""Experiment tracking. MLflow is the store users browse; the in-memory tracker serves the Python API
and tests that need no store. Both have the same small interface, which is all the runner uses."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = "mlruns"
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"


def default_tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else an SQLite store in ./mlruns (MLflow 3 refuses the
    old file store, so the default is an explicit SQLite URI with artifacts in a folder beside it)."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path.cwd() / DEFAULT_DIR / 'mlflow.db').resolve()}"


def artifact_root_for(uri: str) -> str | None:
    """Artifacts beside an SQLite database; None lets a tracking server decide."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return None


def git_commit() -> str | None:
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


class MlflowRun:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in _flat(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            if v is not None:
                self.client.set_tag(self.run_id, k, str(v))

    def log_dict(self, data: Any, path: str) -> None:
        self.client.log_dict(self.run_id, data, path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_table(self, frame, path: str) -> None:
        self.client.log_table(self.run_id, data=frame, artifact_file=path)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class MlflowTracker:
    def __init__(self, uri: str | None = None, experiment: str = "unlearning"):
        import mlflow
        from mlflow import MlflowClient

        self.uri = default_tracking_uri(uri)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        existing = self.client.get_experiment_by_name(experiment)
        if existing is not None:
            self.experiment_id = existing.experiment_id
        else:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_root_for(self.uri))
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

    def find_resumable(self, config_hash: str) -> str | None:
        """The newest parent run of this configuration that did not finish."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.config_hash = '{config_hash}' and tags.run_kind = 'parent'",
            order_by=["attributes.start_time DESC"], max_results=20)
        for run in runs:
            if run.info.status != FINISHED:
                return run.info.run_id
        return None

    def finished_children(self, parent_id: str) -> list[dict]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000)
        return [{"tags": dict(r.data.tags), "metrics": dict(r.data.metrics), "run_id": r.info.run_id}
                for r in runs if r.info.status == FINISHED]


@dataclass
class MemoryRun:
    name: str
    tags: dict
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # name -> list of (step, value)
    artifacts: dict = field(default_factory=dict)
    status: str = RUNNING
    run_id: str = ""

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

    def log_table(self, frame, path):
        self.artifacts[path] = frame

    def log_artifact(self, local_path, artifact_path=None):
        self.artifacts[f"{artifact_path or ''}/{Path(local_path).name}"] = str(local_path)

    def end(self, status: str) -> None:
        self.status = status

    def last(self, metric: str) -> float:
        return self.metrics[metric][-1][1]


class MemoryTracker:
    """Keeps runs in memory: for the Python API, tests and machines without a tracking store."""

    def __init__(self):
        self.runs: list[MemoryRun] = []

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

    def find_resumable(self, config_hash: str) -> str | None:
        for run in reversed(self.runs):
            if run.tags.get("config_hash") == config_hash and run.tags.get("run_kind") == "parent" and run.status != FINISHED:
                return run.run_id
        return None

    def finished_children(self, parent_id: str) -> list[dict]:
        return [{"tags": r.tags, "metrics": {k: v[-1][1] for k, v in r.metrics.items()}, "run_id": r.run_id}
                for r in self.runs if r.tags.get("mlflow.parentRunId") == parent_id and r.status == FINISHED]
