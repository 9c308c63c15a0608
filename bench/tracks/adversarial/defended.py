"""Defended models: the trained (cached) model of a model spec behind a defense, memoized per worker by content.

A training-time defense trains its own model (its objective is part of the
recipe); an inference-time defense wraps the standard one. The memo keys
are the recipe's inputs, so two jobs of the same model and defense share one
module in a worker whatever order they come in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from bench import accel
from bench.spec import ComponentSpec, ModelSpec
from bench.training import TrainedModel, obtain_model
from bench.worker import Cache, dataset, dataset_id, resolve_device
from defenses import DEFENSES


def defense(item: ComponentSpec) -> Any:
    return DEFENSES.create(item.name, **item.params)


def training_recipe(spec: Any, item: ComponentSpec) -> str | None:
    """How a training-time defense trained its model, for people: its settings and the spec's training (None: it trains nothing)."""
    chosen = defense(item)
    if not chosen.trains:
        return None
    settings = ", ".join(
        f"{f.name} {getattr(chosen, f.name):g}" if isinstance(getattr(chosen, f.name), float) else f"{f.name} {getattr(chosen, f.name)}"
        for f in dataclasses.fields(chosen)
        if getattr(chosen, f.name) is not None
    )
    t = spec.training
    return f"{settings}; {t.epochs} epochs, lr {t.lr:g} ({t.optimizer}), batch {t.batch_size}"


def trained(spec: Any, model: ModelSpec, item: ComponentSpec | None, cache: Cache) -> TrainedModel:
    """The model trained by the spec's recipe (with ``item``'s objective when it is a training-time defense)."""
    chosen = defense(item) if item is not None else None
    objective = item.identity if chosen is not None and chosen.trains else None  # its code too: an edited defense trains again

    def make() -> TrainedModel:
        trainer = {"objective": chosen, "objective_id": objective} if objective else {}
        device = resolve_device(spec.device)
        found = obtain_model(
            model, dataset(spec, cache), dataset_id(spec, cache), spec.training, seed=spec.seed, device=device, precision=spec.precision, **trainer
        )
        accel.memory_format(found.model.to(device), device, spec.memory_format)
        return found

    where = [spec.device, spec.precision, spec.memory_format]
    return cache.get(["trained", repr(model), objective, spec.dataset, dict(spec.dataset_params), spec.training, spec.seed, *where], make)


def defended(spec: Any, model: ModelSpec, item: ComponentSpec, cache: Cache) -> tuple[nn.Module, TrainedModel]:
    """The module the attacks face (the defense around its trained model) and the trained model behind it."""
    base = trained(spec, model, item, cache)

    def make() -> nn.Module:
        return defense(item).wrap(base.model).to(resolve_device(spec.device))

    return cache.get(["defended", base.recipe, item.name, dict(item.params), spec.device, spec.memory_format], make), base


def undefended(spec: Any, model: ModelSpec, cache: Cache) -> nn.Module:
    """The standard trained model: a transfer source for its defended versions."""
    return trained(spec, model, None, cache).model
