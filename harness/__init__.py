"""unlearning-harness: evaluate machine-unlearning methods on image classifiers.

The public API for plugin authors is re-exported here: the `hookimpl` marker and the parameter types.
"""
from .hookspecs import hookimpl
from .params import Choice, Float, Int, ParamError

__version__ = "0.1.0"
__all__ = ["hookimpl", "Int", "Float", "Choice", "ParamError", "__version__"]
