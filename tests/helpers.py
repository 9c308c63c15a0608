"""Components that misbehave on purpose, named in test specs as ``tests.helpers:<name>``; and ``host_tensors_fail``, which
makes a tensor made without a device fail on the CPU as it would on CUDA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from attacks.base import Attack
from models.zoo import mlp


@dataclass(frozen=True, kw_only=True)
class LeakyAttack(Attack):
    """Steps twice as far as allowed: the harness must mark its jobs invalid."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + 2 * self.eps).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class ModeSwitchingAttack(Attack):
    """Leaves the model in training mode, as torchattacks can when an attack raises."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.train()
        return x.clone()


@dataclass(frozen=True, kw_only=True)
class WeightEditingAttack(Attack):
    """Changes the model's weights in place."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            next(model.parameters()).add_(0.0)
        return x.clone()


class _FailsUnderAttack(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            raise RuntimeError("this model cannot be attacked")
        return self.net(x)


def fails_under_attack(*, input_shape, num_classes, mean=None, std=None) -> nn.Module:
    """Trains and predicts fine; raises as soon as an attack asks for an input gradient."""
    return _FailsUnderAttack(mlp(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std, hidden=32))


class Quantize(nn.Module):
    """Rounds inputs to a few grey levels: no input gradient at all (a plain module, not our Preprocessing)."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


class GaussianNoise(nn.Module):
    """Adds fresh noise on every call, in eval mode too: a randomized defense."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


def quantized_cnn(*, input_shape, num_classes, mean=None, std=None, levels: int = 4) -> nn.Module:
    """small-cnn behind input quantization: looks robust to plain PGD, falls to BPDA."""
    from models.zoo import small_cnn

    return nn.Sequential(Quantize(levels), small_cnn(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std))


def noisy_cnn(*, input_shape, num_classes, mean=None, std=None, sigma: float = 0.3) -> nn.Module:
    """small-cnn behind Gaussian input noise: randomized, needs EOT."""
    from models.zoo import small_cnn

    return nn.Sequential(GaussianNoise(sigma), small_cnn(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std))


def two_channel_data():
    """A data set of 2-channel 5x5 inputs: not images JPEG can encode."""
    from bench.data import Dataset

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(120, 2, 5, 5, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    return Dataset("two-channel", x[:80], y[:80], x[80:], y[80:], ["low", "high"])


@dataclass(frozen=True, kw_only=True)
class RaisingAttack(Attack):
    """Crashes: its job fails, and the cascade steps after it must not run on all points."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this attack always crashes")


def _tensors(value: object) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _tensors(item)


class MetaMeetsReal(TorchFunctionMode):
    """Raises where a meta tensor and a real one meet in one call (an op, an index, an assignment)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {t.device.type for t in _tensors((args, kwargs))}
        if "meta" in devices and len(devices) > 1:
            raise RuntimeError(f"{getattr(func, '__name__', func)}: a tensor made without a device (on meta here) meets one on {min(devices - {'meta'})}")
        return func(*args, **kwargs)


@contextmanager
def host_tensors_fail() -> Iterator[None]:
    """Inside: a tensor made without an explicit device is a meta tensor, and using it with real tensors raises."""
    with torch.device("meta"), MetaMeetsReal():
        yield
