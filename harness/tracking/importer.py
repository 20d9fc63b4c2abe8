"""`unlearn import FILE`: runs saved by `MemoryTracker.save` replayed into an MLflow store."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .memory import SAVED_RUNS_FORMAT
from .writer import MlflowTracker, all_runs


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
    done = all_runs(client, tracker.experiment_id, f"tags.imported_from = '{digest}'")
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
