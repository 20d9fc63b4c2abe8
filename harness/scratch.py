"""Models trained from scratch with the profile's recipe (the original and retrain references), cached."""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import engine
from .cache import ModelCache, cache_key
from .data import ImageData
from .profiles import Recipe
from .splits import _digest


class ScratchTrainer:
    def __init__(self, data: ImageData, compute: engine.Compute, model_name: str,
                 model_factory: Callable[[], nn.Module], recipe: Recipe, cache: ModelCache | None,
                 show_progress: bool = True):
        self.data, self.compute, self.recipe, self.cache = data, compute, recipe, cache
        self.model_name, self.model_factory, self.show_progress = model_name, model_factory, show_progress

    def key(self, indices: torch.Tensor, seed: int, epochs: int) -> str:
        recipe = {**self.recipe.as_dict(), "epochs": epochs}
        return cache_key(data=self.data.fingerprint, train=_digest(torch.sort(indices.cpu()).values),
                         model=self.model_name, recipe=recipe, seed=seed, precision=self.compute.precision)

    def get(self, indices: torch.Tensor, seed: int, *, epochs: int | None = None,
            desc: str = "training") -> tuple[nn.Module, dict]:
        """(model in eval mode, metadata with train_seconds, history and whether it came from the cache)."""
        epochs = self.recipe.epochs if epochs is None else epochs
        key = self.key(indices, seed, epochs)
        model = self.compute.prepare(self.model_factory())
        if self.cache is not None:
            meta = self.cache.load(key, model)
            if meta is not None:
                return model.eval(), {**meta, "cached": True, "cache_key": key}
        generator = engine.seed_everything(seed)
        model = self.compute.prepare(self.model_factory())  # initialised under the seed
        history: list[dict] = []
        clock = engine.Stopwatch(self.compute.device)
        start = clock.now()
        r = self.recipe
        make_batches = lambda: engine.iterate(self.data, indices, r.batch_size, compute=self.compute,  # noqa: E731
                                              generator=generator, shuffle=True, augment_images=r.augment)
        engine.fit(model, make_batches, epochs=epochs, lr=r.lr, compute=self.compute, momentum=r.momentum,
                   weight_decay=r.weight_decay, schedule="cosine",
                   on_epoch=lambda e, s: history.append({"epoch": e, **s}),
                   progress=lambda it, total: tqdm(it, total=total, desc=desc, leave=False,
                                                   disable=not self.show_progress))
        meta = {"train_seconds": clock.now() - start, "device": str(self.compute.device), "epochs": epochs,
                "seed": seed, "n_train": len(indices), "history": history, "created": time.time()}
        if self.cache is not None:
            self.cache.save(key, model, meta)
        return model.eval(), {**meta, "cached": False, "cache_key": key}
