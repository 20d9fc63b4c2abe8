"""CIFAR-10 as one uint8 tensor, from a local copy or torchvision's download.

The images are held once, undecoded and unnormalised (184 MB for all 60k); the engine normalises and
augments whole batches on the compute device, so no per-sample PIL work runs in the training loop.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .hashing import stable_hash

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)  # the starting kit's normalisation
STD = (0.2023, 0.1994, 0.2010)
DATA_ENV = "HARNESS_DATA_DIR"
CACHE_ENV = "HARNESS_CACHE_DIR"
LOCAL_FORMATS = "cifar10.npz, cifar-10-batches-py/ or cifar10-jpeg.npz"


class DataError(RuntimeError):
    """The data could not be found, downloaded or read; the message says what to do."""


@dataclass(frozen=True)
class ImageData:
    images: torch.Tensor  # uint8 (N, 3, H, W): the n_train training images first, then the held-out ones
    labels: torch.Tensor  # int64 (N,)
    n_train: int
    classes: tuple[str, ...]
    source: str
    fingerprint: str  # content hash: part of every split and model-cache key

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> ImageData:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where downloads and trained models go; never inside the (possibly read-only) data folder."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unlearning-harness"


def load_cifar10(data_dir: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> ImageData:
    """Local copy from `data_dir` or $HARNESS_DATA_DIR if given, else torchvision's download into the cache."""
    data_dir = data_dir or os.environ.get(DATA_ENV)
    if data_dir:
        return _load_local(str(Path(data_dir).expanduser().resolve()))
    return _download(str(cache_dir(cache) / "cifar10"))


@lru_cache(maxsize=2)
def _load_local(path: str) -> ImageData:
    root = Path(path)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; it should hold {LOCAL_FORMATS}")
    if root.is_file():
        candidates = [root]
    else:
        candidates = [root / "cifar10.npz", root / "cifar-10-batches-py", root / "cifar10-jpeg.npz"]
    for candidate in candidates:
        if not candidate.exists():
            continue
        if candidate.is_dir():
            arrays = _read_batches(candidate)
        elif "jpeg" in candidate.name:
            arrays = _read_jpeg_npz(candidate)
        else:
            arrays = _read_npz(candidate)
        return _to_image_data(arrays, str(candidate))
    raise DataError(
        f"no CIFAR-10 copy in {root}: expected {LOCAL_FORMATS}. "
        f"Point --data-dir or ${DATA_ENV} at a folder that holds one, or unset it to download."
    )


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(sorted(missing))} (found: {', '.join(npz.files)})")
            return {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _read_jpeg_npz(path: Path) -> dict:
    """The lossless-to-decode JPEG rendition (small enough to carry to a GPU machine)."""
    import io

    from PIL import Image

    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {}
            for part in ("train", "test"):
                blob, offsets = npz[f"{part}_jpeg"].tobytes(), npz[f"{part}_offsets"]
                out[f"x_{part}"] = np.stack([
                    np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]])).convert("RGB"))
                    for i in range(len(offsets) - 1)
                ])
                out[f"y_{part}"] = npz[f"y_{part}"]
            return out
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{path}: not a readable CIFAR-10 JPEG archive ({type(exc).__name__}: {exc})") from None


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global that no CIFAR-10 batch holds."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch and nothing else.

    The batches are pickles, and a plain `pickle.load` runs whatever a crafted file asks for. A real
    batch holds a dict of bytes, lists and one numpy array; these are the only globals admitted."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"it references {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def _read_batches(folder: Path) -> dict:
    def read(name: str):
        file = folder / name
        try:
            with open(file, "rb") as fh:
                batch = _BatchUnpickler(fh, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return data, np.asarray(batch[b"labels"], dtype=np.int64)
        except FileNotFoundError:
            raise DataError(f"{folder}: missing {name} (torchvision's cifar-10-batches-py layout)") from None
        except _Refused as exc:
            raise DataError(f"{file}: refused to load: {exc}") from None
        except Exception as exc:
            raise DataError(f"{file}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return {
        "x_train": np.concatenate([x for x, _ in train]), "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test, "y_test": y_test,
    }


def _to_image_data(arrays: dict, source: str) -> ImageData:
    x_train, y_train, x_test, y_test = (np.asarray(arrays[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
            raise DataError(f"{source}: x_{name} must be uint8 of shape (N, 32, 32, 3), got {x.dtype} {x.shape}")
        if y.shape != (len(x),):
            raise DataError(f"{source}: y_{name} has shape {y.shape}, expected ({len(x)},)")
        if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise DataError(f"{source}: y_{name} has labels outside 0..{len(CLASSES) - 1}")
    images = np.concatenate([x_train, x_test]).transpose(0, 3, 1, 2)
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
    return ImageData(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels),
        n_train=len(x_train),
        classes=CLASSES,
        source=source,
        fingerprint=stable_hash(images, labels),
    )


@lru_cache(maxsize=1)
def _download(root: str) -> ImageData:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(root, train=True, download=True)
        test = CIFAR10(root, train=False, download=True)
    except Exception as exc:  # URLError, timeouts, checksum failures...
        raise DataError(
            f"could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}). Offline? Put "
            f"{LOCAL_FORMATS} in a folder and pass --data-dir FOLDER or set ${DATA_ENV}=FOLDER."
        ) from None
    arrays = {"x_train": train.data, "y_train": np.asarray(train.targets),
              "x_test": test.data, "y_test": np.asarray(test.targets)}
    return _to_image_data(arrays, f"torchvision download in {root}")
