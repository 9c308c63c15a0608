"""Dataset shifts, registered by name: ``SHIFTS.create(name, level=...)`` is a transform of a batch of images.

Scaled to the embedded data after Ovadia et al. 2019 (rotated and
translated MNIST): ``rotate`` turns images by ``level`` degrees (bilinear,
zero fill); ``roll`` shifts them cyclically right by ``level`` x the image
width, rounded to whole pixels (0.125 on 8x8 digits is one pixel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.errors import require
from bench.registry import Registry

Shift = Callable[[torch.Tensor], torch.Tensor]
SHIFTS: Registry = Registry("shift", entry_points="frontier_bench.shifts")


def _number(level: object) -> float:
    require(isinstance(level, int | float) and not isinstance(level, bool), "level", f"must be a number, got {level!r}")
    return float(level)  # type: ignore[arg-type]


@SHIFTS.register("rotate", unit="degrees", description="rotation by `level` degrees (Ovadia et al.: 15 to 180 in steps of 15)")
def rotate(*, level: float) -> Shift:
    degrees = _number(level)
    require(0 < degrees <= 360, "level", f"must be in (0, 360] degrees, got {level}")

    def shift(x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2.functional import rotate as turn

        return turn(x, degrees, interpolation=InterpolationMode.BILINEAR).clamp(0, 1)

    return shift


@SHIFTS.register("roll", unit="fraction of the width", description="cyclic horizontal pixel roll by `level` x the image width")
def roll(*, level: float) -> Shift:
    fraction = _number(level)
    require(0 < fraction < 1, "level", f"must be a fraction of the width in (0, 1), got {level}")

    def shift(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, shifts=max(1, round(fraction * x.shape[-1])), dims=-1)

    return shift
