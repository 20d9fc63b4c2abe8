import pytest

from harness.params import Choice, Float, Int, ParamError, resolve

SPACE = {"epochs": Int(1, 20, default=5), "lr": Float(1e-4, 1e-1, default=1e-2, log=True),
         "layers": Choice(["conv1", "all"], default="conv1"), "rotate": Choice([False, True], default=False)}


def test_defaults():
    assert resolve(SPACE) == {"epochs": 5, "lr": 1e-2, "layers": "conv1", "rotate": False}


def test_cli_strings_are_coerced():
    assert resolve(SPACE, {"epochs": "7", "lr": "0.05", "layers": "all", "rotate": "true"}) == {
        "epochs": 7, "lr": 0.05, "layers": "all", "rotate": True}


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) sigma; valid: epochs, layers, lr, rotate"):
        resolve(SPACE, {"sigma": 1})


@pytest.mark.parametrize("name,value,message", [
    ("epochs", 0, r"epochs=0 is out of range: expected an integer in \[1, 20\]"),
    ("epochs", 2.5, r"epochs=2.5 is not valid: expected an integer"),
    ("epochs", True, r"epochs=True is not valid"),
    ("lr", 1.0, r"lr=1.0 is out of range: expected a number in \[0.0001, 0.1\]"),
    ("lr", "fast", r"lr='fast' is not valid"),
    ("layers", "conv2", r"layers='conv2' is out of range: expected one of 'conv1', 'all'"),
])
def test_invalid_values_name_parameter_and_range(name, value, message):
    with pytest.raises(ParamError, match=message):
        resolve(SPACE, {name: value}, owner="")


def test_owner_prefixes_message():
    with pytest.raises(ParamError, match="^method 'x': epochs"):
        resolve(SPACE, {"epochs": 99}, owner="method 'x'")


def test_suggest_uses_optuna_ranges():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study()
    trial = study.ask()
    values = {name: p.suggest(trial, name) for name, p in SPACE.items()}
    assert resolve(SPACE, values) == values
