"""bench.data: the embedded datasets, and torchvision's loaders on tiny files written here in their real on-disk formats."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from bench.data import DATASETS
from bench.errors import UserError

N_TRAIN, N_TEST = 30, 20
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- writing torchvision's formats ------------------------------------------------
def _pixels(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % 10).astype(np.uint8)


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX: big-endian magic 0x00000803 (uint8, 3 dims), the dims, then the pixels row-major."""
    n, height, width = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, height, width) + images.tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.tobytes())


def write_mnist(root: Path, folder: str = "MNIST") -> dict[str, np.ndarray]:
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision reads them (uncompressed)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "x_train": _pixels(N_TRAIN, (28, 28), seed=1),
        "y_train": _labels(N_TRAIN, seed=2),
        "x_test": _pixels(N_TEST, (28, 28), seed=3),
        "y_test": _labels(N_TEST, seed=4),
    }
    _write_idx_images(raw / "train-images-idx3-ubyte", arrays["x_train"])
    _write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["y_train"])
    _write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["x_test"])
    _write_idx_labels(raw / "t10k-labels-idx1-ubyte", arrays["y_test"])
    return arrays


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Pickles bytes as Python 2 ``str`` (BINSTRING), as in the real CIFAR files, which torchvision reads with encoding='latin1'."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(path: Path, obj: object) -> str:
    with path.open("wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; returns the arrays and the md5 attributes for CIFAR10."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per_batch = N_TRAIN // 5
    x_train, y_train = _pixels(N_TRAIN, (3072,), seed=5), _labels(N_TRAIN, seed=6)
    x_test, y_test = _pixels(N_TEST, (3072,), seed=7), _labels(N_TEST, seed=8)
    train_list = []
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        batch = {b"batch_label": b"training batch", b"data": x_train[part], b"labels": [int(v) for v in y_train[part]]}
        train_list.append([f"data_batch_{i + 1}", _py2_pickle(folder / f"data_batch_{i + 1}", batch)])
    test = {b"batch_label": b"testing batch", b"data": x_test, b"labels": [int(v) for v in y_test]}
    test_list = [["test_batch", _py2_pickle(folder / "test_batch", test)]]
    meta_md5 = _py2_pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072})
    meta = {"filename": "batches.meta", "key": "label_names", "md5": meta_md5}
    arrays = {"x_train": x_train.reshape(-1, 3, 32, 32), "y_train": y_train, "x_test": x_test.reshape(-1, 3, 32, 32), "y_test": y_test}
    return arrays, {"train_list": train_list, "test_list": test_list, "meta": meta}


def _use_md5s(monkeypatch: pytest.MonkeyPatch, attributes: dict[str, object]) -> None:
    """Point torchvision's integrity check at the tiny files' md5s (it still runs, on them)."""
    for name, value in attributes.items():
        monkeypatch.setattr(torchvision.datasets.CIFAR10, name, value)


def _assert_matches(data, arrays: dict[str, np.ndarray], channels: int) -> None:
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.shape == (n, channels, 28 if channels == 1 else 32, 28 if channels == 1 else 32)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        expected = torch.from_numpy(arrays[f"x_{split}"].astype(np.float32) / 255.0).reshape(x.shape)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-7)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert y.tolist() == arrays[f"y_{split}"].tolist()


# -- embedded datasets ---------------------------------------------------------------
def test_digits_shapes_values_and_context(digits):
    assert (digits.x_train.shape, digits.x_test.shape) == ((1437, 1, 8, 8), (360, 1, 8, 8))
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    for x in (digits.x_train, digits.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(digits.y_train.tolist()) == set(digits.y_test.tolist()) == set(range(10))
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    context = digits.model_context()
    assert set(context) == {"input_shape", "num_classes", "mean", "std"}
    assert context["input_shape"] == (1, 8, 8) and context["num_classes"] == 10
    assert len(context["mean"]) == len(context["std"]) == 1
    assert context["mean"][0] == pytest.approx(float(digits.x_train.mean()), abs=1e-6)
    assert context["std"][0] == pytest.approx(float(digits.x_train.std()), abs=1e-5)


def test_digits_split_is_fixed_and_disjoint(digits):
    again = DATASETS.create("digits")
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_train, digits.y_train)
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_test, digits.y_test)
    train = {tuple(row.tolist()) for row in digits.x_train.flatten(1)}
    test = [tuple(row.tolist()) for row in digits.x_test.flatten(1)]
    assert not any(row in train for row in test)


def test_mnist_5k_is_a_stratified_4000_1000_split():
    data = DATASETS.create("mnist-5k")
    assert (data.x_train.shape, data.x_test.shape) == ((4000, 1, 28, 28), (1000, 1, 28, 28))
    assert data.x_train.dtype == torch.float32 and data.y_test.dtype == torch.int64
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert float(data.x_test.min()) >= 0.0 and float(data.x_test.max()) <= 1.0
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert torch.bincount(data.y_test, minlength=10).tolist() == [100] * 10
    assert torch.bincount(data.y_train, minlength=10).tolist() == [400] * 10


# -- torchvision loaders on tiny local files -----------------------------------------
@pytest.mark.parametrize(("name", "folder", "first_class"), [("mnist", "MNIST", "0 - zero"), ("fashion-mnist", "FashionMNIST", "T-shirt/top")])
def test_mnist_like_loaders_read_idx_files(tmp_path, name, folder, first_class):
    arrays = write_mnist(tmp_path, folder)
    data = DATASETS.create(name, root=str(tmp_path))
    assert data.name == name
    _assert_matches(data, arrays, channels=1)
    assert data.num_classes == 10 and data.classes[0] == first_class
    assert data.model_context()["input_shape"] == (1, 28, 28)


def test_cifar10_loader_reads_pickled_batches(tmp_path, monkeypatch):
    arrays, md5s = write_cifar10(tmp_path)
    _use_md5s(monkeypatch, md5s)
    data = DATASETS.create("cifar10", root=str(tmp_path))
    _assert_matches(data, arrays, channels=3)
    assert list(data.classes) == CIFAR_NAMES
    assert data.input_shape == (3, 32, 32) and len(data.mean) == 3


def test_cifar10_with_a_wrong_checksum_is_a_user_error(tmp_path, monkeypatch):
    _, md5s = write_cifar10(tmp_path)
    md5s["test_list"] = [["test_batch", "0" * 32]]
    _use_md5s(monkeypatch, md5s)
    with pytest.raises(UserError, match="cifar10"):
        DATASETS.create("cifar10", root=str(tmp_path))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_root_is_a_user_error(tmp_path, name):
    with pytest.raises(UserError, match=f"'{name}'.*--data-root"):
        DATASETS.create(name)
    with pytest.raises(UserError, match=f"'{name}'.*does not exist.*--download"):
        DATASETS.create(name, root=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_root_without_the_files_is_a_user_error(tmp_path, name):
    with pytest.raises(UserError, match=f"'{name}' not found under"):
        DATASETS.create(name, root=str(tmp_path))


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for name in ("mnist", "cifar10"):
        with pytest.raises(UserError, match=name):
            DATASETS.create(name, root=str(tmp_path / name), download=True)


# -- end to end through the command line ---------------------------------------------
SPEC = """
dataset = "mnist"
n_examples = 10

[[models]]
name = "mlp"

[[attacks]]
name = "fgsm"
eps = 0.1

[training]
epochs = 1
"""


def test_cli_run_and_report_on_a_local_mnist_folder(tmp_path, capsys):
    from bench.cli import main

    root = tmp_path / "data"
    write_mnist(root)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    run_dir = tmp_path / "run"
    rc = main(["run", "--config", str(spec_path), "--data-root", str(root), "--out", str(run_dir), "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (run_dir / "leaderboard.md").is_file() and (run_dir / "results.db").is_file()

    assert main(["report", str(run_dir), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert cells, "the report has no rows"
    for cell in cells:
        assert cell["dataset"] == "mnist"
        assert cell["n"] == 10
