"""``cells``: a small CNN/MLP space of our own, trained live on the run's images (the header's ``dataset``).

Six choices: ``blocks`` (0 is an MLP with one hidden layer), ``widths``,
``kernels``, ``activations``, ``skip`` (a residual connection per block) and
``pooling``; the model is the zoo's ``cell`` (``models/cell.py``), so a picked
architecture is a spec line of any track. An MLP has no kernel, skip or
pooling: those choices collapse into one key. The default grid is 150
distinct architectures, each trained in about a second on digits with the
track's default 8 epochs (1 thread); their validation accuracy spans 20-97 %.

Every architecture is trained with the harness's training code (``bench.training``,
cached by recipe: a second run, or another search, trains nothing) on the
training split less a fixed, stratified validation fifth, and measured on:

- validation and test accuracy (searches see validation only);
- robust accuracy under PGD (Linf, ``eps``, ``attack_steps`` steps, the
  adversarial track's attack) on validation and test;
- parameters, and latency (median ms per batch of the header's
  ``batch_size``, one thread; a wall-clock number, not reproduced exactly).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from bench.errors import require
from bench.tracks.nas.spaces import Arch, SearchSpace, checked_options

VALIDATION = 0.2  # of the training split, fixed (random_state 0): what searches see; never trained on
LATENCY_REPEATS = 5


class Cells(SearchSpace):
    tabular = False
    measures = frozenset({"accuracy", "robust", "params", "latency"})

    def __init__(
        self,
        *,
        header_dataset: str = "digits",  # the spec header's dataset (filled in by the track)
        blocks: Sequence[int] = (0, 1, 2, 3),  # conv blocks (0: an MLP)
        widths: Sequence[int] = (8, 16, 32),  # channels per block (an MLP: 4 x width hidden units)
        kernels: Sequence[int] = (3, 5),  # odd convolution sizes
        activations: Sequence[str] = ("relu", "tanh"),  # relu | gelu | tanh
        skip: Sequence[bool] = (False, True),  # residual connection per block
        pooling: Sequence[str] = ("max", "avg"),  # 2x2 pooling after each block
        eps: float = 0.1,  # Linf radius of the PGD attack behind robust accuracy (images in [0, 1])
        attack_steps: int = 10,  # PGD steps
        train_seeds: int = 1,  # trainings per architecture (seeds 0, 1, ...); the table holds their mean
    ) -> None:
        self.dataset = header_dataset
        for name, values in (("blocks", blocks), ("widths", widths), ("kernels", kernels)):
            checked_options(list(values), name)
            for value in values:
                require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, name, f"must list integers >= 0, got {value!r}")
        require(all(b <= 4 for b in blocks), "blocks", f"must be in 0..4, got {list(blocks)}")
        require(all(w >= 1 for w in widths), "widths", f"must be >= 1, got {list(widths)}")
        require(all(k % 2 == 1 for k in kernels), "kernels", f"must be odd, got {list(kernels)}")
        from models.cell import ACTIVATIONS, POOLINGS

        self.dimensions = (
            ("blocks", tuple(blocks)),
            ("width", tuple(widths)),
            ("kernel", tuple(kernels)),
            ("activation", checked_options(list(activations), "activations", list(ACTIVATIONS))),
            ("skip", checked_options(list(skip), "skip", [False, True])),
            ("pooling", checked_options(list(pooling), "pooling", list(POOLINGS))),
        )
        require(isinstance(eps, int | float) and not isinstance(eps, bool) and 0 < eps <= 1, "eps", f"must be in (0, 1], got {eps!r}")
        require(isinstance(attack_steps, int) and attack_steps >= 1, "attack_steps", f"must be an integer >= 1, got {attack_steps!r}")
        require(isinstance(train_seeds, int) and train_seeds >= 1, "train_seeds", f"must be an integer >= 1, got {train_seeds!r}")
        self.eps, self.attack_steps, self.train_seeds = float(eps), attack_steps, train_seeds

    def params_of(self, arch: Arch) -> dict[str, Any]:
        """The ``cell`` model's parameters of an architecture (an MLP's unused choices at their first option)."""
        chosen = {name: options[i] for (name, options), i in zip(self.dimensions, arch, strict=True)}
        if chosen["blocks"] == 0:
            chosen.update(kernel=self.dimensions[2][1][0], skip=self.dimensions[4][1][0], pooling=self.dimensions[5][1][0])
        return chosen

    def canonical(self, arch: Arch) -> str | None:
        return self.label(arch)

    def label(self, arch: Arch) -> str:
        p = self.params_of(arch)
        if p["blocks"] == 0:
            return f"mlp-w{p['width']}-{p['activation']}"
        return f"b{p['blocks']}-w{p['width']}-k{p['kernel']}-{p['activation']}{'-skip' if p['skip'] else ''}-{p['pooling']}"

    def training_identity(self, spec: Any, cache: Any) -> Any:
        from dataclasses import asdict

        from bench.fields import _code
        from bench.worker import dataset_id
        from models import MODELS

        model = _code(MODELS, "cell")
        return {"data": dataset_id(spec, cache), "validation": VALIDATION, "training": asdict(spec.training), "model": model, "attack": self._attack_identity()}

    def _attack_identity(self) -> list[Any]:
        """The PGD behind robust accuracy: its parameters and its code (an edited attack re-measures the table)."""
        from attacks import ATTACKS
        from bench.fields import _code

        return ["pgd", self.eps, self.attack_steps, _code(ATTACKS, "pgd")]

    def measure(self, arch: Arch, seed: int, spec: Any, cache: Any) -> dict[str, Any]:
        """Train the architecture (or take it from the model cache) and measure it."""
        from attacks import ATTACKS
        from bench.fields import ModelSpec, _code
        from bench.training import obtain_model
        from bench.worker import resolve_device
        from models import MODELS

        device = resolve_device(spec.device)
        train, (x_val, y_val), (x_test, y_test), data_id = _splits(spec, cache)
        model_spec = ModelSpec("cell", self.params_of(arch), code=_code(MODELS, "cell"))
        trained = obtain_model(model_spec, train, data_id, spec.training, seed=seed, device=device)
        model = trained.model
        attack = ATTACKS.create("pgd", eps=self.eps, steps=self.attack_steps)
        results: dict[str, Any] = {"cached": trained.cached, "train_seconds": trained.seconds}
        for split, x, y in (("val", x_val, y_val), ("test", x_test, y_test)):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                results[f"{split}_accuracy"] = (model(x).argmax(1) == y).float().mean().item()
            adversarial = attack(model, x, y)
            with torch.no_grad():
                results[f"robust_{split}_accuracy"] = (model(adversarial).argmax(1) == y).float().mean().item()
        results["params"] = float(sum(p.numel() for p in model.parameters()))
        results["latency_ms"] = _latency(model, x_test[: spec.batch_size].to(device))
        return results


def _splits(spec: Any, cache: Any) -> tuple[Any, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """(training set less the validation fifth, validation, test points, the training data's identity), once per worker."""
    from bench.data import Dataset
    from bench.worker import dataset, dataset_id

    def make() -> Any:
        from sklearn.model_selection import train_test_split

        data = dataset(spec, cache)
        index = torch.arange(len(data.y_train)).numpy()
        fit, held = train_test_split(index, test_size=VALIDATION, stratify=data.y_train.numpy(), random_state=0)
        fit, held = torch.as_tensor(sorted(fit)), torch.as_tensor(sorted(held))
        train = Dataset(data.name, data.x_train[fit], data.y_train[fit], data.x_train[held], data.y_train[held], data.classes)
        n = spec.n_examples or len(data.y_test)
        data_id = {**dataset_id(spec, cache), "validation": VALIDATION}
        return train, (train.x_test, train.y_test), (data.x_test[:n], data.y_test[:n]), data_id

    return cache.get(["nas-cells-splits", spec.dataset, dict(spec.dataset_params), spec.n_examples], make)


def _latency(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Median milliseconds of a forward pass over ``x`` on one thread (after one warm-up pass)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model(x)
            times = []
            for _ in range(LATENCY_REPEATS):
                started = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return 1e3 * sorted(times)[len(times) // 2]
