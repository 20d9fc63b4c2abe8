"""unlearning-harness: evaluate machine-unlearning methods on image classifiers.

The public API for plugin authors is re-exported here. `__api_version__` is the version of the plugin
contract (hooks, method / attack / scenario / model signatures, `Context`, `UnlearningData`,
`AttackInput`): it changes only when that contract changes, so a plugin can check it at import.
"""
from .context import Context, UnlearningData
from .evaluation import AttackInput, AttackResult, Outputs, PrepareInput, ReferenceOutputs
from .hookspecs import hookimpl
from .metrics import Metric
from .params import Choice, Float, Int, ParamError, sgd_options, sgd_space
from .splits import Pool

__version__ = "0.3.0"
__api_version__ = 3
__all__ = ["hookimpl", "Int", "Float", "Choice", "ParamError", "Metric", "sgd_space", "sgd_options",
           "Context", "UnlearningData", "AttackInput", "AttackResult", "PrepareInput", "Outputs", "ReferenceOutputs",
           "Pool",
           "__version__", "__api_version__"]


def __getattr__(name: str):
    """`harness.tune` and `harness.TuneConfig`, imported on first use (tuning pulls in Optuna)."""
    if name in ("tune", "TuneConfig"):
        from . import tuning

        return getattr(tuning, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
