"""Bit-depth reduction, the feature squeezing of Xu et al. 2018: rounds away the gradient, needs BPDA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.bpda import Preprocessing
from bench.errors import require
from defenses import DEFENSES
from defenses.base import PreprocessingDefense, require_images


class BitDepth(Preprocessing):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.levels = 2**bits - 1

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


@DEFENSES.register("bit-depth", description="bit-depth reduction to a few bits per pixel (feature squeezing, Xu et al. 2018)")
@dataclass(frozen=True, kw_only=True)
class BitDepthDefense(PreprocessingDefense):
    bits: int = 2  # bits per pixel kept (2: 4 grey levels)

    def __post_init__(self) -> None:
        require(isinstance(self.bits, int) and 1 <= self.bits <= 8, "bits", f"must be an integer in 1..8, got {self.bits!r}")

    def check(self, input_shape: Sequence[int]) -> None:
        require_images("bit-depth", input_shape, channels=range(1, 1025))

    def module(self) -> BitDepth:
        return BitDepth(self.bits)
