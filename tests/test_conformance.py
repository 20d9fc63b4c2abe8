"""One conformance suite, parametrised over every registered method, attack and scenario (the timm
pattern): the built-ins and the example third-party plugin, on the tiny CNN. The checks are the ones
`unlearn check` runs for plugin authors (harness.testing)."""
from __future__ import annotations

import pytest

from harness import testing
from harness.host import default_host

HOST = default_host()


def test_every_plugin_loaded_and_every_builtin_is_registered():
    assert not HOST.failures, [f"{p.name}: {p.error}" for p in HOST.failures]
    expected = {"simple", "distillation", "rotate", "pseudo", "pruning", "deviation", "gradient", "divergence"}
    assert expected <= set(HOST.methods.names())
    assert {"noisy-finetune", "confidence-gap", "first-images", "tiny-cnn"} <= {
        c.name for r in HOST.registries.values() for c in r}, "the example plugin is discovered"


@pytest.mark.parametrize("check", testing.METHOD_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", HOST.methods.names())
def test_method(name, check, bench):
    check(HOST.methods.get(name), bench)


@pytest.mark.parametrize("check", testing.ATTACK_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", HOST.attacks.names())
def test_attack(name, check, bench):
    check(HOST.attacks.get(name), bench)


@pytest.mark.parametrize("check", testing.SCENARIO_CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", HOST.scenarios.names())
def test_scenario(name, check, bench):
    check(HOST.scenarios.get(name), bench)


def test_checks_catch_a_method_that_breaks_the_contract(bench):
    """The suite itself can fail: a method that changes nothing, never reports an epoch and ignores
    `epochs` is caught by the checks that guard against exactly that."""
    from harness import Int
    from harness.registry import Method

    lazy = Method("lazy", lambda model, data, params, ctx: model.eval(), space={"epochs": Int(1, 5, default=1)})
    with pytest.raises(AssertionError, match="changed no weight"):
        testing.check_method_contract(lazy, bench)
    with pytest.raises(AssertionError, match="reported 0 epoch"):
        testing.check_method_epochs(lazy, bench)
