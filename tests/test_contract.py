"""The plugin contract as a third-party author meets it: `unlearn check` judges a plugin with checks that
raise their own error (so `python -O`, which strips asserts, still fails a broken plugin)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import testing
from harness.host import discover

BROKEN = textwrap.dedent('''
    from harness import Int, hookimpl

    def stays_in_training_mode(model, data, params, ctx):
        """Fine-tunes, then forgets to hand the model back in eval mode."""
        return ctx.fit(model, data.retain, epochs=params["epochs"], lr=0.01).train()

    @hookimpl
    def register_methods(register):
        register("train-mode", stays_in_training_mode, space={"epochs": Int(1, 3, default=1)})
''')


def installed_plugin(tmp_path: Path, name: str, source: str) -> dict:
    """An environment whose Python finds `name` as an installed distribution with an entry point."""
    site = tmp_path / "site"
    dist = site / f"{name}-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[unlearning_harness]\n{name} = {name.replace('-', '_')}\n")
    (site / f"{name.replace('-', '_')}.py").write_text(source)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "HARNESS_LOAD_PLUGINS": f"{name},harness-example-plugin"}


@pytest.mark.slow
def test_check_fails_a_broken_plugin_under_python_O(tmp_path):
    """Before: the checks were `assert`s, so `python -O -m harness.cli check` passed everything."""
    env = installed_plugin(tmp_path, "broken-plugin", BROKEN)
    done = subprocess.run([sys.executable, "-O", "-m", "harness.cli", "check", "train-mode", "--model", "tiny-cnn"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL method train-mode: check_method_contract: ConformanceError: must return the model in eval mode" \
        in done.stdout


def test_each_check_raises_its_own_error_not_an_assert(bench):
    import types

    from harness import hookimpl

    module = types.ModuleType("broken")
    exec(BROKEN, module.__dict__)
    module.register_methods = hookimpl(module.register_methods)
    host = discover([("broken", module)])
    with pytest.raises(testing.ConformanceError, match="must return the model in eval mode"):
        testing.check_method_contract(host.methods.get("train-mode"), bench)


# Modules of the harness a plugin may import: the versioned contract. Everything else is internal.
PUBLIC = {"harness", "harness.stats", "harness.membership", "harness.testing", "harness.toolkit"}


def imported_modules(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m == "harness" or m.startswith("harness.")}


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "plugins").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(Path(__file__).parents[1])))
def test_built_in_plugins_use_only_the_public_contract(path):
    """Built-ins are plugins like any other: they import nothing a third-party plugin could not."""
    internal = imported_modules(path) - PUBLIC
    assert not internal, f"{path.name} imports harness internals {sorted(internal)}: make what it needs public"


def test_the_example_plugin_uses_only_the_public_contract():
    example = Path(__file__).parent / "fixtures" / "harness-example-plugin" / "harness_example_plugin.py"
    assert imported_modules(example) <= PUBLIC


@pytest.mark.slow
def test_the_wheel_claims_no_plugins_import_name_and_ships_every_package(tmp_path):
    """Installing the harness used to claim the top-level import name `plugins`, which any other
    distribution may ship too. The repository keeps its plugins/ folder; the wheel installs it as
    harness_plugins, with every package of both trees."""
    import zipfile

    repo = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(repo)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("unlearning_harness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"harness", "harness_plugins"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["harness", "harness_plugins"]
    folders = [p.parent.relative_to(repo).parts for p in [*repo.glob("harness/**/__init__.py"),
                                                            *repo.glob("plugins/**/__init__.py")]]
    packages = {"/".join(("harness_plugins", *parts[1:]) if parts[0] == "plugins" else parts) for parts in folders}
    shipped = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packages == shipped
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "= plugins." not in entry_points and "= harness_plugins.methods.simple" in entry_points
