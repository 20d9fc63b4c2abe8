"""Bad input on the command line: exit status 2 and the list of valid names."""
import pytest
from click.testing import CliRunner

from harness.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("args, message", [
    (["--methods", "simple,bogus"], "unknown method 'bogus'"),
    (["--scenario", "red"], "Valid scenarios: class, random"),
    (["--profile", "gpu"], "Valid profiles: cpu, paper, smoke"),
    (["--model", "vgg16"], "Valid models: resnet18"),
    (["--param", "simple.epochs=-1", "--methods", "simple"], "epochs=-1 is out of range"),
    (["--param", "epochs=3"], "expected METHOD.NAME=VALUE"),
    (["--seeds", "a-b"], "expected integers like 0,1,2"),
])
def test_bad_input_exits_2_with_valid_names(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "mlruns").exists(), "nothing is created before the input is valid"


def test_unknown_method_lists_every_valid_method():
    result = invoke("run", "--methods", "nope")
    assert "Valid methods: " in result.output and "retrain" in result.output and "simple" in result.output


def test_missing_data_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--profile", "smoke", "--methods", "simple", "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_plugins_lists_builtins_with_their_distribution():
    result = invoke("plugins")
    assert result.exit_code == 0
    for line in ("methods:", "attacks:", "scenarios:", "models:"):
        assert line in result.output
    simple = next(line for line in result.output.splitlines() if line.strip().startswith("simple "))
    assert "unlearning-harness 0.1.0" in simple and "epochs=5" in simple


def test_seed_ranges():
    from harness.cli import _parse_seeds

    assert _parse_seeds("0-2,5") == [0, 1, 2, 5]


def test_bad_scenario_option_exits_2(tmp_path, monkeypatch):
    import numpy as np

    from .conftest import synthetic_arrays

    np.savez(tmp_path / "cifar10.npz", **synthetic_arrays(500, 450))
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--profile", "smoke", "--methods", "simple", "--scenario", "class", "--quiet",
                    "--scenario-option", "target_class=unicorn", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"))
    assert result.exit_code == 2, result.output
    assert "scenario 'class': target_class 'unicorn' is not a class index or one of airplane" in result.output


def test_ui_serves_the_same_store_on_loopback(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("harness.cli.subprocess.call", lambda cmd, env=None: calls.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke("ui", "--port", "5055")
    assert result.exit_code == 0, result.output
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5055"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
