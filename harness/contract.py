"""The plugin contract's version and what each version changed.

`VERSION` is what `harness.__api_version__` reports. A plugin may declare the version it needs as a
module attribute, `HARNESS_CONTRACT = 4`; a harness with an older contract refuses it with one line
instead of failing somewhere inside a run. When a component breaks a rule, the refusal names the
version that made the rule, so the author of a plugin written for an older contract knows what changed.
"""
from __future__ import annotations

VERSION = 4
DECLARATION = "HARNESS_CONTRACT"  # the module attribute a plugin declares its contract version with

CHANGES: dict[int, str] = {
    1: "four register_* hooks; methods fn(model, data, params, ctx); attacks fn(outputs) -> {metric: value}; "
       "scenarios fn(pool, generator, **options); models factory(num_classes)",
    2: "every kind declares a parameter space (Int, Float, Choice); attacks are fn(inputs, params) and must "
       "declare their metrics (metrics={name: harness.Metric(...)}), logged as ATTACK/METRIC; attacks may "
       "prepare once per split (prepare=)",
    3: "attacks declare what they need (needs=, references=, reruns=) and may return tables (AttackResult); "
       "Outputs carry features and dataset indices; the reference bank (ReferenceOutputs)",
    4: "plugins may declare HARNESS_CONTRACT; a component that breaks the contract is refused alone, its "
       "plugin's other components load; harness.toolkit, harness.stats and harness.membership are public, "
       "versioned helpers; methods declare family=, touches= and citation=, and any component check= for "
       "parameters that must go together; ctx.fit takes after_step=; "
       "every attack reads its own untouched inputs, and changing them in place, leaving global torch state "
       "changed, or returning a non-finite metric is that component's failure; harness.testing's checks "
       "raise ConformanceError (also under python -O); the built-ins are the harness_plugins package",
}


class ContractError(ValueError):
    """A component or plugin that breaks the contract; `since` is the version that made the rule."""

    def __init__(self, message: str, since: int | None = None):
        self.since = since
        if since is not None:
            message += f" (plugin contract {since}: {CHANGES[since]})"
        super().__init__(message)


def required_version(plugin: object) -> int | None:
    """The contract version a plugin object declares it needs, or None; a ContractError if it declares
    something that is not a version number."""
    declared = getattr(plugin, DECLARATION, None)
    if declared is None:
        return None
    if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
        raise ContractError(f"{DECLARATION} = {declared!r} is not a contract version (an integer from 1)")
    return declared


def check_supported(plugin: object) -> None:
    """Refuse a plugin that needs a newer contract than this harness has."""
    needed = required_version(plugin)
    if needed is not None and needed > VERSION:
        raise ContractError(f"needs plugin contract {needed}, and this unlearning-harness has contract {VERSION}: "
                            f"upgrade it (pip install -U unlearning-harness)")
