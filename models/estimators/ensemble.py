"""``ensemble``: M members trained from different seeds, their softmax averaged (Lakshminarayanan et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.errors import require
from models.estimators import ESTIMATORS
from models.estimators.base import Estimator


@ESTIMATORS.register("ensemble", description="deep ensemble: M members from different seeds (each cached like any trained model)")
@dataclass(frozen=True)
class Ensemble(Estimator):
    size: int = 5  # members, each trained from its own seed

    has_epistemic: ClassVar[bool] = True

    def __post_init__(self) -> None:
        require(isinstance(self.size, int) and not isinstance(self.size, bool), "size", f"must be an integer, got {self.size!r}")
        require(self.size >= 2, "size", f"must be >= 2 (an ensemble of one is 'none'), got {self.size}")

    def members(self) -> int:
        return self.size
