"""Keeping one plugin's mistakes out of every other cell and attack.

Two things a plugin shares with the rest of a run can be spoiled by it:

- **torch's (and numpy's, and Python's) global state**: grad mode, default dtype and device, thread
  count, deterministic and anomaly flags, cuDNN and TF32 switches, RNG states. A method that leaves
  `torch.set_grad_enabled(False)` behind would fail the harness's own steps after it and every later
  cell. `guarded()` snapshots that state around a plugin call and puts it back afterwards; the changes
  it found (RNG states aside: drawing random numbers is what methods do) are the plugin's failure.
- **the outputs an attack reads**: the model under test's, the original's, the retrain model's, the
  bank's and the random model's, shared by every attack of a cell (and the references by every cell
  of a split). `Pristine` keeps a copy of such objects and, after each attack, finds and undoes any
  change made in place, so the next attack reads what the first one should have.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class GlobalState:
    """The process-wide settings a plugin can change, as one comparable value (RNG states apart)."""

    grad_enabled: bool
    default_dtype: torch.dtype
    default_device: str
    num_threads: int
    deterministic: bool
    deterministic_warn_only: bool
    anomaly: bool
    anomaly_check_nan: bool
    cudnn_enabled: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cudnn_allow_tf32: bool
    matmul_allow_tf32: bool
    float32_matmul_precision: str
    rng: tuple = field(compare=False, repr=False)

    @classmethod
    def capture(cls) -> GlobalState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(
            grad_enabled=torch.is_grad_enabled(), default_dtype=torch.get_default_dtype(),
            default_device=str(torch.get_default_device()), num_threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            anomaly=torch.is_anomaly_enabled(), anomaly_check_nan=torch.is_anomaly_check_nan_enabled(),
            cudnn_enabled=torch.backends.cudnn.enabled, cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            rng=(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()),
        )

    def restore(self, now: GlobalState | None = None) -> None:
        """Put this state back (`now`: the current state, if already captured). Settings are only set
        where they differ: setting a default device, say, installs a torch function mode even for 'cpu'."""
        now = now or GlobalState.capture()
        if now.grad_enabled != self.grad_enabled:
            torch.set_grad_enabled(self.grad_enabled)
        if now.default_dtype != self.default_dtype:
            torch.set_default_dtype(self.default_dtype)
        if now.default_device != self.default_device:
            torch.set_default_device(None if self.default_device == "cpu" else self.default_device)
        if now.num_threads != self.num_threads:
            torch.set_num_threads(self.num_threads)
        if (now.deterministic, now.deterministic_warn_only) != (self.deterministic, self.deterministic_warn_only):
            torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        if (now.anomaly, now.anomaly_check_nan) != (self.anomaly, self.anomaly_check_nan):
            torch.set_anomaly_enabled(self.anomaly, self.anomaly_check_nan)
        torch.backends.cudnn.enabled = self.cudnn_enabled
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.allow_tf32 = self.cudnn_allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.matmul_allow_tf32
        if now.float32_matmul_precision != self.float32_matmul_precision:
            torch.set_float32_matmul_precision(self.float32_matmul_precision)
        cpu, cuda, numpy_state, python_state = self.rng
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    def changes(self, before: GlobalState) -> list[str]:
        """What differs from `before`, one phrase per setting ("grad mode False (was True)")."""
        out = []
        for f in dataclasses.fields(self):
            if f.compare and getattr(self, f.name) != getattr(before, f.name):
                out.append(f"{f.name.replace('_', ' ')} {getattr(self, f.name)} (was {getattr(before, f.name)})")
        return out


class GlobalStateChanged(RuntimeError):
    """A plugin left process-wide state changed (it was restored; the plugin's result is void)."""


class SharedInputChanged(RuntimeError):
    """An attack changed, in place, outputs other attacks read (undone; its result is void)."""


class Guard:
    """What `guarded` found: `changes` (empty when the plugin left global state as it found it)."""

    def __init__(self) -> None:
        self.changes: list[str] = []

    def describe(self, who: str) -> str:
        return (f"{who} changed global state and did not restore it: {'; '.join(self.changes)} "
                f"(restored for everything after it)")


@contextmanager
def guarded() -> Iterator[Guard]:
    """Run a plugin call with the process's global state put back afterwards, whatever it did; the
    guard lists what it had changed."""
    before = GlobalState.capture()
    guard = Guard()
    try:
        yield guard
    finally:
        after = GlobalState.capture()
        guard.changes = after.changes(before)
        before.restore(after)


class Pristine:
    """A copy of the tensors inside some shared objects (dataclasses, dicts, tuples of tensors), to find
    and undo what a plugin changed in place: `restore()` puts every tensor back as it was (values and
    the containers' entries) and names what had changed."""

    def __init__(self, **objects: Any) -> None:
        self._entries: list[tuple[str, Any, Any, Any, torch.Tensor]] = []  # (path, container, key, tensor, copy)
        self.add(**objects)

    def add(self, **objects: Any) -> None:
        """Keep a copy of these objects' tensors too."""
        for name, obj in objects.items():
            self._walk(name, obj)

    def _walk(self, path: str, obj: Any) -> None:
        if obj is None:
            return
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if isinstance(value, torch.Tensor):
                    self._entries.append((f"{path}.{f.name}", obj, f.name, value, value.detach().clone()))
                else:
                    self._walk(f"{path}.{f.name}", value)
        elif isinstance(obj, dict):
            for key, value in list(obj.items()):
                if isinstance(value, torch.Tensor):
                    self._entries.append((f"{path}[{key!r}]", obj, key, value, value.detach().clone()))
                else:
                    self._walk(f"{path}[{key!r}]", value)
        elif isinstance(obj, (tuple, list)):
            for i, value in enumerate(obj):
                self._walk(f"{path}[{i}]", value)

    def restore(self) -> list[str]:
        """Undo every change made since the copy; the paths of what had changed (empty: nothing)."""
        changed = []
        for path, container, key, tensor, copy in self._entries:
            current = container.get(key) if isinstance(container, dict) else getattr(container, key)
            if current is not tensor:  # the entry was replaced (or deleted)
                changed.append(path)
                if isinstance(container, dict):
                    container[key] = tensor
                else:
                    object.__setattr__(container, key, tensor)
            if not _same(tensor, copy):
                if path not in changed:
                    changed.append(path)
                with torch.no_grad():
                    if tensor.shape != copy.shape or tensor.dtype != copy.dtype:
                        tensor.set_(copy.clone())
                    else:
                        tensor.copy_(copy)
        return changed


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and values (NaN equal to NaN: a NaN is not a change)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())
