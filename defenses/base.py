"""What a defense is to the harness: an optional training objective, an optional wrapper, declared properties.

* ``training_loss(model, x, y)``: the per-batch objective that replaces
  cross-entropy when the model is trained (adversarial training, noise
  augmentation). Such a model is cached by a recipe that includes the defense.
* ``wrap(model)``: the model the attacks face at inference (preprocessing,
  smoothing). Preprocessing is an ``attacks.bpda.Preprocessing`` module, so
  BPDA finds it by itself.
* ``randomized`` / ``differentiable``: declared, so the harness adds the
  adaptive attack a fair evaluation needs (EOT, BPDA, both) and flags a
  declaration that the model contradicts.
* ``check(input_shape)``: a defense that cannot apply to the data raises a
  ``UserError`` before any compute starts.
* ``certify(model, x, y)``: for certified defenses, a certified L2 radius per
  example (negative: abstained or wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attacks.bpda import Preprocessing
from bench.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Defense:
    @property
    def randomized(self) -> bool:
        return False

    @property
    def differentiable(self) -> bool:
        return True

    @property
    def trains(self) -> bool:
        return type(self).training_loss is not Defense.training_loss

    @property
    def certifies(self) -> bool:
        return type(self).certify is not Defense.certify

    @property
    def wraps(self) -> bool:
        """Whether it changes the model at inference (and so its declarations describe what the attacks face)."""
        return type(self).wrap is not Defense.wrap

    def check(self, input_shape: Sequence[int]) -> None:
        """Raise ``UserError`` if the defense cannot apply to inputs of this shape."""

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def certify(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class PreprocessingDefense(Defense):
    """An inference-time input transformation in front of the model."""

    @property
    def differentiable(self) -> bool:
        return False

    def module(self) -> Preprocessing:
        raise NotImplementedError

    def wrap(self, model: nn.Module) -> nn.Module:
        return nn.Sequential(self.module(), model)


def require_images(name: str, input_shape: Sequence[int], channels: Sequence[int] = (1, 3)) -> None:
    """One line naming the defense when the data are not images it can process."""
    if len(input_shape) != 3 or input_shape[0] not in channels:
        raise UserError(f"defense '{name}' needs images with {' or '.join(map(str, channels))} channels (C, H, W); the data have shape {tuple(input_shape)}")
