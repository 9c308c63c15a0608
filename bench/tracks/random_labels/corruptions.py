"""What the random-label track does to a training set, registered by name (Zhang et al. 2017, section 2).

Every corruption takes ``p``, the fraction of points it corrupts, and a seeded
``torch.Generator``. The draws are nested: each training point gets one
uniform number u, and the points with u < p are corrupted, so the subset at
p = 0.25 lies inside the one at p = 0.5, and p = 1 corrupts every point; the
replacement values (random labels, permutations, noise) are drawn for every
point once, whatever p is. The same seed gives the same subset and values.

* ``labels``: the label of each selected point is redrawn uniformly from the
  classes (it may land on the true one, as in the paper; ``exclude_true``
  draws among the other classes only). Test labels stay true.
* ``shuffled-pixels``: one fixed permutation of the pixel positions, the same
  for every image, train and test (a network without spatial priors, such as
  an MLP, cannot tell; a CNN can).
* ``random-pixels``: a new permutation for every image, train and test.
* ``gaussian``: each selected image replaced by Gaussian noise with the
  training images' per-channel mean and standard deviation (not clipped, so
  mean and variance match), train and test.

Input corruptions apply to the test set at the same ``p`` (its own draws),
so test accuracy asks whether what was learned carries over to inputs of the
same kind; label corruption never touches the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.data import Dataset
from bench.errors import require
from bench.registry import Registry

CORRUPTIONS: Registry = Registry("corruption", entry_points="frontier_bench.corruptions", import_paths=True)


@dataclass(frozen=True, eq=False)
class Corrupted:
    """A corrupted copy of a dataset: which training points were selected and which now differ from the original."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor  # always the true test labels
    selected: torch.Tensor  # bool per training point: chosen for corruption (u < p)
    changed: torch.Tensor  # bool per training point: its label or input differs from the original
    record: dict[str, Any] = field(default_factory=dict)  # what was drawn, as plain data (stored with the job)


class Corruption:
    """Base class: ``corrupt(data, p, generator)``; the nested selection is shared."""

    on_inputs = True  # corrupts inputs (train and test) rather than labels

    def corrupt(self, data: Dataset, p: float, generator: torch.Generator) -> Corrupted:
        require(isinstance(p, int | float) and 0 <= p <= 1, "p", f"must be a number in [0, 1], got {p!r}")
        selected = torch.rand(len(data.y_train), generator=generator) < p
        if not self.on_inputs:
            labels = torch.where(selected, self.labels(data, generator), data.y_train)
            changed, drawn = labels != data.y_train, {"labels": labels.tolist()}
            x_train, x_test = data.x_train, data.x_test
        else:
            labels, changed = data.y_train, selected.clone()
            x_train, drawn = self._inputs(data.x_train, selected, data, generator)
            test_selected = torch.rand(len(data.y_test), generator=generator) < p
            x_test, _ = self._inputs(data.x_test, test_selected, data, generator, drawn)
        record = {"p": p, "selected": int(selected.sum()), "changed": int(changed.sum()), "indices": selected.nonzero().flatten().tolist(), **drawn}
        return Corrupted(x_train, labels, x_test, data.y_test, selected, changed, record)

    def _inputs(
        self, x: torch.Tensor, selected: torch.Tensor, data: Dataset, generator: torch.Generator, drawn: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        replaced, drawn = self.inputs(x, data, generator, drawn)
        return torch.where(selected.view(-1, *([1] * (x.dim() - 1))), replaced, x), drawn

    def labels(self, data: Dataset, generator: torch.Generator) -> torch.Tensor:
        """A new label for every training point (only the selected ones are used)."""
        raise NotImplementedError

    def inputs(self, x: torch.Tensor, data: Dataset, generator: torch.Generator, drawn: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Every image of ``x`` corrupted (only the selected ones are used), and what was drawn that the test set must share."""
        raise NotImplementedError


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) as (N, C, H*W): a permutation moves pixel positions, the same one in every channel."""
    return x.reshape(len(x), x.shape[1], -1)


class Labels(Corruption):
    on_inputs = False

    def __init__(self, exclude_true: bool = False) -> None:
        require(isinstance(exclude_true, bool), "exclude_true", f"must be true or false, got {exclude_true!r}")
        self.exclude_true = exclude_true

    def labels(self, data: Dataset, generator: torch.Generator) -> torch.Tensor:
        classes = data.num_classes
        if self.exclude_true:  # uniform among the other classes: every selected label is wrong
            return (data.y_train + torch.randint(1, classes, data.y_train.shape, generator=generator)) % classes
        return torch.randint(0, classes, data.y_train.shape, generator=generator)


class ShuffledPixels(Corruption):
    def inputs(self, x: torch.Tensor, data: Dataset, generator: torch.Generator, drawn: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        if drawn is None:
            drawn = {"permutation": torch.randperm(_pixels(x).shape[-1], generator=generator).tolist()}
        permutation = torch.tensor(drawn["permutation"])
        return _pixels(x)[..., permutation].reshape(x.shape), drawn


class RandomPixels(Corruption):
    def inputs(self, x: torch.Tensor, data: Dataset, generator: torch.Generator, drawn: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        flat = _pixels(x)
        permutations = torch.rand(len(x), flat.shape[-1], generator=generator).argsort(dim=1)  # one per image
        index = permutations.unsqueeze(1).expand(-1, flat.shape[1], -1)
        return flat.gather(2, index).reshape(x.shape), drawn or {}


class Gaussian(Corruption):
    def inputs(self, x: torch.Tensor, data: Dataset, generator: torch.Generator, drawn: dict[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
        if drawn is None:
            drawn = {"mean": data.x_train.mean(dim=(0, 2, 3)).tolist(), "std": data.x_train.std(dim=(0, 2, 3)).tolist()}
        mean, std = (torch.tensor(drawn[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
        return mean + std * torch.randn(x.shape, generator=generator), drawn


@CORRUPTIONS.register("labels", description="each selected training label redrawn uniformly at random (p = 1: random labels)")
def labels(*, exclude_true: bool = False) -> Corruption:  # exclude_true: draw among the other classes, so every selected label is wrong
    return Labels(exclude_true)


@CORRUPTIONS.register("shuffled-pixels", description="one fixed permutation of the pixels, the same for every image (train and test)")
def shuffled_pixels() -> Corruption:
    return ShuffledPixels()


@CORRUPTIONS.register("random-pixels", description="a new permutation of the pixels for every image (train and test)")
def random_pixels() -> Corruption:
    return RandomPixels()


@CORRUPTIONS.register("gaussian", description="images replaced by Gaussian noise with the training images' per-channel mean and std")
def gaussian() -> Corruption:
    return Gaussian()
