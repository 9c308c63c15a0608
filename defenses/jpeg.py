"""JPEG compression of the input (Dziugaite et al. 2016; Guo et al. 2018): not differentiable, needs BPDA."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.bpda import Preprocessing
from bench.errors import require
from defenses import DEFENSES
from defenses.base import PreprocessingDefense, require_images

# torchvision 0.29 deprecates its JPEG codec (for torchcodec); the defense keeps using it and keeps the warning to itself
_CODEC_DEPRECATED = "The image decoding and encoding capabilities of TorchVision are deprecated"


class JPEG(Preprocessing):
    def __init__(self, quality: int) -> None:
        super().__init__()
        self.quality = quality

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.io import decode_jpeg, encode_jpeg

        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CODEC_DEPRECATED, category=DeprecationWarning)
            decoded = decode_jpeg(encode_jpeg(list(pixels), quality=self.quality))
        return torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255


@DEFENSES.register("jpeg", description="JPEG compression of the input (quality); not differentiable")
@dataclass(frozen=True, kw_only=True)
class JPEGDefense(PreprocessingDefense):
    quality: int = 75  # JPEG quality, 1-100 (lower: stronger compression)

    def __post_init__(self) -> None:
        require(isinstance(self.quality, int) and 1 <= self.quality <= 100, "quality", f"must be an integer in 1..100, got {self.quality!r}")

    def check(self, input_shape: Sequence[int]) -> None:
        require_images("jpeg", input_shape)

    def module(self) -> JPEG:
        return JPEG(self.quality)
