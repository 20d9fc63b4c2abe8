"""One content hash for everything that names a thing by what it is made of: data, splits, cached models,
cells. A value hashes the same in every process and on every machine."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch


def stable_hash(*parts: Any, size: int = 8) -> str:
    """Hex blake2b of `parts`: tensors and arrays by dtype, shape and bytes, everything else as canonical JSON."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            h.update(f"array:{array.dtype.str}:{array.shape}".encode())
            h.update(array.data)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()
