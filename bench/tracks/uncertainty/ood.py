"""Out-of-distribution sets that need no download, registered by name.

Each set splits the evaluation points into in-distribution inputs and OOD
inputs. ``held-out-classes`` needs a model that never saw those classes: it
names them in ``held_out`` and the track trains (and caches) such a model on
the other classes; the other sets use the standard model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.errors import require
from bench.registry import Registry

OOD_SETS: Registry = Registry("ood set", entry_points="frontier_bench.ood")


@dataclass(frozen=True)
class OodSet:
    """``make(x, y, num_classes, generator)`` -> (in-distribution x, its labels, OOD x)."""

    kind: str
    classes: tuple[int, ...] | None = None  # held-out-classes: the classes kept out of training (None: the upper half)
    sigma: float = 0.0

    def held_out(self, num_classes: int) -> tuple[int, ...]:
        """The classes the model must not train on (none for sets that use the standard model)."""
        if self.kind != "held-out-classes":
            return ()
        return self.classes if self.classes is not None else tuple(range((num_classes + 1) // 2, num_classes))

    def make(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.kind == "held-out-classes":
            out = torch.isin(y, torch.tensor(self.held_out(num_classes), device=y.device))
            return x[~out], y[~out], x[out]
        if self.kind == "inverted":
            return x, y, 1 - x
        noise = torch.rand if self.kind == "uniform-noise" else torch.randn
        drawn = noise(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if self.kind == "gaussian-noise":
            drawn = (x.mean() + self.sigma * drawn).clamp(0, 1)
        return x, y, drawn


@OOD_SETS.register("held-out-classes", description="test classes the model never trained on (default: the upper half, 5-9)")
def held_out_classes(*, classes: list[int] | None = None) -> OodSet:
    if classes is not None:
        require(isinstance(classes, list | tuple) and len(classes) > 0, "classes", f"must be a non-empty list of class indices, got {classes!r}")
        require(all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes), "classes", f"must be class indices >= 0, got {classes!r}")
        require(len(set(classes)) == len(classes), "classes", f"lists a class twice: {classes!r}")
    return OodSet("held-out-classes", tuple(sorted(classes)) if classes is not None else None)


@OOD_SETS.register("inverted", description="the test images inverted (1 - x)")
def inverted() -> OodSet:
    return OodSet("inverted")


@OOD_SETS.register("uniform-noise", description="uniform noise images, U(0, 1) per pixel")
def uniform_noise() -> OodSet:
    return OodSet("uniform-noise")


@OOD_SETS.register("gaussian-noise", description="Gaussian noise images around the mean pixel, clipped to [0, 1]")
def gaussian_noise(*, sigma: float = 0.5) -> OodSet:
    require(isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma > 0, "sigma", f"must be a number > 0, got {sigma!r}")
    return OodSet("gaussian-noise", sigma=float(sigma))
