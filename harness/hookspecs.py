"""The four hooks a plugin may implement. Each receives a `register` callback owned by the host.

The host, not the plugin, validates names and detects duplicates, so a broken or clashing plugin is
reported on its own instead of breaking discovery for everyone (the simonw/llm pattern); a component
that breaks the contract is refused alone. A plugin module may declare the contract version it needs,
`HARNESS_CONTRACT = 4` (see harness.contract).
"""
import pluggy

PROJECT = "unlearning_harness"
ENTRY_POINT_GROUP = "unlearning_harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register):
    """register(name, fn, *, space=None, description=None) for each unlearning method.

    fn(model, data: harness.UnlearningData, params: dict, ctx: harness.Context) -> unlearned model."""


@hookspec
def register_attacks(register):
    """register(name, fn, *, metrics, space=None, prepare=None, needs=(), references=0, reruns=0,
    description=None) for each attack.

    fn(inputs: harness.AttackInput, params: dict) -> {metric: float} (or harness.AttackResult with
    tables), every metric declared in `metrics` ({name: harness.Metric}) and finite; one that is
    undefined on these inputs is left out. prepare(inputs: harness.PrepareInput, params) runs once per
    split. What the attack needs beyond the model under test is declared, and an attack whose needs a run
    cannot meet is skipped with the reason: `needs` names inputs from harness.registry.NEEDS ("retrain",
    "random"), `references` the least number of reference-bank models and `reruns` how many more runs of
    the method on the same split (each an int, or a function of the resolved parameters)."""


@hookspec
def register_scenarios(register):
    """register(name, fn, *, space=None, description=None) for each forget-set builder.

    fn(pool: harness.Pool, generator: torch.Generator, **params) -> pool positions to forget, or
    (positions, info dict)."""


@hookspec
def register_models(register):
    """register(name, factory, *, space=None, description=None): factory(num_classes, **params) -> nn.Module."""
