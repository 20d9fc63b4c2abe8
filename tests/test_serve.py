"""`unlearn ui` and `unlearn dashboard` as their users met them: a server bound off loopback warned nobody
that it checks no credential, and stopping `unlearn ui` left parts of the MLflow server running."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from click.testing import CliRunner

from harness import serve
from harness.cli import main


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("my-box.example", False),
])
def test_loopback_addresses(host, loopback):
    assert serve.is_loopback(host) is loopback


@pytest.fixture
def started(monkeypatch):
    """The server commands `unlearn` would exec its supervisor on, instead of servers."""
    calls = []

    def execv(exe, argv):
        assert argv[:3] == [exe, "-I", os.path.abspath(serve.__file__)]
        calls.append(argv[3:])

    monkeypatch.setattr(os, "execv", execv)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_ui_off_loopback_warns_that_anyone_can_read_and_change_the_runs(started, tmp_path, host):
    result = CliRunner().invoke(main, ["ui", "--host", host, "--port", "5055",
                                       "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert result.exit_code == 0, result.output
    assert "without authentication" in result.stderr and f"{host}:5055" in result.stderr
    assert "can read and change every run" in result.stderr and "docker/compose.yml" in result.stderr
    assert "WARNING" not in result.stdout  # stdout keeps only the comparison URLs
    cmd = started[0]
    assert cmd[1:4] == ["-m", "mlflow", "ui"] and cmd[cmd.index("--host") + 1] == host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_ui_on_loopback_does_not_warn(started, tmp_path, host):
    result = CliRunner().invoke(main, ["ui", "--host", host, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output and started
    assert f"MLflow UI on http://{host}:5000" in result.stderr


def test_dashboard_warns_off_loopback_only(started, tmp_path):
    journal = f"journal:{tmp_path / 'studies.log'}"
    exposed = CliRunner().invoke(main, ["dashboard", "--storage", journal, "--host", "0.0.0.0"])
    assert exposed.exit_code == 0, exposed.output
    assert "without authentication" in exposed.stderr and "every study" in exposed.stderr
    local = CliRunner().invoke(main, ["dashboard", "--storage", journal])
    assert local.exit_code == 0 and "WARNING" not in local.output
    assert started[1][-4:] == ["--host", "127.0.0.1", "--port", "8080"]


@pytest.mark.slow
def test_the_supervisor_exits_with_the_server_status():
    def status(code: str) -> int:
        return subprocess.run(serve.supervised([sys.executable, "-c", code]), timeout=30).returncode

    assert status("import sys; sys.exit(3)") == 3
    assert status("import os; os.kill(os.getpid(), 9)") == 128 + 9


# -- stopping ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server ended with status {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _alive(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid}: {' '.join(proc.cmdline())[:100]}")
    return out


def _server_processes(proc: subprocess.Popen) -> set[int]:
    """Every process of the server: the descendants of `unlearn` and anything in their process groups."""
    tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    groups = {os.getpgid(pid) for pid in tree if _alive({pid})} | {proc.pid}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getpgid(p.pid) in groups and p.pid != proc.pid:
                tree.add(p.pid)
    return tree


def _stop_and_check(proc: subprocess.Popen, port: int, signum: int, within: float = 4.0) -> int:
    """Send `signum` to `unlearn`; within `within` s its port is closed and no process of its server is
    left. Returns `unlearn`'s exit status."""
    server = _server_processes(proc)
    assert server, "the server runs in processes of its own"
    try:
        os.kill(proc.pid, signum)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and (_accepts(port) or _alive(server)):
            time.sleep(0.1)
        assert not _accepts(port), f"port {port} still accepts connections {within} s after {signum!r}"
        assert not _alive(server), f"left running {within} s after {signum!r}: {_alive(server)}"
        return proc.wait(timeout=20)
    finally:
        for pid in [proc.pid, *server]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_sigterm_to_unlearn_ui_stops_every_process_of_the_mlflow_server(tmp_path, sqlite_store):
    """The report: SIGTERM to `unlearn ui` left MLflow's job runner and its consumers behind (exec'd into
    `mlflow ui`, which forwards the signal to uvicorn alone)."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_WORKERS": "1"}  # one uvicorn worker: a faster start, the same process layout
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "ui", "--port", str(port),
                             "--tracking-uri", sqlite_store(tmp_path / "mlflow.db")], cwd=tmp_path, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1", proc)
    except BaseException:
        proc.kill()
        raise
    assert _stop_and_check(proc, port, signal.SIGTERM) == 0


@pytest.mark.slow
def test_sighup_to_unlearn_dashboard_stops_it(tmp_path):
    """A closed terminal (SIGHUP) means "reload" to the dashboard's gunicorn: it kept serving, alone."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "studies.log"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    optuna.create_study(study_name="seen", storage=storage)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboard", "--storage", f"journal:{journal}",
                             "--port", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = json.loads(_wait_for(f"http://127.0.0.1:{port}/api/studies", proc))
    except BaseException:
        proc.kill()
        raise
    assert [s["study_name"] for s in body["study_summaries"]] == ["seen"]
    assert _stop_and_check(proc, port, signal.SIGHUP) == 0
