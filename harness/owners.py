"""Who owns a run: the host (as far as process ids are comparable) and the process id.

A run or trial records its owner, so a later process can tell a live run from one whose process died:
on the same host by asking the kernel, elsewhere by the age of the run's heartbeat.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path


def host_key() -> str:
    """Which processes this one can see: the host name, the kernel's boot id and the PID namespace, so two
    containers (or two machines with the same name) never take each other's process ids for their own.
    $HARNESS_WORKER_HOST overrides it (tests simulate several machines on one)."""
    if os.environ.get("HARNESS_WORKER_HOST"):
        return os.environ["HARNESS_WORKER_HOST"]
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def worker_id() -> str:
    return f"{host_key()}:{os.getpid()}"


def alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_this_host(owner: str) -> bool:
    """`owner` ("host:pid", as `worker_id` writes it) names a process whose pid this host can check."""
    host, _, pid = owner.rpartition(":")
    return host == host_key() and pid.isdigit()


def dead_here(owner: str) -> bool:
    """`owner` names another process on this host, and that process has exited."""
    pid = owner.rpartition(":")[2]
    return on_this_host(owner) and int(pid) != os.getpid() and not alive(int(pid))
