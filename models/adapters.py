"""Model families served by prefix: ``timm:<name>`` and ``torchvision:<name>``.

Both are adapted to the dataset (input channels, number of classes) and wrapped
so the model takes [0, 1] images. Pretrained weights only when asked
(``pretrained = true``); offline, point ``pretrained_file`` at a local file.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UserError
from models import MODELS
from models.zoo import Normalize


class Normalized(nn.Module):
    """``net(normalize(x))``; a checkpoint of the bare ``net`` loads into it too."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], channels: int | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.channels = channels  # repeat a grey channel to this many, when set

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.channels is not None and x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        return self.net(x)


def _fit(values: Sequence[float], channels: int) -> list[float]:
    values = list(values)
    return values if len(values) == channels else [sum(values) / len(values)] * channels


def timm_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Any timm architecture, with ``in_chans`` and ``num_classes`` set from the data."""
    import timm
    from safetensors import SafetensorError

    if not timm.is_model(name):  # an architecture, optionally with a pretrained tag; never a wildcard
        raise UserError(f"unknown timm model '{name}'; try: bench list models 'timm:{name[:3]}*'")
    channels = input_shape[0]
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise UserError(f"timm model '{name}': pretrained_file '{pretrained_file}' does not exist")
        kwargs["pretrained_cfg_overlay"] = {"file": pretrained_file}
        pretrained = True
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=channels, **kwargs)
    except TypeError as error:
        raise UserError(f"timm model '{name}': {error}") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as error:  # unsafe (weights_only), corrupt, or wrong shapes
        if pretrained_file is None:
            raise
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise UserError(f"timm model '{name}': cannot load pretrained_file '{pretrained_file}': {reason}") from None
    if pretrained:
        config = net.pretrained_cfg
        mean, std = _fit(config.get("mean", (0.5,)), channels), _fit(config.get("std", (0.5,)), channels)
    return Normalized(net, mean or [0.5] * channels, std or [0.5] * channels)


def list_timm(pattern: str) -> Iterable[str]:
    import timm

    return timm.list_models(pattern)


def torchvision_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A torchvision classification architecture; grey inputs are repeated to three channels."""
    import torchvision

    if name not in torchvision.models.list_models(torchvision.models):
        raise UserError(f"unknown torchvision model '{name}'; try: bench list models 'torchvision:*'")
    if weights is not None:
        net = torchvision.models.get_model(name, weights=weights, **kwargs)
        net = _replace_head(net, num_classes)
    else:
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    channels = input_shape[0]
    return Normalized(net, _fit(mean or [0.5], 3), _fit(std or [0.5], 3), channels=3 if channels != 3 else None)


def _replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    for attr in ("fc", "head", "classifier"):
        layer = getattr(net, attr, None)
        if isinstance(layer, nn.Linear):
            setattr(net, attr, nn.Linear(layer.in_features, num_classes))
            return net
    raise UserError(f"cannot find the classification head of {type(net).__name__} to resize it")


def list_torchvision(pattern: str) -> Iterable[str]:
    import fnmatch

    import torchvision

    return [n for n in torchvision.models.list_models(torchvision.models) if fnmatch.fnmatchcase(n, pattern)]


MODELS.register_prefix("timm", timm_model, lister=list_timm, description="any timm architecture")
MODELS.register_prefix("torchvision", torchvision_model, lister=list_torchvision, description="any torchvision classifier")
