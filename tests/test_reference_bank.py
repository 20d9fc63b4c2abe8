"""The reference bank, the attack contract's needs (bank, random model, reruns) and check-attacks' rules."""
import pytest
import torch

from harness import AttackResult, Int, Metric
from harness.attack_check import FAIL, PASS, judge
from harness.cache import ModelCache
from harness.cell import Cell, Configured, evaluate_cell
from harness.engine import predict
from harness.host import Host, default_host
from harness.profiles import PROFILES, Recipe
from harness.reference_models import ReferenceModels, bank_seeds, witness_seed
from harness.registry import Attack
from harness.splits import make_split

from .conftest import CPU, synthetic_data, tiny_factory

HOST = default_host()
RECIPE = Recipe(epochs=1, batch_size=64, augment=False)


def service(data, cache=None):
    return ReferenceModels(data, CPU, "tiny-cnn", tiny_factory, RECIPE, cache, show_progress=False, calibration_steps=2,
                      warmup_steps=1)


@pytest.fixture(scope="module")
def data():
    return synthetic_data(500, 450)


@pytest.fixture(scope="module")
def split(data):
    return make_split(data, PROFILES["smoke"], HOST.scenarios.get("random"), 0)


def test_bank_seeds_avoid_the_gold_retrain_and_grow_by_prefix():
    assert bank_seeds(5, 3) == [1_000_000, 1_000_001, 1_000_002]
    assert 1_000_001 not in bank_seeds(1_000_001, 3) and len(bank_seeds(1_000_001, 3)) == 3
    assert bank_seeds(0, 2) == bank_seeds(0, 4)[:2]
    assert witness_seed(0) not in bank_seeds(0, 100) and witness_seed(0) != 0
    assert witness_seed(witness_seed(0)) != witness_seed(0)


def test_bank_logits_match_the_models_and_are_cached_as_float16(data, split, tmp_path):
    cache = ModelCache(tmp_path)
    refs = service(data, cache).for_split(split, bank_size=2)
    bank = refs.bank
    assert len(bank) == 2 and bank.seeds == tuple(bank_seeds(split.seed, 2))
    assert bank.logits["forget"].shape == (2, len(split.forget), 10) and bank.logits["forget"].dtype == torch.float32
    model = service(data, cache).train(split.retain, bank.seeds[1]).model
    direct = predict(model, data, split.forget, compute=CPU)
    assert torch.allclose(bank.logits["forget"][1], direct.half().float())
    files = sorted(p.name for p in tmp_path.glob("*.logits.pt"))
    assert len(files) == 2
    assert torch.load(tmp_path / files[0], weights_only=True)["logits"].dtype == torch.float16
    # the gold retrain is not in the bank, and its logits differ from every reference's
    assert not any(torch.equal(bank.logits["test"][i], refs.retrain_out.logits["test"].half().float())
                   for i in range(len(bank)))


def test_a_later_run_reads_cached_bank_logits_without_training(data, split, tmp_path, monkeypatch):
    cache = ModelCache(tmp_path)
    first = service(data, cache).for_split(split, bank_size=2).bank
    fresh = service(data, cache)
    monkeypatch.setattr(fresh, "_train", lambda *a, **k: pytest.fail("a cached reference was trained again"))
    again = fresh.bank(split, 2)
    assert torch.equal(first.logits["forget"], again.logits["forget"])
    monkeypatch.undo()
    bigger = service(data, cache).bank(split, 3)  # growing the bank reuses the first two
    assert torch.equal(bigger.logits["forget"][:2], first.logits["forget"])


def test_attacks_are_given_what_they_declare_and_skipped_with_a_reason_otherwise(data, split):
    seen = {}

    def spy(inputs, params):
        seen[params.get("tag", "?")] = inputs
        return {"x": 1.0}

    needy = Configured(Attack("needy", spy, metrics={"x": Metric()}, references=3), {})
    modest = Configured(Attack("modest", spy, metrics={"x": Metric()}, references=1, needs=("random",),
                               space={"tag": Int(0, 9, default=1)}), {"tag": 1})
    refs = service(data).for_split(split, bank_size=2)
    row = Cell("original", None, {}, split, (needy, modest), {})
    result = evaluate_cell(row, refs)
    assert "needy" in result.skipped and "--references 3" in result.skipped["needy"]
    assert "needy/x" not in result.metrics and result.metrics["modest/x"] == 1.0
    assert not result.attack_errors
    inputs = seen[1]
    assert len(inputs.references) == 2 and inputs.random is not None
    assert not torch.equal(inputs.random.logits["forget"], refs.original_out.logits["forget"])
    untuned = service(data).for_split(split, retrain=False)
    retrain_only = Attack("r", spy, metrics={"x": Metric()}, needs=("retrain",))
    assert "retrain" in untuned.unmet(retrain_only, {})


def test_reruns_run_the_method_again_with_other_seeds(data, split):
    got = {}

    def compare(inputs, params):
        got["reruns"] = inputs.reruns
        return AttackResult({"x": float(len(inputs.reruns))}, {"top": __import__("pandas").DataFrame({"a": [1]})})

    attack = Configured(Attack("cmp", compare, metrics={"x": Metric()}, reruns=lambda p: 2), {})
    refs = service(data).for_split(split, bank_size=2)
    method = HOST.methods.get("simple")
    cell = Cell("simple", method, method.resolve({"epochs": 1}), split, (attack,), {})
    result = evaluate_cell(cell, refs)
    assert result.ok and result.metrics["cmp/x"] == 2.0 and "rerun_seconds" in result.metrics
    assert result.tables["cmp/top"]["a"].tolist() == [1]
    a, b = got["reruns"]
    assert not torch.equal(a.logits["forget"], b.logits["forget"]), "reruns must use different seeds"
    # reference rows: the original's reruns are copies, the retrain row's the bank's last models
    evaluate_cell(Cell("original", None, {}, split, (attack,), {}), refs)
    assert all(r is refs.original_out for r in got["reruns"])
    evaluate_cell(Cell("retrain", None, {}, split, (attack,), {}), refs)
    assert torch.equal(got["reruns"][1].logits["forget"], refs.bank.logits["forget"][1])


def test_registration_refuses_bad_needs_and_intervals():
    from harness import hookimpl

    host = Host()

    class Plugin:
        @staticmethod
        @hookimpl
        def register_attacks(register):
            register("bad", lambda i, p: {}, metrics={"x": Metric(interval=("lo", "hi"))})

    info = host.add_plugin(Plugin, name="bad-plugin")
    assert info.ok and "interval bound 'lo'" in info.refused[0].reason and "bad" not in host.attacks

    class Plugin2:
        @staticmethod
        @hookimpl
        def register_attacks(register):
            register("bad2", lambda i, p: {}, metrics={"x": Metric()}, needs=("gpu",))

    info = host.add_plugin(Plugin2, name="bad-plugin-2")
    assert info.ok and "unknown need(s) gpu" in info.refused[0].reason and "bad2" not in host.attacks


@pytest.mark.parametrize("metric, original, witness, expected", [
    (Metric(target=0.5), (0.8, 0.75, 0.85), (0.51, 0.47, 0.55), PASS),
    (Metric(target=0.5), (0.55, 0.49, 0.6), (0.5, 0.46, 0.54), FAIL),  # original not told apart
    (Metric(target=0.5), (0.8, 0.75, 0.85), (0.6, 0.55, 0.65), FAIL),  # a retrain flagged
    (Metric(higher_is_better=False), (0.4, 0.35, 0.45), (0.1, 0.08, 0.12), PASS),
    (Metric(higher_is_better=False), (0.11, 0.1, 0.13), (0.1, 0.08, 0.12), FAIL),
    (Metric(higher_is_better=True), (-0.2, -0.25, -0.15), (0.1, 0.05, 0.15), PASS),
    (Metric(target=0.5), (0.8, 0.75, 0.85), None, FAIL),
])
def test_check_attacks_rules(metric, original, witness, expected):
    status, why = judge(metric, original, witness)
    assert status == expected, why


def test_the_tutorial_attack_example_registers_and_passes_the_conformance_check(bench):
    """The bank-based attack the plugin tutorial shows, executed as written."""
    import re
    import types

    from harness import testing

    from .conftest import REPO

    tutorial = REPO / "docs" / "plugins" / "tutorial.md"
    blocks = re.findall(r"```python\n(.*?)```", tutorial.read_text(), re.S)
    source = next(b for b in blocks if "deviation-auc" in b)
    module = types.ModuleType("readme_attack")
    exec(compile(source, str(tutorial), "exec"), module.__dict__)
    host = Host()
    assert host.add_plugin(module, name="readme-attack").ok
    attack = host.attacks.get("deviation-auc")
    assert attack.bank_needed(attack.resolve()) == 2
    testing.check_attack(attack, bench)
