"""Loading CIFAR-10 from local copies, and the errors users see when it cannot be loaded."""
import io
import os
import pickle

import numpy as np
import pytest
import torch

from harness import data as data_mod
from harness.data import DataError, load_cifar10

from .conftest import synthetic_arrays


@pytest.fixture(autouse=True)
def fresh_loader_cache(monkeypatch):
    data_mod._load_local.cache_clear()
    data_mod._download.cache_clear()
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    yield
    data_mod._load_local.cache_clear()


def test_npz_folder(tmp_path):
    arrays = synthetic_arrays(30, 20)
    np.savez_compressed(tmp_path / "cifar10.npz", **arrays)
    d = load_cifar10(tmp_path)
    assert d.images.shape == (50, 3, 32, 32) and d.images.dtype == torch.uint8 and d.n_train == 30
    assert torch.equal(d.images[0], torch.from_numpy(arrays["x_train"][0]).permute(2, 0, 1))
    assert torch.equal(d.labels[30:], torch.from_numpy(arrays["y_test"]))


def test_env_variable_and_fingerprint_is_content_hash(tmp_path, monkeypatch):
    np.savez(tmp_path / "cifar10.npz", **synthetic_arrays(30, 20))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    a = load_cifar10()
    other = tmp_path / "other"
    other.mkdir()
    arrays = synthetic_arrays(30, 20)
    arrays["x_train"][0, 0, 0, 0] ^= 1
    np.savez(other / "cifar10.npz", **arrays)
    assert load_cifar10(other).fingerprint != a.fingerprint


def write_batches(folder, arrays, protocol):
    """torchvision's cifar-10-batches-py layout (the real files: protocol 2 pickles of a dict)."""
    folder.mkdir()
    for i in range(5):
        x = arrays["x_train"][i * 10:(i + 1) * 10]
        batch = {b"batch_label": b"training batch", b"data": x.transpose(0, 3, 1, 2).reshape(10, -1),
                 b"labels": arrays["y_train"][i * 10:(i + 1) * 10].tolist(), b"filenames": [b"x.png"] * 10}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=protocol))
    batch = {b"data": arrays["x_test"].transpose(0, 3, 1, 2).reshape(10, -1), b"labels": arrays["y_test"].tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_torchvision_batches_folder(tmp_path, protocol):
    arrays = synthetic_arrays(50, 10)
    write_batches(tmp_path / "cifar-10-batches-py", arrays, protocol)
    d = load_cifar10(tmp_path)
    assert d.n_train == 50
    assert torch.equal(d.images[:50], torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_batch_is_refused_without_running_it(tmp_path):
    """A pickle that would run a command is refused by name; the command never runs."""
    arrays = synthetic_arrays(50, 10)
    write_batches(tmp_path / "cifar-10-batches-py", arrays, 2)
    marker = tmp_path / "pwned"
    payload = {b"data": Exploit(marker), b"labels": [0] * 10}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: refused to load: it references posix.system"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_jpeg_archive(tmp_path):
    from PIL import Image

    arrays = synthetic_arrays(10, 10)
    out = {}
    for part in ("train", "test"):
        blobs = []
        for img in arrays[f"x_{part}"]:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")  # lossless, so the decode must match exactly
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        out[f"{part}_jpeg"] = np.concatenate(blobs)
        out[f"{part}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
        out[f"y_{part}"] = arrays[f"y_{part}"]
    np.savez(tmp_path / "cifar10-jpeg.npz", **out)
    d = load_cifar10(tmp_path)
    assert torch.equal(d.images[:10], torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2))


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no CIFAR-10 copy in .*expected cifar10.npz"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.pop("y_test"), r"missing arrays y_test"),
    (lambda a: a.update(x_train=a["x_train"][:, :16]), r"x_train must be uint8 of shape \(N, 32, 32, 3\)"),
    (lambda a: a.update(x_test=a["x_test"].astype(np.float32)), r"x_test must be uint8"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), r"y_train has shape"),
    (lambda a: a.update(y_test=a["y_test"] + 10), r"labels outside 0..9"),
])
def test_malformed_npz_names_file_and_problem(tmp_path, mutate, message):
    arrays = synthetic_arrays(20, 10)
    mutate(arrays)
    np.savez(tmp_path / "cifar10.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(tmp_path)
    assert "cifar10.npz" in str(err.value)


def test_corrupt_file(tmp_path):
    (tmp_path / "cifar10.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"cifar10.npz: not a readable .npz file"):
        load_cifar10(tmp_path)


def test_offline_download_says_where_to_put_data(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"could not download CIFAR-10.*--data-dir FOLDER or set \$HARNESS_DATA_DIR"):
        load_cifar10(None, cache=tmp_path)


def test_read_only_data_folder_is_never_written(tmp_path):
    np.savez(tmp_path / "cifar10.npz", **synthetic_arrays(20, 10))
    before = sorted(p.name for p in tmp_path.iterdir())
    tmp_path.chmod(0o555)
    try:
        load_cifar10(tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
