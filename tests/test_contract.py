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
