"""unlearning-harness: evaluate machine-unlearning methods on image classifiers.

What a plugin may use is re-exported here, with `harness.toolkit` (building blocks of methods),
`harness.stats`, `harness.membership` and `harness.testing`: that is the plugin contract, version
`__api_version__` (see `harness.contract` for what each version changed). `Spec` and `Site` describe
a run for the Python API (`harness.spec`).

Three versions, for three readers: `__version__` is the package's; `__api_version__` changes only when
the plugin contract does; `RESULTS_VERSION` changes only when a change alters a metric of an existing
cell. Cell hashes hold the results version, so cells recorded by another release with the same one are
reused instead of being run again.
"""
from . import contract
from .context import Context, UnlearningData
from .data import CLASSES
from .evaluation import AttackInput, AttackResult, Outputs, PrepareInput, ReferenceOutputs
from .hookspecs import hookimpl
from .metrics import Metric
from .params import Choice, Float, Int, ParamError, sgd_options, sgd_space
from .spec import Site, Spec
from .splits import Pool

__version__ = "0.4.0"
__api_version__ = contract.VERSION
RESULTS_VERSION = "0.3.0"
__all__ = ["hookimpl", "Int", "Float", "Choice", "ParamError", "Metric", "sgd_space", "sgd_options",
           "Context", "UnlearningData", "AttackInput", "AttackResult", "PrepareInput", "Outputs", "ReferenceOutputs",
           "Pool", "CLASSES", "Spec", "Site", "__version__", "__api_version__", "RESULTS_VERSION"]


def __getattr__(name: str):
    """`harness.tune` and `harness.TuneConfig`, imported on first use (tuning pulls in Optuna)."""
    if name in ("tune", "TuneConfig"):
        from . import tuning

        return getattr(tuning, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
