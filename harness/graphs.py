"""The fast path of the training step: record it once as a CUDA graph, then replay it with one launch.

Why: a ResNet18 step on 32x32 images is a few hundred small kernels, and on an H100 or H200 launching them
one by one from Python costs more than running them (the harness and a bare loop were both launch-bound).
A graph holds the whole step (zero_grad, forward, loss, backward, optimiser step, the epoch's running
sums), so per step the CPU copies the batch into fixed buffers and launches one graph, and it stays ahead
of the GPU.

What may be captured: the same shapes every step, no host sync inside the step (`.item()`, `float(t)`,
a Python `if` on a tensor; the last warm-up step runs under CUDA's sync debug mode to find one before
recording), and Python numbers that do not change while the graph is in use. A graph is
therefore keyed on the input shapes, the optimiser's hyper-parameters (a new learning rate each epoch is a
new capture), the loss function's code and the numbers and tensors its closure holds, and the storage of
every parameter, buffer and optimiser state tensor. A step that cannot be captured runs eagerly, with
one warning, and gives the same result; so does every step with a shape of its own (a short last batch).

On the CPU there are no graphs. `emulate=True` records the step without running it and replays it by
calling it again: the same buffers, keys and bookkeeping, so the CPU tests reach this logic.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

WARMUP_STEPS = 3  # eager steps before a runner's first capture: cuDNN, cuBLAS and autograd set up lazily
REWARMUP_STEPS = 1  # before each later capture (another learning rate, another loss function)
MAX_CAPTURES_PER_EPOCH = 4  # beyond this a key changes every few steps: capturing would cost more than it saves

Step = Callable[..., None]  # step(loss_sum, correct, *inputs): one training step adding into the two sums


@dataclass
class Counts:
    """What a runner did; tests and the throughput benchmark read it."""

    eager: int = 0
    replays: int = 0
    captures: int = 0
    failures: int = 0


class StepRunner:
    """Runs training steps of one optimiser, captured and replayed where it can (see the module's doc).

    Also owns the epoch's running sums (loss and correct predictions, on the device), read once per epoch."""

    def __init__(self, device: torch.device, *, capture: bool):
        self.device = device
        self.capture = capture
        self.emulate = capture and device.type != "cuda"
        self.counts = Counts()
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self._graph: Any = None
        self._key: Any = None
        self._static: tuple[torch.Tensor, ...] = ()
        self._warm_key: Any = None
        self._warm_steps = 0
        self._captured_before = False
        self._unsupported: set = set()
        self._captures_this_epoch = 0
        self._state: Callable[[], tuple] = tuple
        self._graph_state: tuple = ()
        self._side: Any = None  # the stream of warm-up steps and recordings (CUDA)

    def start_epoch(self, state: Callable[[], tuple] = tuple) -> None:
        """Zero the sums. `state()` identifies the storage the step works on (parameters, buffers, optimiser
        state): a graph recorded on other storage is dropped. Warm-up counts restart: a shape met once per
        epoch (a short last batch) is never captured."""
        self.loss_sum.zero_()
        self.correct.zero_()
        self._captures_this_epoch = 0
        self._warm_key, self._warm_steps = None, 0
        self._state = state
        if self._graph is not None and state() != self._graph_state:
            self._drop()

    def sums(self) -> tuple[float, int]:
        """(loss sum, correct count): one host sync."""
        loss, correct = torch.stack([self.loss_sum.float(), self.correct.float()]).tolist()
        return loss, int(correct)

    def run(self, step: Step, inputs: tuple[torch.Tensor, ...], key: Any) -> None:
        """One step on `inputs`; `key` names what the step's kernels depend on besides the input shapes."""
        if not self.capture:
            return self._eager(step, inputs)
        full_key = (key, tuple((t.shape, t.dtype, t.stride()) for t in inputs))
        if self._graph is not None and full_key == self._key:
            for buffer, value in zip(self._static, inputs):
                buffer.copy_(value, non_blocking=True)
            self._replay()
            return None
        if full_key in self._unsupported or self._captures_this_epoch >= MAX_CAPTURES_PER_EPOCH:
            return self._eager(step, inputs)
        if full_key != self._warm_key:
            self._warm_key, self._warm_steps = full_key, 0
        needed = REWARMUP_STEPS if self._captured_before else WARMUP_STEPS
        if self._warm_steps < needed:
            self._warm_steps += 1
            if self._warm_steps < needed:
                return self._eager(step, inputs, side_stream=not self._captured_before)
            with self._sync_probe() as synced:  # the last warm-up step: would recording fail?
                self._eager(step, inputs, side_stream=not self._captured_before)
            if synced:
                self._refuse(full_key, f"it syncs with the host ({synced[0]})")
            return None
        return self._record(step, inputs, full_key)

    # -- internals ---------------------------------------------------------------------------------------
    def _eager(self, step: Step, inputs: tuple, side_stream: bool = False) -> None:
        self.counts.eager += 1
        if side_stream and self.device.type == "cuda":  # warm-up off the main stream, as CUDA graphs ask
            stream = self._side_stream()
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                step(self.loss_sum, self.correct, *inputs)
            torch.cuda.current_stream(self.device).wait_stream(stream)
        else:
            step(self.loss_sum, self.correct, *inputs)

    def _record(self, step: Step, inputs: tuple, full_key: Any) -> None:
        self._drop()
        self._graph_state = self._state()  # after the warm-up steps, which create the optimiser's state
        static = tuple(torch.empty_like(t).copy_(t) for t in inputs)
        try:
            graph = self._capture(step, static)
        except Exception as exc:  # not capturable: eager from now on for this key, same result
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._refuse(full_key, f"{type(exc).__name__}: {exc}")
            return self._eager(step, inputs)
        self._graph, self._key, self._static = graph, full_key, static
        self._captured_before = True
        self._captures_this_epoch += 1
        self.counts.captures += 1
        self._replay()  # capturing records the step without running it
        return None

    def _refuse(self, full_key: Any, why: str) -> None:
        self.counts.failures += 1
        self._unsupported.add(full_key)
        warnings.warn(f"training step not captured as a CUDA graph ({why}); running it eagerly", RuntimeWarning,
                      stacklevel=5)

    @contextlib.contextmanager
    def _sync_probe(self):
        """Yields a list that ends up holding what synced with the host inside the block (CUDA's sync debug
        mode, as warnings): a step that syncs cannot be recorded, and trying would fail mid-capture."""
        found: list[str] = []
        if self.device.type != "cuda":
            yield found
            return
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield found
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        found.extend(str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message))

    def _capture(self, step: Step, static: tuple):
        if self.emulate:
            return functools.partial(step, self.loss_sum, self.correct, *static)
        # What `with torch.cuda.graph(g)` does, without its gc.collect() and empty_cache(): those cost tenths
        # of a second in a process holding MLflow and pandas, once per recording (one per epoch here).
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        stream = self._side_stream()
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            graph.capture_begin()
            try:
                step(self.loss_sum, self.correct, *static)
            finally:
                graph.capture_end()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return graph

    def _side_stream(self):
        """The stream of warm-up steps and recordings, made on first use (CUDA only)."""
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        return self._side

    def _replay(self) -> None:
        self.counts.replays += 1
        if self.emulate:
            self._graph()
        else:
            self._graph.replay()

    def _drop(self) -> None:
        self._graph, self._key, self._static = None, None, ()

    def release(self) -> None:
        """Drop the graph and what refers to the model; the counts stay."""
        self._drop()
        self._state = tuple


def runner(optimizer: torch.optim.Optimizer, device: torch.device, *, capture: bool) -> StepRunner:
    """The runner of `optimizer`, kept on it as long as it lives, so a graph outlasts an epoch when nothing
    it depends on changed. (An attribute, not a weak mapping: the runner's step refers back to the
    optimiser, and a cycle is collected where a mapping's value would keep its key alive.)"""
    found = getattr(optimizer, "_harness_step_runner", None)
    if found is None or found.capture != capture or found.device != device:
        found = StepRunner(device, capture=capture)
        optimizer._harness_step_runner = found
    return found


def release(optimizer: torch.optim.Optimizer) -> None:
    """Free the graph and buffers of `optimizer` now (at the end of a training phase), not when the
    garbage collector gets to them."""
    found = getattr(optimizer, "_harness_step_runner", None)
    if found is not None:
        found.release()


def state_key(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple:
    """The storage a step reads and writes: every parameter, buffer and optimiser state tensor."""
    tensors = [*model.parameters(), *model.buffers(),
               *(v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))]
    return (id(model), tuple(t.data_ptr() for t in tensors), tuple(p.requires_grad for p in model.parameters()))


def hyper_key(optimizer: torch.optim.Optimizer) -> tuple:
    """The optimiser's per-group settings (learning rate, momentum, ...): a captured step bakes them in."""
    return tuple(tuple(sorted((k, _value_key(v)) for k, v in group.items() if k != "params"))
                 for group in optimizer.param_groups)


def function_key(fn: Any, depth: int = 2) -> Any:
    """What identifies the computation of a loss function: its code and the numbers, tensors and functions
    its closure and defaults hold (a new lambda per call with the same values keys alike)."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        return ("partial", function_key(fn.func, depth), tuple(_value_key(a, depth) for a in fn.args),
                tuple(sorted((k, _value_key(v, depth)) for k, v in fn.keywords.items())))
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("object", id(fn))
    cells = tuple(_value_key(c.cell_contents, depth) if _filled(c) else None for c in fn.__closure__ or ())
    defaults = tuple(_value_key(d, depth) for d in fn.__defaults__ or ())
    return ("function", code, cells, defaults)


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- read only to test it: an empty cell raises ValueError
    except ValueError:
        return False
    return True


def _value_key(value: Any, depth: int = 2) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        return value
    if isinstance(value, torch.Tensor):
        return ("tensor", value.data_ptr(), tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_value_key(v, depth) for v in value)
    if callable(value) and depth > 0 and not isinstance(value, torch.nn.Module):
        return function_key(value, depth - 1)
    return ("object", id(value))
