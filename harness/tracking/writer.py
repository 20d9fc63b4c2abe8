"""Writing runs to an MLflow store: the tracker `unlearn run`, workers and the tuner write through."""
from __future__ import annotations

import os
import time
from typing import Any

from .common import KILLED, RUNNING, artifact_root_for, default_tracking_uri, flat_params, store_lock


class MlflowRun:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat_params(params).items()])

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
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={k: str(v) for k, v in tags.items() if v is not None})
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
                for h, r in newest_finished_cells(self.client, self.experiment_id, hashes).items()}

    def kill_running_children(self, parent_id: str, cell_hash: str | None = None) -> int:
        """Mark the children still RUNNING under `parent_id` (only those of `cell_hash` if given) KILLED:
        their process is gone. Returns how many."""
        where = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'"
        if cell_hash is not None:
            where += f" and tags.cell_hash = '{cell_hash}'"
        orphans = all_runs(self.client, self.experiment_id, where)
        for r in orphans:
            self.client.set_tag(r.info.run_id, "end_reason", "its process died")
            self.client.set_terminated(r.info.run_id, status=KILLED)
        return len(orphans)


def all_runs(client, experiment_id: str, filter_string: str, order_by: list[str] | None = None) -> list:
    """Every run matching the filter, page by page (one search returns at most a page)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def newest_finished_cells(client, experiment_id: str, hashes: set[str]) -> dict:
    """cell hash -> the newest FINISHED child run with that hash in the experiment."""
    if not hashes:
        return {}
    where = "tags.run_kind = 'child' and attributes.status = 'FINISHED'"
    if len(hashes) == 1:  # a worker asking about its next cell: let the store filter, not scan the experiment
        where += f" and tags.cell_hash = '{next(iter(hashes))}'"
    runs = all_runs(client, experiment_id, where, ["attributes.start_time DESC"])
    found: dict = {}
    for r in runs:
        h = r.data.tags.get("cell_hash")
        if h in hashes and h not in found:
            found[h] = r
    return found


