"""Standard training of a model spec on a dataset, cached by the hash of its recipe.

The recipe is everything that determines the weights: model name and
parameters, starting checkpoint (by content), dataset, training settings,
seed and code version. Ten attacks on one model train it once; a second run
takes the weights from the cache (``BENCH_CACHE``, default
``~/.cache/frontier-bench``). Workers on one machine share that cache: a lock
per recipe makes one of them train it while the others wait and load it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

import bench
from bench import accel
from bench.data import Dataset
from bench.errors import UserError
from bench.fingerprint import file_fingerprint
from bench.spec import ModelSpec, TrainingSpec
from models import MODELS
from models.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "frontier-bench")


def stable_hash(data: Any, length: int = 16) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class TrainingDiverged(RuntimeError):
    """Training made a weight inf or nan; nothing was cached."""


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module
    recipe: str  # the recipe hash, also the cache file's name
    cached: bool
    seconds: float


class Objective(Protocol):
    """A training objective other than cross-entropy (a training-time defense)."""

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def recipe(spec: ModelSpec, dataset_id: Any, training: TrainingSpec, seed: int, objective: Any = None, precision: str = "float32") -> dict[str, Any]:
    """Everything that determines a model's weights (``objective``: what identifies a training-time defense)."""
    found = {
        "objective": objective,
        "model": spec.name,
        "params": dict(spec.params),
        "checkpoint": spec.checkpoint_sha256 or (file_fingerprint(spec.checkpoint_path) if spec.checkpoint_path else None),
        "code": spec.code,  # an edited model file is another recipe: never the old weights
        "train": spec.train,
        "dataset": dataset_id,
        "training": asdict(training) if spec.train else None,
        "seed": seed,
        "version": bench.__version__,
    }
    if precision != "float32" and spec.train:  # bf16 training gives other weights; float32 recipes keep their hash
        found["precision"] = precision
    return found


def build_model(spec: ModelSpec, data: Dataset, seed: int) -> nn.Module:
    """The untrained (or checkpoint-loaded) model; initialization is seeded."""
    torch.manual_seed(seed)
    model = MODELS.create(spec.factory, context=data.model_context(), **spec.params)
    if not isinstance(model, nn.Module):
        raise UserError(f"model '{spec.name}' built a {type(model).__name__}, not a torch.nn.Module")
    if spec.checkpoint_path:
        load_checkpoint(model, spec.checkpoint_path)
    return model


def obtain_model(
    spec: ModelSpec,
    data: Dataset,
    dataset_id: Any,
    training: TrainingSpec,
    *,
    seed: int,
    device: torch.device,
    objective: Objective | None = None,
    objective_id: Any = None,
    precision: str = "float32",
) -> TrainedModel:
    """The model of ``spec``, trained by ``training`` (with ``objective``'s loss) unless the cache already holds it.

    The global random state is left as it was: a job's attack draws the same
    random numbers whether or not its model had to be built in that job.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _obtain_model(spec, data, dataset_id, training, seed=seed, device=device, objective=objective, objective_id=objective_id, precision=precision)


def _obtain_model(
    spec: ModelSpec,
    data: Dataset,
    dataset_id: Any,
    training: TrainingSpec,
    *,
    seed: int,
    device: torch.device,
    objective: Any,
    objective_id: Any,
    precision: str,
) -> TrainedModel:
    start = time.perf_counter()
    model = build_model(spec, data, seed)
    the_recipe = recipe(spec, dataset_id, training, seed, objective_id, precision)
    key = stable_hash(the_recipe)
    if not spec.train:
        return TrainedModel(model.to(device).eval(), key, False, 0.0)
    path = cache_dir() / "models" / f"{key}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):  # workers sharing the cache: one trains a recipe, the others wait and load it
        if path.is_file():
            load_checkpoint(model, path)
            log.info("cache hit: %s (recipe %s) from %s", spec.label, key, path)
            return TrainedModel(model.to(device).eval(), key, True, time.perf_counter() - start)
        log.info("training %s%s on %s: %d epochs (recipe %s)", spec.label, f" with {objective_id[0]}" if objective_id else "", data.name, training.epochs, key)
        train_classifier(model, data, training, seed=seed, device=device, objective=objective, precision=precision)
        diverged = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
        if diverged:  # nothing is cached: the next run trains again (with, one hopes, another recipe)
            raise TrainingDiverged(f"training {spec.label} gave non-finite weights ({diverged[0]}, ...; lr {training.lr:g}): lower spec.training.lr")
        save_checkpoint(model, path)
        path.with_suffix(".json").write_text(json.dumps(the_recipe, indent=2, default=str))
    seconds = time.perf_counter() - start
    log.info("trained %s in %.1f s; cached as %s", spec.label, seconds, path)
    return TrainedModel(model.eval(), key, False, seconds)


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Training on the CPU runs on one thread: how a weight gradient's sum is split over threads changes its
    last bits, and over 30 epochs a few points of robust accuracy, so the same recipe would give other weights
    (and a CI gate other numbers) on a machine with more cores. Attacks on fixed weights do not depend on the
    thread count (measured), so they keep every thread."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_classifier(
    model: nn.Module,
    data: Dataset,
    training: TrainingSpec,
    *,
    seed: int,
    device: torch.device,
    objective: Objective | None = None,
    precision: str = "float32",
) -> nn.Module:
    """Minibatch training (cross-entropy, or ``objective``'s loss) with a cosine learning-rate schedule; on the CPU, one thread.
    ``precision="bf16"``: forward and loss under bf16 autocast (``bench.accel``), float32 weights and optimizer."""
    with one_cpu_thread(device):
        return _train(model, data, training, seed=seed, device=device, objective=objective, precision=precision)


def make_optimizer(model: nn.Module, training: TrainingSpec, *, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """The spec's optimizer (SGD with momentum 0.9, or Adam) over the model's trainable parameters; ``weight_decay`` replaces the spec's."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    decay = training.weight_decay if weight_decay is None else weight_decay
    if training.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=training.lr, momentum=0.9, weight_decay=decay)
    return torch.optim.Adam(parameters, lr=training.lr, weight_decay=decay)


def _train(
    model: nn.Module, data: Dataset, training: TrainingSpec, *, seed: int, device: torch.device, objective: Objective | None, precision: str
) -> nn.Module:
    model.to(device).train()
    optimizer = make_optimizer(model, training)
    x, y = data.x_train.to(device), data.y_train.to(device)
    steps_per_epoch = -(-len(y) // training.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, training.epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(training.epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for batch in order.split(training.batch_size):
            optimizer.zero_grad(set_to_none=True)
            with accel.autocast(precision, device):
                loss = objective.training_loss(model, x[batch], y[batch]) if objective is not None else F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
        if not torch.isfinite(loss):
            break  # diverged: the weights are checked (and refused) by the caller
    optimizer.zero_grad(set_to_none=True)
    return model.eval()
