"""Plugin discovery: isolation of broken plugins, duplicate names, helpful unknown-name errors."""
import types

import pytest

import harness
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
    assert "its-plugin (unknown distribution (its-plugin)): import failed: ImportError: " \
           "No module named 'its_dependency'" in message
    assert "method 'bad-default' of refused (refused) refused: defaults do not validate: method 'bad-default': " \
           "epochs=9 is out of range" in message


@pytest.mark.parametrize("bad_call, error", [
    (lambda register: register("bad name!", lambda *a: None), "invalid method name"),
    (lambda register: register("x", "not callable"), "is not callable"),
    (lambda register: register("x", lambda *a: None, space={"epochs": 3}), "must be Int, Float or Choice"),
    (lambda register: register("x", lambda *a: None, metrics={"auc": 1}), "unexpected keyword argument(s) 'metrics'"),
    (lambda register: register("x", lambda model, data: model), "calls it as fn(model, data, params, ctx)"),
])
def test_invalid_registrations_are_refused(bad_call, error):
    """A component that breaks the contract is refused alone: the plugin loads, the refusal says why."""
    host = Host()
    info = host.add_plugin(plugin_module("p", register_methods=lambda register: (bad_call(register), good(register))),
                           name="p")
    assert info.ok and len(info.refused) == 1 and error in info.refused[0].reason, info
    assert host.methods.names() == ["my-method"] and host.refusals == list(info.refused)


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
    assert info.ok and [r.name for r in info.refused] == ["a"] and error in info.refused[0].reason
    assert "a" not in host.attacks


def contract_1_package():
    """A plugin written for contract 1 (harness 0.1): a method, an attack fn(outputs) without metrics, a scenario."""
    def first_images(pool, generator, count=20):
        return list(range(count))

    return plugin_module(
        "old-package",
        register_methods=lambda register: register("old-method", lambda model, data, params, ctx: model),
        register_attacks=lambda register: register("old-attack", lambda outputs: {"auc": 0.5}),
        register_scenarios=lambda register: register("old-scenario", first_images))


def test_a_contract_1_package_keeps_its_valid_components_and_the_refusal_names_the_contract():
    host = Host()
    info = host.add_plugin(contract_1_package(), name="old-package", source="old-package 0.1")
    assert info.ok and "old-method" in host.methods and "old-scenario" in host.scenarios
    (refusal,) = info.refused
    assert refusal.kind == "attack" and refusal.name == "old-attack"
    assert "declares no metrics" in refusal.reason and "plugin contract 2:" in refusal.reason
    with pytest.raises(UnknownComponent) as err:  # asking for it says why it is not there
        host.attacks.get("old-attack")
    assert "attack 'old-attack' of old-package (old-package 0.1) refused: attack 'old-attack' declares no metrics" \
        in str(err.value)


def test_an_attack_of_the_old_shape_is_refused_even_with_metrics():
    host = Host()
    info = host.add_plugin(plugin_module("p", register_attacks=lambda register: register(
        "shape", lambda outputs: {}, metrics={"auc": Metric(target=0.5)})), name="p")
    assert "calls it as fn(inputs, params)" in info.refused[0].reason and "plugin contract 2" in info.refused[0].reason


@pytest.mark.parametrize("declared, error", [
    (99, "needs plugin contract 99, and this unlearning-harness has contract 4: upgrade it"),
    ("4", "HARNESS_CONTRACT = '4' is not a contract version"),
])
def test_a_plugin_needing_a_newer_contract_is_refused_with_one_line(declared, error):
    module = plugin_module("future", register_methods=good)
    module.HARNESS_CONTRACT = declared
    info = Host().add_plugin(module, name="future")
    assert not info.ok and error in info.error


def test_a_plugin_declaring_this_contract_loads():
    module = plugin_module("current", register_methods=good)
    module.HARNESS_CONTRACT = harness.__api_version__
    assert Host().add_plugin(module, name="current").ok


def test_load_plugins_limits_what_loads_besides_the_builtins(monkeypatch):
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")
    host = discover()
    assert "simple" in host.methods and "noisy-finetune" not in host.methods
    assert any(n.startswith("harness-example-plugin") for n in host.not_loaded)
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "harness_example_plugin")  # names compare normalised
    assert "noisy-finetune" in discover().methods


def test_metric_declares_a_target_or_a_direction():
    with pytest.raises(ValueError, match="not both"):
        Metric(target=0.5, higher_is_better=True)
    assert Metric(target=0.5).distance(0.4) == pytest.approx(0.1)
    assert Metric(higher_is_better=True).distance(0.9) < Metric(higher_is_better=True).distance(0.1)
