"""The web servers `unlearn ui` and `unlearn dashboard` start: a warning when one is reachable from other
machines, and supervision so that stopping `unlearn` stops the whole server.

`mlflow ui` is not one process: it spawns uvicorn (and its workers) and a job runner with its own
consumers, and forwards only SIGTERM and SIGINT to uvicorn. Exec'ing into it left the job runner behind for
seconds after SIGTERM and the whole server listening after SIGHUP (a closed terminal or SSH session).
Here `unlearn` execs into a small supervisor (this file run as a script: it imports neither torch nor
MLflow, and keeps the pid the user started) that runs the server in its own process group, forwards every
stop signal to the whole group, kills it if it outlives a grace period, and exits with its status.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
GRACE_S = 5.0  # a server's time to stop on SIGTERM before its group is SIGKILLed
# SIGHUP means "reload" to uvicorn and gunicorn; to `unlearn` it means the terminal is gone: stop.
STOP_SIGNALS = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT, signal.SIGHUP: signal.SIGTERM}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; the wildcard addresses 0.0.0.0 and :: listen on every interface."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def exposure_warning(host: str, port: int, what: str) -> str | None:
    """The warning for a bind address off loopback (None on loopback). The servers check no credential, and
    their Host-header check stops DNS rebinding, not a client that sends `Host: localhost` itself."""
    if is_loopback(host):
        return None
    return (f"WARNING: serving on {host}:{port} without authentication: anyone who can reach this address "
            f"can read and change {what}. For a team, use the MLflow server with basic-auth in "
            "docker/compose.yml (README: Scaling out), or keep the default 127.0.0.1 and an SSH tunnel.")


def supervise(cmd: list[str], grace: float = GRACE_S) -> int:
    """Run `cmd` in a new session, forward stop signals to its whole process group (SIGKILL after `grace`
    seconds), and return its exit status (128 + N when killed by signal N) once no process of the group is
    left. Its own session also keeps the terminal's Ctrl-C from reaching it except through here. Meant to be
    the whole process (`supervised`): it adopts and reaps the server's orphans."""
    group: list[int] = []  # the server's process group, once started
    stopping: list[threading.Timer] = []

    def forward(signum, _frame):
        if not stopping:
            stopping.append(threading.Timer(grace, lambda: group and _signal_group(group[0], signal.SIGKILL)))
            stopping[0].daemon = True
            stopping[0].start()
        if group:
            _signal_group(group[0], STOP_SIGNALS[signal.Signals(signum)])

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    _become_subreaper()
    try:
        proc = subprocess.Popen(cmd, start_new_session=True)
        group.append(proc.pid)
        if stopping:  # a stop signal came while it started
            _signal_group(proc.pid, signal.SIGTERM)
        status = proc.wait()
        _end_group(proc.pid, grace)  # what the leader left behind (mlflow's job runner, uvicorn after SIGHUP)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for timer in stopping:
            timer.cancel()
    return 128 - status if status < 0 else status


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal every process of the group; False when none is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _end_group(pgid: int, grace: float) -> None:
    """SIGTERM what is left of the group, then SIGKILL it after `grace` seconds."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.05)
        _reap_orphans()
        if not _signal_group(pgid, 0):
            return
    _signal_group(pgid, signal.SIGKILL)


def _become_subreaper() -> None:
    """Linux: the server's orphans (uvicorn once `mlflow ui` is gone) become this process's children, which
    it reaps at once, rather than init's, which may leave them zombies for seconds (they count as alive)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_orphans() -> None:
    """Reap the orphans inherited as subreaper (or as PID 1 of a container)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def supervised(cmd: list[str]) -> list[str]:
    """The command line of the supervisor of `cmd`, for `unlearn` to exec into (-I: this file's folder,
    harness/, stays off its sys.path, so no module there shadows the standard library)."""
    return [sys.executable, "-I", os.path.abspath(__file__), *cmd]


if __name__ == "__main__":  # python -I harness/serve.py CMD...: what `supervised` runs
    sys.exit(supervise(sys.argv[1:]))
