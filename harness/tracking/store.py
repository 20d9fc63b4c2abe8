"""Reading an MLflow store back: parent runs, their cells as result rows, curves and artifacts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .common import FINISHED, default_tracking_uri, sqlite_path, store_lock
from .writer import all_runs, newest_finished_cells


class MlflowStore:
    """Read-only questions about a store, for reports. Never creates a store that is not there."""

    def __init__(self, uri: str | None = None):
        from mlflow import MlflowClient

        self.uri = default_tracking_uri(uri)
        path = sqlite_path(self.uri)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"no tracking store at {path}: run `unlearn run` first or pass --tracking-uri")
        with store_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)

    def latest_parent(self, experiment: str) -> str:
        """The newest parent run of `experiment` (of any status: a FAILED one is reported with its failures)."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in self.client.search_experiments())
            raise LookupError(f"no experiment named {experiment!r} in {self.uri}; "
                              f"experiments: {', '.join(names) or '(none)'}")
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
        children = all_runs(self.client, experiment_id, f"tags.mlflow.parentRunId = '{parent_id}'",
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
        by_hash.update(newest_finished_cells(self.client, experiment_id, missing))
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


