"""Distributions of differentiable image transformations, for EOT (Athalye et al. 2018).

A draw applies, per image, a random rotation, translation and scale (one
affine warp), then contrast, brightness and Gaussian noise, and clips to
[0, 1]. Every operation is differentiable in the input, so the gradient of the
expected loss flows through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from bench.errors import require


@dataclass(frozen=True, kw_only=True)
class Distribution:
    rotation: float = 0.0  # degrees, drawn uniformly in [-rotation, rotation]
    translation: float = 0.0  # fraction of the image size, per axis, uniform in [-t, t]
    scale: tuple[float, float] = (1.0, 1.0)  # zoom factor, uniform in [lo, hi]
    brightness: float = 0.0  # additive, uniform in [-b, b]
    contrast: tuple[float, float] = (1.0, 1.0)  # factor around the image mean, uniform in [lo, hi]
    noise: float = 0.0  # std of additive Gaussian noise

    def __post_init__(self) -> None:
        for name in ("rotation", "translation", "brightness", "noise"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("scale", "contrast"):
            lo, hi = getattr(self, name)
            require(0 < lo <= hi, name, f"must be a range (lo, hi) with 0 < lo <= hi, got {getattr(self, name)}")

    @property
    def is_identity(self) -> bool:
        return self == Distribution()

    def sample(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        """``draws`` transformed copies of each image, stacked as (draws * B, C, H, W), draw-major."""
        batch = x.repeat(draws, *([1] * (x.dim() - 1)))
        if self.is_identity:
            return batch
        n = batch.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.empty(n, device=x.device, dtype=x.dtype).uniform_(lo, hi)

        if self.rotation or self.translation or self.scale != (1.0, 1.0):
            angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
            zoom = uniform(*self.scale)
            shift = torch.empty(n, 2, device=x.device, dtype=x.dtype).uniform_(-self.translation, self.translation) * 2
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
            batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.contrast != (1.0, 1.0):
            mean = batch.mean(dim=tuple(range(1, batch.dim())), keepdim=True)
            batch = (batch - mean) * uniform(*self.contrast).view(-1, *([1] * (batch.dim() - 1))) + mean
        if self.brightness:
            batch = batch + uniform(-self.brightness, self.brightness).view(-1, *([1] * (batch.dim() - 1)))
        if self.noise:
            batch = batch + self.noise * torch.randn_like(batch)
        return batch.clamp(0.0, 1.0)


PRESETS = {
    # small, realistic changes of viewpoint, lighting and sensor noise
    "physical": Distribution(rotation=15.0, translation=0.1, scale=(0.9, 1.1), brightness=0.1, contrast=(0.8, 1.2), noise=0.02),
    # no transformation: averages over the model's own randomness only
    "none": Distribution(),
}
FIELDS = tuple(f.name for f in fields(Distribution))
