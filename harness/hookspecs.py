"""The four hooks a plugin may implement. Each receives a `register` callback owned by the host.

The host, not the plugin, validates names and detects duplicates, so a broken or clashing plugin is
reported on its own instead of breaking discovery for everyone (the simonw/llm pattern).
"""
import pluggy

PROJECT = "unlearning_harness"
ENTRY_POINT_GROUP = "unlearning_harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register):
    """register(name, fn, *, space=None, description=None) for each unlearning method.

    fn(model, data, params, ctx) -> unlearned model. See harness.registry.Method."""


@hookspec
def register_attacks(register):
    """register(name, fn, *, description=None) for each attack or verification metric.

    fn(outputs: harness.evaluation.AttackInput) -> dict of metric name -> float."""


@hookspec
def register_scenarios(register):
    """register(name, fn, *, description=None) for each forget-set builder.

    fn(pool: harness.splits.Pool, generator: torch.Generator, **options) -> positions in the pool to forget."""


@hookspec
def register_models(register):
    """register(name, factory, *, description=None): factory(num_classes) -> torch.nn.Module."""
