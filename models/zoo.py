"""Built-in models for the embedded data: small, fast on a CPU, normalization inside.

Every factory takes the dataset's ``input_shape`` (C, H, W) and
``num_classes``, and its per-channel ``mean``/``std``, so the model accepts
images in [0, 1] as every attack expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.errors import require
from models import MODELS


class Normalize(nn.Module):
    """(x - mean) / std per channel, as the first layer of a model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _check(**sizes: float) -> None:
    """Layer sizes >= 1 and dropout in [0, 1): refused with the parameter's name, before a layer is built."""
    for name, value in sizes.items():
        if name == "dropout":
            require(0 <= value < 1, name, f"must be in [0, 1), got {value}")
        else:
            require(isinstance(value, int) and value >= 1, name, f"must be an integer >= 1, got {value!r}")


def _stats(channels: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[list[float], list[float]]:
    return list(mean or [0.5] * channels), list(std or [0.5] * channels)


@MODELS.register("small-cnn", description="two 3x3 conv layers, max-pool, two dense layers (~150k parameters on digits)")
def small_cnn(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    width: int = 32,  # channels of the first conv layer (the second has twice as many)
    hidden: int = 128,  # units of the hidden dense layer
    dropout: float = 0.0,  # dropout before each dense layer (MC dropout needs > 0)
) -> nn.Module:
    _check(width=width, hidden=hidden, dropout=dropout)
    channels, height, width_px = input_shape
    flat = 2 * width * (height // 2) * (width_px // 2)
    return nn.Sequential(
        Normalize(*_stats(channels, mean, std)),
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


@MODELS.register("mlp", description="a multilayer perceptron on the flattened image (two hidden layers by default)")
def mlp(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    hidden: int = 256,  # units of each hidden layer
    depth: int = 2,  # hidden layers (Zhang et al. 2017 use 1x512 and 3x512)
    dropout: float = 0.0,  # dropout after each hidden layer (MC dropout needs > 0)
) -> nn.Module:
    _check(hidden=hidden, depth=depth, dropout=dropout)
    features = 1
    for size in input_shape:
        features *= size
    layers: list[nn.Module] = [Normalize(*_stats(input_shape[0], mean, std)), nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout)]
        features = hidden
    return nn.Sequential(*layers, nn.Linear(features, num_classes))


@MODELS.register("cnn1d", description="three strided 1-D conv layers over the flattened signal, then a dense layer (MNIST-1D's CNN)")
def cnn1d(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 25,  # channels of each conv layer
    kernel: int = 5,  # kernel size of each conv layer (stride 2)
    dropout: float = 0.0,  # dropout before the dense layer
) -> nn.Module:
    _check(channels=channels, kernel=kernel, dropout=dropout)
    inputs, length = input_shape[0], 1
    for size in input_shape[1:]:
        length *= size  # an image is read row by row as one signal; MNIST-1D is (1, 1, 40)
    layers: list[nn.Module] = [Normalize(*_stats(inputs, mean, std)), nn.Flatten(start_dim=2)]
    for _ in range(3):
        layers += [nn.Conv1d(inputs, channels, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
        inputs, length = channels, (length + 2 * (kernel // 2) - kernel) // 2 + 1
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * length, num_classes))
