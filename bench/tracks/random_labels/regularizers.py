"""The explicit regularizers of Zhang et al. (2017, section 3): weight decay, dropout and data augmentation, each on or off.

A ``[[regularizers]]`` table switches any of them on for every model::

    [[regularizers]]            # label "none"
    [[regularizers]]
    weight_decay = 5e-4         # the optimizer's weight decay (replaces spec.training.weight_decay)
    dropout = 0.5               # passed to the model factory's ``dropout`` (or timm's ``drop_rate``) parameter
    augmentation = true         # random translations by up to max(1, width // 8) pixels (or a number of pixels)

Augmentation runs on the device, batched: each image is shifted by its own
random offset, the border filled with zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import UserError, did_you_mean
from bench.fields import ModelSpec, fail

DROPOUT_PARAMETERS = ("dropout", "drop_rate")  # the zoo's, timm's
KNOWN = ("weight_decay", "dropout", "augmentation", "label")


@dataclass(frozen=True)
class Regularizers:
    """Which explicit regularizers are on (None or 0 / False: off)."""

    weight_decay: float | None = None
    dropout: float | None = None
    augmentation: bool | int = False  # True: shifts of up to max(1, width // 8) pixels; a number: that many
    label: str = ""

    @property
    def name(self) -> str:
        """'none', or the ones that are on: 'weight_decay=0.0005+dropout=0.5+augmentation'."""
        if self.label:
            return self.label
        parts = [f"weight_decay={self.weight_decay:g}" if self.weight_decay else "", f"dropout={self.dropout:g}" if self.dropout else ""]
        if self.augmentation:
            parts.append("augmentation" if self.augmentation is True else f"augmentation={self.augmentation}")
        return "+".join(p for p in parts if p) or "none"

    @property
    def identity(self) -> list[Any]:
        return [self.weight_decay, self.dropout, self.augmentation]

    def shift(self, input_shape: Sequence[int]) -> int:
        """The largest translation in pixels (0: no augmentation)."""
        if self.augmentation is True:
            return max(1, input_shape[-1] // 8)
        return int(self.augmentation)

    def model(self, model: ModelSpec, registry: Any) -> ModelSpec:
        """``model`` with the dropout switched on through its factory's parameter (unchanged when dropout is off)."""
        if not self.dropout:
            return model
        return replace(model, params={**model.params, _dropout_parameter(model, registry): self.dropout})


def _dropout_parameter(model: ModelSpec, registry: Any) -> str:
    from bench.registry import accepted_parameters

    accepted, open_ended = accepted_parameters(registry.factory(model.factory))
    for name in DROPOUT_PARAMETERS:
        if name in model.params:
            raise UserError(f"model '{model.label}' sets {name} itself; leave it out of spec.models to switch it with the regularizers")
        if name in accepted:
            return name
    if open_ended and model.name.startswith("timm:"):
        return "drop_rate"
    raise UserError(f"model '{model.label}' takes no dropout parameter ({' or '.join(DROPOUT_PARAMETERS)}), so dropout cannot be switched on")


def regularizers_field(raw: Any, models: Sequence[ModelSpec]) -> tuple[Regularizers, ...]:
    """``[[regularizers]]`` (default: one entry, none on), each checked against every model (dropout needs a parameter)."""
    from bench.catalog import registry

    if raw is None:
        return (Regularizers(),)
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise fail("spec.regularizers", "must be a non-empty list of tables ([[regularizers]] in TOML)")
    found = []
    for i, item in enumerate(raw):
        path = f"spec.regularizers[{i}]"
        if not isinstance(item, Mapping):
            raise fail(path, f"must be a table, got {item!r}")
        for key in item:
            if key not in KNOWN:
                raise fail(f"{path}.{key}", f"unknown field{did_you_mean(key, KNOWN)}; fields: {', '.join(KNOWN)}")
        decay, dropout, augmentation, label = (item.get(k) for k in KNOWN)
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < math.inf):
            raise fail(f"{path}.weight_decay", f"must be a finite number >= 0, got {decay!r}")
        if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1):
            raise fail(f"{path}.dropout", f"must be a number in [0, 1), got {dropout!r}")
        augmentation = False if augmentation is None else augmentation
        if not isinstance(augmentation, bool) and not (isinstance(augmentation, int) and augmentation >= 0):
            raise fail(f"{path}.augmentation", f"must be true, false or a number of pixels >= 0, got {augmentation!r}")
        if label is not None and (not isinstance(label, str) or not label):
            raise fail(f"{path}.label", f"must be a non-empty string, got {label!r}")
        entry = Regularizers(float(decay) if decay is not None else None, float(dropout) if dropout else None, augmentation, label or "")
        for j, model in enumerate(models):
            try:
                entry.model(model, registry("models"))
            except UserError as error:
                raise fail(f"{path}.dropout", f"{error} (spec.models[{j}])") from None
        found.append(entry)
    names = [r.name for r in found]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise fail(f"spec.regularizers[{i}]", f"'{name}' is listed twice")
    return tuple(found)


def translate(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of (N, C, H, W) moved by its own offset in [-shift, shift] per axis (zeros fill in); an axis of size 1 stays put."""
    n, channels, height, width = x.shape
    sy, sx = (shift if height > 1 else 0), (shift if width > 1 else 0)
    padded = F.pad(x, (sx, sx, sy, sy))
    dy = torch.randint(0, 2 * sy + 1, (n, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * sx + 1, (n, 1), generator=generator, device=x.device)
    rows = (dy + torch.arange(height, device=x.device)).view(n, 1, height, 1)
    cols = (dx + torch.arange(width, device=x.device)).view(n, 1, 1, width)
    return padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(channels, device=x.device).view(1, channels, 1, 1), rows, cols]
