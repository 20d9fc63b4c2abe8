"""docker/: the image and the compose set-up, checked without a Docker engine (none on the development
machines): the compose file parses, exposes nothing beyond loopback, holds no credential, reserves a GPU
per worker, and every harness service's command parses with the real CLI; the image installs the harness
as scripts/setup.sh does, on a torch the pins admit; the MLflow server's entry point, run here on
loopback, refuses requests without the admin's credentials."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_TEXT = (DOCKER / "compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HARNESS_SERVICES = [name for name, s in SERVICES.items() if s.get("image") == "unlearning-harness" and name != "mlflow"]
REFERENCE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")  # ${VAR}, ${VAR:-default}, ${VAR:?error}


def _parse(service: str) -> click.Context:
    """The service's command as `unlearn` parses it (types, choices, required options)."""
    args = SERVICES[service]["command"]
    command = main.commands[args[0]]
    return command.make_context(args[0], list(args[1:]), parent=click.Context(main, info_name="unlearn"))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _pip_install_args(line: str) -> list[str]:
    words = shlex.split(line.replace('"$ROOT', '"ROOT'))
    return words[words.index("install") + 1:]


# -- compose ----------------------------------------------------------------------------------------------
def test_the_services_exist():
    assert {"postgres", "mlflow", "publish", "worker", "tune"} <= set(SERVICES)
    assert {"publish", "worker", "tune", "tune-worker"} <= set(HARNESS_SERVICES)


def test_ports_listen_on_loopback_only():
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert published, "the MLflow server's port is published (for the browser and SSH tunnels)"
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def _settings(node, path=""):
    """Every (path, name, value) setting in the file: mapping entries and KEY=VALUE list items."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from _settings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and re.fullmatch(r"\w+=.*", item):
                yield path, *item.split("=", 1)
            yield from _settings(item, path)


def test_no_credential_is_written_in_the_file():
    secrets = [(path, key, value) for path, key, value in _settings(COMPOSE)
               if re.search(r"(?i)password|secret|token|_key\b", key) and not isinstance(value, (dict, list))]
    assert {"POSTGRES_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
            "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD"} <= {key for _, key, _ in secrets}
    for path, key, value in secrets:
        match = REFERENCE.fullmatch(str(value))
        assert match, f"{path}: {key} must come from the environment, not the file"
        assert match[2] != "-", f"{path}: {key} has a default value: {value}"
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", COMPOSE_TEXT), "a URL with a password"


def test_each_gpu_service_reserves_a_gpu():
    for name in HARNESS_SERVICES:
        devices = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices), name


def test_the_mlflow_server_runs_basic_auth_on_postgres():
    import mlflow.cli

    service = SERVICES["mlflow"]
    entry = DOCKER / "mlflow-server.sh"
    assert f"COPY --chmod=0755 docker/{entry.name} /usr/local/bin/{service['entrypoint'][0]}" in DOCKERFILE
    assert re.search(r'^exec mlflow server --app-name basic-auth "\$@"$', entry.read_text(), re.M)
    server = mlflow.cli.cli.commands["server"]
    ctx = server.make_context("server", ["--app-name", "basic-auth", *service["command"]],
                              parent=click.Context(mlflow.cli.cli, info_name="mlflow"))
    params = ctx.params
    assert params["app_name"] == "basic-auth" and params["serve_artifacts"]
    assert params["artifacts_destination"] == "/artifacts" and "artifacts:/artifacts" in service["volumes"]
    postgres_env = SERVICES["postgres"]["environment"]
    assert params["backend_store_uri"] == f"postgresql://{postgres_env['POSTGRES_USER']}@postgres/{postgres_env['POSTGRES_DB']}"
    # Every variable the entry point requires is given to the service.
    required = set(re.findall(r'^: "\$\{(\w+):\?', entry.read_text(), re.M))
    assert required == {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_DATABASE_URI"}
    assert required <= set(service["environment"])
    created = re.findall(r"CREATE DATABASE (\w+);", (DOCKER / "postgres-init.sql").read_text())
    assert service["environment"]["MLFLOW_AUTH_DATABASE_URI"].rsplit("/", 1)[1] in created
    # The workers reach it as http://mlflow:5000, a Host header the server must accept.
    assert f"mlflow:{params['port']}" in params["allowed_hosts"].split(",")


def test_harness_services_parse_and_share_the_benchmark_and_its_queue():
    contexts = {name: _parse(name) for name in HARNESS_SERVICES}
    publish, worker = contexts["publish"].params, contexts["worker"].params
    assert contexts["publish"].info_name == "run" and contexts["worker"].info_name == "worker"
    assert publish["benchmark"] == worker["benchmark"] and publish["storage"] == worker["storage"]
    tune, helper = contexts["tune"].params, contexts["tune-worker"].params
    assert contexts["tune"].info_name == "tune" == contexts["tune-worker"].info_name
    assert (tune["study"], tune["storage"], tune["methods"]) == (helper["study"], helper["storage"], helper["methods"])
    assert helper["holdout_seeds"] == "none" and tune["holdout_seeds"] != "none"  # one judge
    created = re.findall(r"CREATE DATABASE (\w+);", (DOCKER / "postgres-init.sql").read_text())
    for params in (publish, worker, tune, helper):
        assert re.fullmatch(r"postgresql://harness@postgres/(\w+)", params["storage"])[1] in created
    anchor = COMPOSE["x-harness"]["environment"]
    assert anchor["MLFLOW_TRACKING_URI"] == (
        f"http://mlflow:{SERVICES['mlflow']['command'][SERVICES['mlflow']['command'].index('--port') + 1]}")
    auth = SERVICES["mlflow"]["environment"]  # the workers log in as the admin MLflow creates
    assert anchor["MLFLOW_TRACKING_USERNAME"] == auth["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert (REFERENCE.fullmatch(anchor["MLFLOW_TRACKING_PASSWORD"])[1]
            == REFERENCE.fullmatch(auth["MLFLOW_AUTH_ADMIN_PASSWORD"])[1])
    assert (REFERENCE.fullmatch(anchor["PGPASSWORD"])[1]
            == REFERENCE.fullmatch(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"])[1])


# -- image ------------------------------------------------------------------------------------------------
def test_the_base_image_torch_is_one_the_pins_admit():
    base = dict(_dockerfile_instructions())["FROM"]
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+\.\d+)-cudnn(\d+)-runtime", base)
    assert match, f"not an official PyTorch CUDA runtime image: {base}"
    pins = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert pins["torch"].specifier.contains(Version(match[1])), f"torch {match[1]} vs the pin {pins['torch']}"


def test_the_image_installs_the_harness_as_the_setup_script_does():
    """README -> scripts/setup.sh -> `pip install -e ROOT[test]`; the image: the same, from its copy of the
    repository root, and nothing beside it (MLflow's basic-auth extra is a dependency of the harness)."""
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/setup.sh" in readme
    setup = [line for line in (REPO / "scripts/setup.sh").read_text().splitlines()
             if "pip install" in line and " -e " in line]
    assert len(setup) == 1
    setup_args = _pip_install_args(setup[0])
    assert setup_args[setup_args.index("-e") + 1] == "ROOT[test]"

    instructions = _dockerfile_instructions()
    runs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert len(runs) == 1
    args = _pip_install_args(runs[0])
    assert args[args.index("-e") + 1] == ".[test]"  # the same extras, editable, as in setup.sh
    workdir = [arg for op, arg in instructions if op == "WORKDIR"][-1]
    assert ("COPY", "pyproject.toml README.md ./") in instructions and workdir == "/work"
    beside = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] != "-e"]
    assert beside == [], f"installed beside the harness, so not as the README does: {beside}"
    declared = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert "auth" in declared["mlflow"].extras, "the compose server runs MLflow's basic-auth app: mlflow[auth]"
    assert ("ENTRYPOINT", '["unlearn"]') in instructions


# -- the MLflow server's entry point, on loopback ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.slow
def test_the_entry_point_refuses_to_start_without_the_admin_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(["sh", str(DOCKER / "mlflow-server.sh"), "--port", "1"], env=env, capture_output=True,
                          text=True, timeout=10)
    assert done.returncode != 0 and "MLFLOW_AUTH_ADMIN_PASSWORD" in done.stderr


@pytest.mark.slow
def test_the_basic_auth_server_answers_only_with_credentials(tmp_path, monkeypatch, sqlite_store):
    """docker/mlflow-server.sh with the compose service's arguments, stores moved to SQLite in tmp_path and the
    address to loopback: a request without credentials gets 401, whatever its Host header says."""
    port, user, password = _free_port(), "admin", "an admin password for tests"
    args = list(SERVICES["mlflow"]["command"])
    for flag, value in {"--backend-store-uri": sqlite_store(tmp_path / "mlflow.db"), "--host": "127.0.0.1",
                        "--artifacts-destination": str(tmp_path / "artifacts"), "--port": str(port)}.items():
        args[args.index(flag) + 1] = value
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TMPDIR": str(tmp_path), "MLFLOW_AUTH_ADMIN_USERNAME": user, "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "a secret key for tests",
           "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp_path}/users.db",
           # a faster start: one worker, no job runner (what is tested is the auth in front of them)
           "MLFLOW_WORKERS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(["sh", str(DOCKER / "mlflow-server.sh"), *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _status_or_none(f"{base}/health") != 200:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.2)
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=10"
        assert _status(search) == 401
        assert _status(search, {"Host": f"localhost:{port}"}) == 401  # passes the Host check, not the login
        assert _status(search, {"Host": "localhost"}) == 403  # not an allowed host (no port): refused before
        assert _status(search, _basic(user, "a wrong password")) == 401
        assert _status(search, _basic(user, password)) == 200
        # A worker logs in through the environment, as compose gives it MLFLOW_TRACKING_USERNAME/PASSWORD.
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(tracking_uri=base)
        experiment = client.create_experiment("from-a-worker")
        assert client.get_experiment(experiment).name == "from-a-worker"
        with urllib.request.urlopen(urllib.request.Request(search, headers=_basic(user, password)), timeout=10) as r:
            assert "from-a-worker" in [e["name"] for e in json.load(r)["experiments"]]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)
    except OSError:
        return None
