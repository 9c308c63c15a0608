"""``none``: the plain softmax of one model, the baseline (no epistemic part)."""

from __future__ import annotations

from dataclasses import dataclass

from models.estimators import ESTIMATORS
from models.estimators.base import Estimator


@ESTIMATORS.register("none", description="the plain softmax of one model (baseline)")
@dataclass(frozen=True)
class Softmax(Estimator):
    """The model's own softmax: total entropy only; aleatoric = total, epistemic = 0."""
