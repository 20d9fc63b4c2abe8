"""Plugin discovery: isolation of broken plugins, duplicate names, helpful unknown-name errors."""
import types

import pytest

from harness import Int, Metric, __version__, hookimpl
from harness.host import Host, discover
from harness.registry import DuplicateComponent, UnknownComponent


def plugin_module(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def good(register):
    register("my-method", lambda model, data, params, ctx: model, space={"epochs": Int(1, 3, default=1)},
             description="a test method")


def test_builtins_are_loaded_through_entry_points():
    host = discover()
    assert {"simple", "rotate"} <= set(host.methods.names())
    assert "mia" in host.attacks and "random" in host.scenarios and "resnet18" in host.models
    builtins = [c for c in host.methods if c.name != "noisy-finetune"]  # that one is the example plugin's
    assert builtins and all(c.source.startswith(f"unlearning-harness {__version__} (") for c in builtins)
    assert host.methods.get("noisy-finetune").source == "harness-example-plugin 0.1.0 (example)"


def test_in_process_plugin_is_registered():
    host = Host()
    info = host.add_plugin(plugin_module("p", register_methods=good), name="p")
    assert info.ok
    method = host.methods.get("my-method")
    assert method.description == "a test method" and method.defaults == {"epochs": 1}


def test_plugin_failing_in_register_is_isolated_and_rolled_back():
    def bad(register):
        register("half-registered", lambda m, d, p, c: m)
        raise RuntimeError("boom")

    host = Host()
    host.add_plugin(plugin_module("good", register_methods=good), name="good")
    info = host.add_plugin(plugin_module("bad", register_methods=bad), name="bad")
    assert not info.ok and "RuntimeError: boom" in info.error and "Traceback" in info.details
    assert host.methods.names() == ["my-method"]  # the good one stays, nothing of the bad one leaks


def test_plugin_whose_import_fails_is_reported(monkeypatch):
    class EP:
        def __init__(self, name, target):
            self.name, self.dist, self._target = name, None, target

        def load(self):
            if self._target is None:
                raise ImportError("No module named 'missing_dependency'")
            return self._target

    eps = [EP("broken", None), EP("fine", plugin_module("fine", register_methods=good))]
    monkeypatch.setattr("harness.host.entry_points", lambda group: eps)
    host = Host().load_entry_points()
    assert [p.name for p in host.failures] == ["broken"]
    assert "missing_dependency" in host.failures[0].error
    assert "my-method" in host.methods


def test_duplicate_names_name_both_sources():
    host = Host()
    host.add_plugin(plugin_module("a", register_methods=good), name="a", source="pkg-a 1.0")
    host.add_plugin(plugin_module("b", register_methods=good), name="b", source="pkg-b 2.0")
    with pytest.raises(DuplicateComponent, match="pkg-a 1.0 and pkg-b 2.0"):
        host.methods.get("my-method")
    assert "my-method" not in host.methods.names()


def test_unknown_name_lists_valid_names_and_suggests():
    host = discover()
    with pytest.raises(UnknownComponent) as err:
        host.methods.get("simpel")
    message = str(err.value)
    assert "Did you mean 'simple'?" in message and "rotate" in message


def test_unknown_name_names_plugins_that_failed_to_load(monkeypatch):
    """`--methods its-method` of a plugin that did not load says why, not just 'unknown method'."""
    class EP:
        name, dist = "its-plugin", None

        def load(self):
            raise ImportError("No module named 'its_dependency'")

    refused = plugin_module("refused", register_methods=lambda register: register(
        "bad-default", lambda *a: None, space={"epochs": Int(1, 3, default=9)}))
    monkeypatch.setattr("harness.host.entry_points", lambda group: [EP()])
    host = Host().load_entry_points()
    host.add_plugin(refused, name="refused")
    with pytest.raises(UnknownComponent) as err:
        host.methods.get("its-method")
    message = str(err.value)
    assert "its-plugin (unknown distribution (its-plugin)): import failed: ImportError: No module named 'its_dependency'" in message
    assert "refused (refused): ValueError: defaults do not validate: method 'bad-default': epochs=9 is out of range" in message


@pytest.mark.parametrize("bad_call, error", [
    (lambda register: register("bad name!", lambda *a: None), "invalid method name"),
    (lambda register: register("x", "not callable"), "is not callable"),
    (lambda register: register("x", lambda *a: None, space={"epochs": 3}), "must be Int, Float or Choice"),
    (lambda register: register("x", lambda *a: None, metrics={"auc": 1}), "unexpected keyword argument 'metrics'"),
])
def test_invalid_registrations_are_refused(bad_call, error):
    host = Host()
    info = host.add_plugin(plugin_module("p", register_methods=bad_call), name="p")
    assert not info.ok and error in info.error


@pytest.mark.parametrize("kwargs, error", [
    ({}, "declares no metrics"),
    ({"metrics": {"auc": 0.5}}, "must be a harness.Metric"),
    ({"metrics": {"bad name!": Metric(target=0.5)}}, "invalid metric name"),
    ({"metrics": {"auc": Metric(target=0.5)}, "prepare": "not callable"}, "prepare must be callable"),
    ({"metrics": {"auc": Metric(target=0.5)}, "space": {"k": Int(1, 2, default=5)}}, "defaults do not validate"),
])
def test_attack_registrations_declare_metrics(kwargs, error):
    host = Host()
    info = host.add_plugin(plugin_module("p", register_attacks=lambda register: register(
        "a", lambda inputs, params: {}, **kwargs)), name="p")
    assert not info.ok and error in info.error


def test_metric_declares_a_target_or_a_direction():
    with pytest.raises(ValueError, match="not both"):
        Metric(target=0.5, higher_is_better=True)
    assert Metric(target=0.5).distance(0.4) == pytest.approx(0.1)
    assert Metric(higher_is_better=True).distance(0.9) < Metric(higher_is_better=True).distance(0.1)
