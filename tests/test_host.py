"""Plugin discovery: isolation of broken plugins, duplicate names, helpful unknown-name errors."""
import types

import pytest

from harness import Int, hookimpl
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
    assert {"retrain", "simple"} <= set(host.methods.names())
    assert "mia" in host.attacks and "random" in host.scenarios and "resnet18" in host.models
    assert all(c.source.startswith("unlearning-harness ") for c in host.methods)


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
    assert "Did you mean 'simple'?" in message and "retrain" in message


@pytest.mark.parametrize("bad_call, error", [
    (lambda register: register("bad name!", lambda *a: None), "invalid method name"),
    (lambda register: register("x", "not callable"), "is not callable"),
    (lambda register: register("x", lambda *a: None, space={"epochs": 3}), "must be Int, Float or Choice"),
])
def test_invalid_registrations_are_refused(bad_call, error):
    host = Host()
    info = host.add_plugin(plugin_module("p", register_methods=bad_call), name="p")
    assert not info.ok and error in info.error
