"""On-disk cache of trained models (the original and retrain-from-scratch ones), keyed by what makes them.

Training them is the expensive part of every benchmark; the key hashes the data fingerprint, the
training set, the model, the recipe, the precision and the seed, so a cached model is reused exactly
when retraining would give the same thing. A lock file per key makes two processes that ask for the
same model at once train it once: the second waits, then loads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from .hashing import stable_hash

log = logging.getLogger(__name__)
FORMAT = 2  # bump when the engine changes what a given key would produce


def cache_key(**parts) -> str:
    return stable_hash({"format": FORMAT, **parts}, size=10)


class ModelCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    @contextlib.contextmanager
    def lock(self, key: str):
        """Held while a model is looked up and, on a miss, trained and saved."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            yield

    def load(self, key: str, model: nn.Module) -> dict | None:
        """Fill `model` with the cached weights and return the metadata, or None on a miss.

        A file that does not load (truncated, corrupt, other architecture) is removed with a warning
        and reported as a miss, so the caller retrains instead of failing."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(blob["state_dict"])
            return dict(blob["meta"])
        except Exception as exc:
            log.warning("cached model %s is unreadable (%s: %s); removing it and retraining",
                        path, type(exc).__name__, exc)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, model: nn.Module, meta: dict) -> Path:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return self._write(self.path(key), {"state_dict": state, "meta": meta})

    def logits_path(self, key: str) -> Path:
        return self.root / f"{key}.logits.pt"

    def load_logits(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(indices, logits) cached for model `key`, or None. A bad file is removed, like a model: one that
        cannot be read, or whose logits are not all finite (written before float16 overflow was caught)."""
        path = self.logits_path(key)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not bool(torch.isfinite(blob["logits"]).all()):
                raise ValueError("non-finite logits")
            return blob["indices"], blob["logits"]
        except Exception as exc:
            log.warning("cached logits %s are unusable (%s: %s); removing them", path, type(exc).__name__, exc)
            path.unlink(missing_ok=True)
            return None

    def save_logits(self, key: str, indices: torch.Tensor, logits: torch.Tensor) -> Path:
        """Store a model's logits as they are given (float16 where they fit: `engine.compact`); non-finite
        logits are refused, since every later run would read them."""
        if not bool(torch.isfinite(logits).all()):
            raise ValueError(f"logits of cached model {key} are not all finite: the model diverged; not cached")
        return self._write(self.logits_path(key), {"indices": indices.cpu(), "logits": logits.cpu()})

    def _write(self, path: Path, blob: dict) -> Path:
        """Write atomically: a crash mid-write never leaves a file that looks complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(blob, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
