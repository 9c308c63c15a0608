"""Median smoothing of the input (feature squeezing, Xu et al. 2018): treated as non-differentiable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.bpda import Preprocessing
from bench.errors import UserError, require
from defenses import DEFENSES
from defenses.base import PreprocessingDefense, require_images


class Median(Preprocessing):
    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel // 2
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if min(x.shape[-2:]) > pad else "replicate")
        patches = padded.unfold(2, self.kernel, 1).unfold(3, self.kernel, 1)
        return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


@DEFENSES.register("median", description="median filter over a kernel x kernel window (feature squeezing, Xu et al. 2018)")
@dataclass(frozen=True, kw_only=True)
class MedianDefense(PreprocessingDefense):
    kernel: int = 3  # window side in pixels (odd)

    def __post_init__(self) -> None:
        require(isinstance(self.kernel, int) and self.kernel >= 1 and self.kernel % 2 == 1, "kernel", f"must be an odd integer >= 1, got {self.kernel!r}")

    def check(self, input_shape: Sequence[int]) -> None:
        require_images("median", input_shape, channels=range(1, 1025))
        if min(input_shape[1:]) < self.kernel:
            raise UserError(f"defense 'median': kernel {self.kernel} is larger than the images {tuple(input_shape)}")

    def module(self) -> Median:
        return Median(self.kernel)
