"""``cell``: a small CNN (or MLP) described by a handful of choices, the architecture space of the NAS track's ``cells`` space.

``blocks`` convolution blocks (0: an MLP on the pixels), each ``width``
channels wide with ``kernel`` x ``kernel`` convolutions, the ``activation``,
an optional residual connection (``skip``; a 1x1 convolution when the channel
count changes) and 2x2 ``pooling`` (max or average) while the image is at
least 2 pixels wide; then a linear classifier on the flattened features. A model the search finds is a
spec line anywhere: ``{name = "cell", blocks = 2, width = 16, ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bench.errors import require
from models import MODELS
from models.zoo import Normalize

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class Block(nn.Module):
    """conv -> activation (+ the block's input, projected when its channels differ) -> 2x2 pooling."""

    def __init__(self, channels: int, width: int, kernel: int, activation: str, skip: bool, pool: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, kernel, padding=kernel // 2)
        self.act = ACTIVATIONS[activation]()
        self.shortcut = None if not skip else nn.Identity() if channels == width else nn.Conv2d(channels, width, 1)
        self.pool = POOLINGS[pool](2) if pool else nn.Identity()

    def forward(self, x):
        y = self.act(self.conv(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.pool(y)


@MODELS.register("cell", description="a CNN of 0-4 conv blocks (0: an MLP) by width, kernel, activation, skip and pooling: the NAS cells space")
def cell(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    blocks: int = 2,  # convolution blocks (0: an MLP with one hidden layer of 4 x width units)
    width: int = 16,  # channels of every block
    kernel: int = 3,  # odd convolution size
    activation: str = "relu",  # relu | gelu | tanh
    skip: bool = False,  # residual connection around each block's convolution
    pooling: str = "max",  # max | avg: 2x2 pooling after each block while the image is at least 2 pixels wide
) -> nn.Module:
    require(isinstance(blocks, int) and 0 <= blocks <= 4, "blocks", f"must be an integer in 0..4, got {blocks!r}")
    require(isinstance(width, int) and width >= 1, "width", f"must be an integer >= 1, got {width!r}")
    require(isinstance(kernel, int) and kernel >= 1 and kernel % 2 == 1, "kernel", f"must be an odd integer >= 1, got {kernel!r}")
    require(activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    require(pooling in POOLINGS, "pooling", f"must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    require(isinstance(skip, bool), "skip", f"must be true or false, got {skip!r}")
    channels, height, width_px = input_shape
    layers: list[nn.Module] = [Normalize(list(mean or [0.5] * channels), list(std or [0.5] * channels))]
    if blocks == 0:
        hidden = 4 * width
        layers += [nn.Flatten(), nn.Linear(channels * height * width_px, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, num_classes)]
        return nn.Sequential(*layers)
    h, w = height, width_px
    for i in range(blocks):
        pool = pooling if min(h, w) >= 2 else None
        layers.append(Block(channels if i == 0 else width, width, kernel, activation, skip, pool))
        h, w = (h // 2, w // 2) if pool else (h, w)
    layers += [nn.Flatten(), nn.Linear(width * h * w, num_classes)]
    return nn.Sequential(*layers)
