"""Where a study lives, checked before any trial starts.

- `sqlite:///PATH.db`: the default for one process (`mlruns/optuna.db`, beside the MLflow store).
- `journal:PATH`: Optuna's journal file, for several processes on one host (the default of `--workers K`).
- `postgresql://...` (or any SQLAlchemy URL): several machines join one study. Trials keep a heartbeat,
  and a trial whose worker stops beating is failed and queued again with the same parameters.

A trial also records which process runs it, so a worker on the same host can see that the process of a
RUNNING trial is gone (SIGKILL, out of memory) and retry it without waiting for a heartbeat (journal
files have none).
"""
from __future__ import annotations

import logging
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..owners import dead_here, host_key, worker_id  # noqa: F401 - the tuner's workers are named the same way

log = logging.getLogger(__name__)
MAX_RETRY = 2  # a trial whose worker died is retried this many times with the same parameters


class StorageError(ValueError):
    """A storage URL that is malformed, unreachable or unusable for the requested workers."""


@dataclass(frozen=True)
class StudyStorage:
    url: str
    kind: str  # "sqlite", "rdb" or "journal"

    @property
    def display(self) -> str:
        """The URL without its password, for logs, tags and study attributes."""
        if self.kind != "rdb":
            return self.url
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def path(self) -> Path | None:
        """The file of a SQLite or journal storage (None for a server)."""
        if self.kind == "journal":
            return Path(self.url.removeprefix("journal:"))
        if self.kind == "sqlite":
            from sqlalchemy.engine import make_url

            return Path(make_url(self.url).database)
        return None

    @property
    def dashboard_target(self) -> list[str]:
        """Arguments that make optuna-dashboard open this storage."""
        if self.kind == "journal":
            return [self.url.removeprefix("journal:"), "--storage-class", "JournalFileStorage"]
        return [self.url]

    def open(self, heartbeat: int, on_stale: Callable | None = None):
        """The Optuna storage object (RDB storages with a heartbeat of `heartbeat` seconds)."""
        import optuna
        from optuna.storages.journal import JournalFileBackend

        if self.kind == "journal":
            return optuna.storages.JournalStorage(JournalFileBackend(self.url.removeprefix("journal:")))
        engine_kwargs = {"connect_args": {"timeout": 60}} if self.kind == "sqlite" else {"pool_pre_ping": True}
        for attempt in range(3):
            try:
                with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9: what we rely on
                    warnings.simplefilter("ignore", optuna_experimental())
                    return optuna.storages.RDBStorage(self.url, engine_kwargs=engine_kwargs,
                                                      heartbeat_interval=heartbeat, grace_period=max(3 * heartbeat, 2),
                                                      heartbeat_stale_trial_callback=on_stale)
            except Exception:  # workers starting together race to create the tables: the loser tries again
                if attempt == 2:
                    raise
                time.sleep(0.5 + random.random())


def resolve_storage(url: str | None, workers: int, folder: Path, *, flag_optional: bool = True) -> StudyStorage:
    """The storage of `url` (default: SQLite in `folder` for one worker, a journal file for several),
    checked: a StorageError says what is wrong in one line; nothing is created. `flag_optional`: whether
    the command may leave --storage out (a tuning study may, a shared benchmark may not)."""
    if url is None:
        url = f"sqlite:///{folder / 'optuna.db'}" if workers == 1 else f"journal:{folder / 'optuna-journal.log'}"
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if not str(path) or path.is_dir():
            raise StorageError(f"storage {url!r}: name the journal file, e.g. journal:{folder / 'optuna-journal.log'}")
        _check_parent(path, url)
        return StudyStorage(url, "journal")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"storage {url!r} is not a valid URL: use sqlite:///PATH.db, journal:PATH or "
                           f"postgresql://USER@HOST:PORT/DB") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(f"storage {url!r}: use sqlite:///PATH.db "
                               "(a file, so that the study outlives the process)")
        if workers > 1:
            raise StorageError("SQLite is not for parallel workers: use --storage journal:PATH (one host) or "
                               "postgresql://... (several hosts)"
                               + (", or leave --storage out" if flag_optional else ""))
        _check_parent(Path(parsed.database), url)
        return StudyStorage(url, "sqlite")
    storage = StudyStorage(url, "rdb")
    _check_reachable(storage)
    return storage


def _check_parent(path: Path, url: str) -> None:
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"storage {url!r}: cannot create it, {parent} is not a writable folder")


def _check_reachable(storage: StudyStorage, timeout: int = 5) -> None:
    """Connect once with a short timeout: a wrong host or password is reported here, in seconds."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        args = {"connect_timeout": timeout} if storage.url.startswith(("postgresql", "mysql")) else {}
        engine = sqlalchemy.create_engine(storage.url, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StorageError(f"storage {storage.display}: {exc}") from None
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"storage {storage.display} is unreachable: {reason}") from None


def optuna_experimental() -> type[Warning]:
    from optuna.exceptions import ExperimentalWarning

    return ExperimentalWarning


# -- workers -------------------------------------------------------------------------------------------
def retry(study, trial, reason: str, on_failed: Callable | None = None) -> None:
    """Queue `trial` again with the same parameters (at most MAX_RETRY times) and report it."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna_experimental())
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)
    log.warning("trial %d: %s; queued again with the same parameters", trial.number, reason)
    if on_failed is not None:
        on_failed(trial, reason)


def fail_stale_trials(study) -> None:
    """Optuna's heartbeat check (RDB storages), also between trials while a worker waits for others."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna_experimental())
        optuna.storages.fail_stale_trials(study)


def fail_dead_local_trials(study, on_failed: Callable | None = None) -> int:
    """Fail and retry RUNNING trials whose worker process, on this host, no longer exists."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", ""))
        if not dead_here(owner):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            continue  # another worker got there first (ValueError: it was no longer RUNNING when told)
        retry(study, trial_by_number(study, trial.number), f"its worker {owner} is gone", on_failed)
        failed += 1
    return failed


def trial_by_number(study, number: int):
    """The FrozenTrial numbered `number`, read through Optuna's public API."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
