"""A throwaway PostgreSQL server for tests: the tuning code shares Optuna studies through PostgreSQL, and
SQLite cannot stand in for it (row locks, concurrent writers), so the suite starts a real one of its own on
a free port in a temporary folder and removes it afterwards. Nothing is read from or left on the machine."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SERVICE_USER = "postgres"  # PostgreSQL refuses to run as root, so as root we run it as this user


def _bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH, then `pg_config --bindir`, then the newest
    Debian-style /usr/lib/postgresql/<version>/bin."""
    candidates = []
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], check=False, capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    debian = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += sorted(debian, key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()],
                         reverse=True)
    needed = ("initdb", "pg_ctl", "postgres")
    return next((d for d in candidates if all((d / exe).is_file() for exe in needed)), None)


def _as_root() -> bool:
    return os.geteuid() == 0


def postgres_unavailable() -> str | None:
    """Why `postgres_server()` cannot work here, or None when it should."""
    if _bindir() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, via pg_config or "
                "in /usr/lib/postgresql/*/bin: install them, e.g. `apt-get install postgresql`")
    if _as_root():
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def postgres_server(database: str = "harness") -> Iterator[str]:
    """Start a private PostgreSQL server on 127.0.0.1 (trust authentication, fsync off) with an empty
    `database`, and yield its SQLAlchemy URL; stop it and delete its files on exit, even on error."""
    bindir = _bindir()
    if reason := postgres_unavailable():
        raise RuntimeError(reason)
    assert bindir is not None
    user: dict = {}
    if _as_root():  # the service user must own the folder; /tmp (not $TMPDIR) so it can reach it
        entry = pwd.getpwnam(SERVICE_USER)
        user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp" if user else None))
    data, log, port = root / "data", root / "server.log", _free_port()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bindir / args[0]), *args[1:]], cwd=root, check=False,
                              capture_output=True, text=True, timeout=60, **user)

    started = False
    try:
        if user:
            os.chown(root, user["user"], user["group"])
        init = run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                   "--locale=C")
        if init.returncode:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        started = True  # from here on, stop it even if pg_ctl reports failure (it may have half-started)
        start = run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start")
        if start.returncode:
            raise RuntimeError(f"PostgreSQL did not start (pg_ctl: {start.stderr.strip() or start.stdout.strip()})"
                               f"; server log tail:\n{_tail(log)}")
        yield create_database(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", database)
    finally:
        if started:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new empty database on the server of `url`; its URL (MLflow and Optuna each need their own: both
    keep an `alembic_version` table)."""
    import psycopg2  # imported late so that the module imports where psycopg2 is missing
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return parsed.set(database=name).render_as_string(hide_password=False)
