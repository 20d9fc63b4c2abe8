"""One evaluation cell: a method with resolved parameters on one split, run once, evaluated once, attacked.

`evaluate_cell` is the single step every caller makes: the serial runner, the Optuna objective and a
distributed worker. It knows nothing of MLflow or result tables; what happens during the run reaches
the caller through `Callbacks`, and what came of it is a `CellResult`.

A method cannot spoil the cells after it: it gets its own copies of the model, the frozen original and
the index sets; writing into the shared images is detected and undone, and so is any global torch
state it leaves changed (harness.isolation); either FAILS the cell. `sys.exit` inside a method, a result
that is not a module, and non-finite weights or outputs are that cell's failure, with the reason. An
attack cannot spoil the attacks after it: global state and the outputs it reads are restored after it,
and a change it made is its failure.
"""
from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from . import RESULTS_VERSION, engine, isolation
from .context import CallbackError, Context, UnlearningData
from .data import ImageData
from .evaluation import Outputs, model_outputs, run_attack, utility_metrics
from .hashing import stable_hash
from .reference_models import SplitModels
from .registry import Component, Method
from .splits import Split

FINISHED, FAILED = "FINISHED", "FAILED"
REFERENCE_ROWS = ("original", "retrain")  # the reference rows of every split, before the methods


@dataclass(frozen=True)
class Configured:
    """A registered component with its parameters resolved against its space."""

    component: Component
    params: Mapping

    @property
    def name(self) -> str:
        return self.component.name


@dataclass(frozen=True)
class Cell:
    """(method or reference row, resolved parameters, split, attacks, setting).

    `name` is the method's name, or 'original' / 'retrain' for the reference rows (method None).
    `setting` is what else decides the result: profile, model, precision; it enters the hash.
    `budget` is the epoch budget that set `params['epochs']` (None: the method's own): a label for
    reports, already in the hash through the parameters."""

    name: str
    method: Method | None
    params: Mapping
    split: Split
    attacks: tuple[Configured, ...]
    setting: Mapping = field(default_factory=dict)
    budget: float | None = None

    @property
    def hash(self) -> str:
        """Stable across processes and machines; the same resolved configuration gives the same hash."""
        return stable_hash({
            "name": self.name, "params": dict(self.params), "split": self.split.hash, "setting": dict(self.setting),
            "attacks": {a.name: dict(a.params) for a in self.attacks}, "harness": RESULTS_VERSION,
        })


@dataclass
class Callbacks:
    """How a caller follows a cell: `on_epoch(epoch, metrics)` after each epoch a method reports (curves,
    a tuner's intermediate values). Besides the method's metrics it gets `epoch_seconds` (the method's
    time so far, evaluation excluded) and `epoch_pct_retrain` (that time as % of the retrain estimate), so
    a tuner can stop a trial that is already over its time budget. What it raises (e.g.
    optuna.TrialPruned) ends the cell and reaches the caller unchanged."""

    on_epoch: Callable[[int, dict], None] | None = None


@dataclass
class CellResult:
    cell: Cell
    status: str
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # per-epoch metrics, as given to on_epoch
    error: str | None = None  # one line
    traceback: str | None = None
    attack_errors: dict[str, str] = field(default_factory=dict)  # attack name -> traceback
    skipped: dict[str, str] = field(default_factory=dict)  # attack name -> why it could not run here
    tables: dict = field(default_factory=dict)  # "attack/table" -> DataFrame (e.g. the most exposed samples)
    info: dict = field(default_factory=dict)  # facts for tags (e.g. where a reference was trained)

    @property
    def ok(self) -> bool:
        return self.status == FINISHED


def evaluate_cell(cell: Cell, refs: SplitModels, callbacks: Callbacks | None = None, *,
                  show_progress: bool = False, epoch_eval_size: int | None = 2000) -> CellResult:
    """Run, time, evaluate and attack one cell. Exceptions from `callbacks` and KeyboardInterrupt
    propagate; everything a method does wrong becomes a FAILED result with the reason."""
    if cell.method is None:
        return _reference(cell, refs)
    callbacks = callbacks or Callbacks()
    service, split = refs.service, cell.split
    retrain_clock = service.retrain_clock(split)  # timed around the method: same device, precision and load
    retrain_clock.sample(service.calibration_steps // 2)
    clock = engine.Stopwatch(service.compute.device)
    start = None

    def on_epoch(epoch: int, metrics: dict) -> None:
        so_far = clock.now() - start - ctx.overhead_s
        callbacks.on_epoch(epoch, {**metrics, "epoch_seconds": so_far,
                                   "epoch_pct_retrain": 100.0 * so_far / retrain_clock.estimate})

    model, data, ctx = method_arguments(
        refs.original.model, service.data, split.retain, split.forget, split.validation, split.seed,
        service.compute, service.model_factory, on_epoch=on_epoch if callbacks.on_epoch else None,
        show_progress=show_progress, epoch_eval_size=epoch_eval_size, name=cell.name)
    out, elapsed, failure, guard = None, 0.0, None, None
    try:
        with isolation.guarded() as guard:  # whatever global state the method changes is put back here
            start = clock.now()
            result = cell.method.fn(model, data, dict(cell.params), ctx)
            elapsed = clock.now() - start - ctx.overhead_s
        if guard.changes:
            failure = (guard.describe(f"method {cell.name!r}"), None)
        else:
            retrain_clock.sample(service.calibration_steps - service.calibration_steps // 2)
            out = _evaluate(cell.name, result, refs)
    except CallbackError as exc:
        service.restore_data()
        raise exc.original from None
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # a method cannot end the whole run
        failure = (f"method {cell.name!r} called sys.exit({exc.code!r})", traceback.format_exc())
    except BaseException as exc:
        also = f"; {guard.describe('it also')}" if guard is not None and guard.changes else ""
        failure = (_one_line(exc) + also, traceback.format_exc())
    if service.restore_data():
        failure = (f"method {cell.name!r} modified the shared images or labels in place (restored for the next "
                   f"cells); its results are void", failure[1] if failure else None)
    if failure is not None:
        return CellResult(cell, FAILED, history=ctx.history, error=failure[0], traceback=failure[1])
    metrics = utility_metrics(out, refs.retrain_out)
    metrics.update({"unlearn_seconds": elapsed, "eval_overhead_seconds": ctx.overhead_s,
                    "retrain_seconds": retrain_clock.estimate,
                    "pct_retrain_time": 100.0 * elapsed / retrain_clock.estimate})
    result = CellResult(cell, FINISHED, metrics, ctx.history)
    run_attacks(result, refs, out, lambda n: _reruns(cell, refs, n))
    return result


def method_arguments(original: nn.Module, dataset: ImageData, retain: torch.Tensor, forget: torch.Tensor,
                     validation: torch.Tensor, seed: int, compute: engine.Compute,
                     model_factory: Callable[[], nn.Module],
                     **context_options) -> tuple[nn.Module, UnlearningData, Context]:
    """(model, data, ctx) as a method receives them: a trainable copy of the original, the method's own
    copies of the index sets and of the frozen original, and a context seeded by `seed` (torch's global
    RNG too). Every caller of a method builds them here, the conformance checks included."""
    frozen = copy.deepcopy(original).eval()
    for param in frozen.parameters():
        param.requires_grad_(False)
    model = copy.deepcopy(original)
    for param in model.parameters():
        param.requires_grad_(True)
    data = UnlearningData(retain.clone(), forget.clone(), validation.clone(), frozen, dataset)
    engine.seed_everything(seed)
    return model, data, Context(data, compute, seed, model_factory, **context_options)


def _evaluate(name: str, result, refs: SplitModels) -> Outputs:
    """The evaluation pass of a method's result, after checking it is a usable model."""
    if not isinstance(result, nn.Module):
        raise TypeError(f"method {name!r} returned {type(result).__name__}, expected a torch.nn.Module")
    result.eval()
    bad = [k for k, v in result.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"method {name!r} returned non-finite weights in {', '.join(bad[:3])}"
                                 f"{' and more' if len(bad) > 3 else ''}")
    out = model_outputs(result, refs.service.data, refs.split, refs.service.compute)
    bad = [s for s, logits in out.logits.items() if not torch.isfinite(logits).all()]
    if bad:
        raise FloatingPointError(f"method {name!r} gives non-finite outputs on {', '.join(bad)}")
    return out


def _reference(cell: Cell, refs: SplitModels) -> CellResult:
    """The original or retrain row: the same metrics and attacks as a method, from the reference service."""
    if cell.name == "original":
        trained, out = refs.original, refs.original_out
        metrics = {**utility_metrics(out, refs.retrain_out), "train_seconds": float(trained.meta["train_seconds"])}
    elif cell.name == "retrain":
        trained, out = refs.retrain, refs.retrain_out
        estimate = refs.service.retrain_seconds(cell.split)
        metrics = {**utility_metrics(out, refs.retrain_out), "unlearn_seconds": estimate, "retrain_seconds": estimate,
                   "pct_retrain_time": 100.0, "retrain_seconds_recorded": float(trained.meta["train_seconds"])}
    else:
        raise ValueError(f"unknown reference row {cell.name!r}: expected one of {', '.join(REFERENCE_ROWS)}")
    history = [{"epoch": row["epoch"], "train_loss": row["loss"], "train_acc": row["acc"]}
               for row in trained.meta.get("history", [])]
    info = {"cached": trained.meta["cached"], "trained_on": trained.meta.get("train_device", "?"),
            "cache_key": trained.meta["cache_key"]}
    result = CellResult(cell, FINISHED, metrics, history, info=info)
    run_attacks(result, refs, out, lambda n: refs.reference_reruns(cell.name, n))
    return result


def run_attacks(result: CellResult, refs: SplitModels, out: Outputs,
                reruns: Callable[[int], tuple[Outputs, ...]]) -> None:
    """Every attack of the cell on `out`, into `result`: metrics, tables and seconds per attack. An attack
    whose needs this split cannot meet is skipped with the reason; one that raises is recorded as an
    error and the others still run. Reruns of the method are made once, for the attacks that ask."""
    runnable = []
    for attack in result.cell.attacks:
        reason = refs.unmet(attack.component, attack.params)
        if reason is None:
            runnable.append(attack)
        else:
            result.skipped[attack.name] = reason
    wanted = max((a.component.reruns_needed(a.params) for a in runnable), default=0)
    extra: tuple[Outputs, ...] | Exception = ()
    if wanted:
        start = time.perf_counter()
        try:
            extra = reruns(wanted)
        except Exception as exc:  # the attacks that need reruns fail with this; the others run
            extra = exc
        result.metrics["rerun_seconds"] = time.perf_counter() - start
    # What the attacks share (the model under test's outputs, the references', the reruns'): a change one
    # attack makes in place is found and undone before the next one reads them, and fails that attack.
    mine = isolation.Pristine(target=out, reruns=extra if isinstance(extra, tuple) else ())
    for attack in runnable:
        start = time.perf_counter()
        try:
            n = attack.component.reruns_needed(attack.params)
            if n and isinstance(extra, Exception):
                raise RuntimeError(f"the reruns of {result.cell.name!r} this attack needs failed: {_one_line(extra)}")
            prepared = refs.prepared(attack.component, attack.params)
            inputs = refs.attack_input(attack.component, out, prepared, extra[:n] if n else ())
            shared = refs.pristine()
            try:
                with isolation.guarded() as guard:
                    outcome = run_attack(attack.component, attack.params, inputs)
            finally:
                changed = mine.restore() + shared.restore()
            if changed:
                raise isolation.SharedInputChanged(
                    f"attack {attack.name!r} changed its inputs in place: {', '.join(changed[:4])}"
                    f"{' and more' if len(changed) > 4 else ''} (undone for every attack after it); its result is void")
            if guard.changes:
                raise isolation.GlobalStateChanged(guard.describe(f"attack {attack.name!r}"))
            result.metrics.update(outcome.metrics)
            result.tables.update({f"{attack.name}/{name}": table for name, table in outcome.tables.items()})
        except Exception as exc:
            result.attack_errors[attack.name] = f"{_one_line(exc)}\n\n{traceback.format_exc()}"
        result.metrics[f"attack_seconds/{attack.name}"] = time.perf_counter() - start


RERUN_SEED_STRIDE = 1_000_003  # method seeds of reruns: split seed + j * stride (a prime, far from split seeds)


def _reruns(cell: Cell, refs: SplitModels, n: int) -> tuple[Outputs, ...]:
    """`n` more runs of the cell's method on its split with other seeds, evaluated (not timed or logged:
    only attacks that compare several unlearned models, like forget-quality, read them)."""
    service, split, outs = refs.service, cell.split, []
    for j in range(1, n + 1):
        model, data, ctx = method_arguments(refs.original.model, service.data, split.retain, split.forget,
                                            split.validation, (split.seed + j * RERUN_SEED_STRIDE) % 2**32,
                                            service.compute, service.model_factory, show_progress=False,
                                            epoch_eval_size=None, name=cell.name)
        with isolation.guarded() as guard:
            rerun = cell.method.fn(model, data, dict(cell.params), ctx)
        if guard.changes:
            raise isolation.GlobalStateChanged(guard.describe(f"method {cell.name!r} (during a rerun)"))
        outs.append(_evaluate(cell.name, rerun, refs))
        if service.restore_data():
            raise RuntimeError(f"method {cell.name!r} modified the shared images or labels in place during a rerun")
    return tuple(outs)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text[:300] + ("..." if len(text) > 300 else "")
