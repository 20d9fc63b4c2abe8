"""Experiment tracking: every MLflow call of the harness lives here.

`Tracker` / `TrackedRun` are the protocol the runner writes through; `MlflowTracker` writes to a store
users browse, `MemoryTracker` keeps runs in memory (the Python API, tests, machines without a store).
`MlflowStore` answers the read-side questions (which parent run, its rows and files) for reports.
"""
from .common import (
                     DEFAULT_DIR,
                     FAILED,
                     FINISHED,
                     KILLED,
                     RUNNING,
                     TrackedRun,
                     Tracker,
                     artifact_root_for,
                     check_tracking_uri,
                     default_tracking_uri,
                     git_commit,
                     shown_uri,
                     sqlite_path,
                     store_lock,
)
from .importer import ImportRefused, import_runs
from .memory import SAVED_RUNS_FORMAT, MemoryRun, MemoryTracker
from .store import MlflowStore
from .writer import MlflowRun, MlflowTracker

__all__ = ["DEFAULT_DIR", "FAILED", "FINISHED", "KILLED", "RUNNING", "TrackedRun", "Tracker", "artifact_root_for",
           "check_tracking_uri", "default_tracking_uri", "git_commit", "shown_uri", "sqlite_path", "store_lock",
           "ImportRefused", "import_runs",
           "SAVED_RUNS_FORMAT", "MemoryRun", "MemoryTracker", "MlflowStore", "MlflowRun", "MlflowTracker"]
