"""The random-label track: how much does a network memorize? (Zhang et al. 2017; Arpit et al. 2017)

One job per model x regularizers x corruption x p x seed trains the model
from scratch on the corrupted training set (``corruptions``) until it fits
it (train accuracy >= ``threshold`` in eval mode, on the labels it was given)
or the epoch budget (``training.epochs``) runs out, and measures final train
and test accuracy (test labels are always the true ones), the generalization
gap, the epochs and training seconds until fit, and per epoch the learning
curve with the fraction of clean and of corrupted points fit (stored in the
record and as the artifact ``learning-curve.csv``; the corrupted subset and
what was drawn as ``corruption.json``). Cells aggregate the seeds with a 95 %
t-interval; ``reports.random_labels`` renders them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import fields
from bench.data import Dataset
from bench.errors import UserError
from bench.fields import ModelSpec, _param_suffix
from bench.runner import job_key
from bench.spec import RunSpec
from bench.store import Outcome, Record
from bench.tracks import EITHER, HIGHER, LOWER, Job, JobResult, Metric, Task, Track
from bench.tracks.random_labels.corruptions import CORRUPTIONS, Corrupted
from bench.tracks.random_labels.fitting import fit
from bench.tracks.random_labels.regularizers import Regularizers, regularizers_field
from bench.training import build_model
from bench.worker import Cache, dataset, dataset_id, resolve_device
from models import MODELS

THRESHOLD = 0.99


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption at each fraction ``p`` of its grid."""

    name: str
    p: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    code: str = field(default="", metadata=fields.LOCAL)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)


@dataclass(frozen=True)
class RandomLabelsSection:
    """The random-label track's part of a spec."""

    models: tuple[ModelSpec, ...]
    regularizers: tuple[Regularizers, ...]
    corruptions: tuple[CorruptionSpec, ...]
    threshold: float = THRESHOLD  # train accuracy that counts as fit
    stop_when_fit: bool = True  # stop at the first epoch that fits (False: train the whole budget)
    train_examples: int | None = None  # a fixed stratified subset of the training split (None: all of it)


class RandomLabelsTrack(Track):
    name = "random-labels"
    plots_title = "Learning curves, time to fit and test error"
    fields = ("models", "regularizers", "corruptions", "threshold", "stop_when_fit", "train_examples")
    replicates = True
    dimensions = ("model", "regularizers", "corruption", "p", "dataset", "seed")
    cell_dimensions = ("model", "regularizers", "corruption", "p", "dataset")
    metrics = {
        "train_accuracy": Metric(EITHER, "fraction", "final accuracy on the training labels the model was given (eval mode)"),
        "test_accuracy": Metric(HIGHER, "fraction", "final accuracy on the true test labels"),
        "generalization_gap": Metric(LOWER, "fraction", "train accuracy minus test accuracy"),
        "fit_rate": Metric(EITHER, "fraction", "share of the seeds that fit the training set within the budget"),
        "epochs_to_fit": Metric(EITHER, "epochs", "first epoch with train accuracy >= the threshold"),
        "slowdown": Metric(EITHER, "x", "epochs to fit over epochs to fit the true labels (same model and regularizers)"),
        "clean_fit": Metric(EITHER, "fraction", "final share of unchanged training points predicted as labelled"),
        "corrupted_fit": Metric(EITHER, "fraction", "final share of changed training points predicted as their (corrupted) label"),
    }
    explanations = {
        "not-fit": "the training set was not fit (train accuracy below the threshold) within the epoch budget in some seed",
        "training-diverged": "the training loss became inf or nan: lower spec.training.lr",
        "seeds-incomplete": "some seeds of this cell failed; the numbers are over the others",
    }

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An over-parameterized MLP and a small CNN on digits: true, partly and fully random labels, and the three input
        corruptions; 3 seeds, one job per core."""
        return {
            "dataset": "digits",
            "seed": 0,
            "seeds": 3,
            "models": [{"name": "mlp", "hidden": 512}, {"name": "small-cnn", "width": 16}],
            "corruptions": [
                {"name": "labels", "p": [0.0, 0.5, 1.0]},
                {"name": "shuffled-pixels"},
                {"name": "random-pixels"},
                {"name": "gaussian"},
            ],
            "training": {"epochs": 150, "lr": 1e-3, "batch_size": 64},
            "executor": {"name": "processes"},  # every job trains on one thread (reproducible weights): one job per core
        }

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> RandomLabelsSection:
        models = fields.models_field(raw.get("models"), base_dir)
        for i, model in enumerate(models):
            if not model.train:
                raise fields.fail(f"spec.models[{i}].train", "this track trains every model (a checkpoint is where it starts); remove train = false")
        threshold = raw.get("threshold", THRESHOLD)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise fields.fail("spec.threshold", f"must be a number in (0, 1], got {threshold!r}")
        train_examples = raw.get("train_examples")
        if train_examples is not None:
            train_examples = fields.integer(raw, "train_examples", 0, 2)
        return RandomLabelsSection(
            models=models,
            regularizers=regularizers_field(raw.get("regularizers"), models),
            corruptions=_corruptions(raw.get("corruptions")),
            threshold=float(threshold),
            stop_when_fit=fields.boolean(raw, "stop_when_fit", True),
            train_examples=train_examples,
        )

    def validate(self, spec: RunSpec, cache: Cache) -> None:
        available = len(dataset(spec, cache).y_train)
        if spec.train_examples is not None and spec.train_examples > available:
            raise UserError(f"spec.train_examples: {spec.train_examples} asked for, but {spec.dataset} has {available} training points")

    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        common = {
            "dataset": {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}},
            "n_examples": spec.n_examples,
            "train_examples": spec.train_examples,
            "training": asdict(spec.training),
            "threshold": spec.threshold,
            "stop_when_fit": spec.stop_when_fit,
        }
        jobs: list[Job] = []
        for model in spec.models:
            for regularizers in spec.regularizers:
                for corruption in spec.corruptions:
                    for p in corruption.p:
                        for seed in range(spec.seed, spec.seed + spec.seeds):
                            identity = {
                                **common,
                                "model": model.identity,
                                "regularizers": regularizers.identity,
                                "corruption": [corruption.name, dict(corruption.params), corruption.code],
                                "p": p,
                                "seed": seed,
                            }
                            labels = {"model": model.label, "regularizers": regularizers.name, "corruption": corruption.label, "p": p}
                            payload = {"model": model, "regularizers": regularizers, "corruption": corruption, "p": p, "seed": seed, "params": {"seed": seed}}
                            jobs.append(Job(job_key(self.name, identity), len(jobs), {**labels, "dataset": spec.dataset, "seed": seed}, payload))
        return jobs

    def run(self, task: Task, cache: Cache) -> JobResult:
        start = time.perf_counter()
        spec: RunSpec = task.spec
        payload = task.job.payload
        model_spec: ModelSpec = payload["model"]
        regularizers: Regularizers = payload["regularizers"]
        seed: int = payload["seed"]
        data = _data(spec, cache)
        corrupted = _corrupted(spec, cache, payload["corruption"], payload["p"], seed)
        device = resolve_device(spec.device)
        model = build_model(regularizers.model(model_spec, MODELS), data, seed)
        x, y, x_test, y_test = (t.to(device) for t in (corrupted.x_train, corrupted.y_train, corrupted.x_test, corrupted.y_test))
        fitted = fit(
            model, x, y, x_test, y_test, corrupted.changed,
            training=spec.training, weight_decay=regularizers.weight_decay, shift=regularizers.shift(data.input_shape),
            threshold=spec.threshold, stop_when_fit=spec.stop_when_fit, seed=seed, device=device,
        )  # fmt: skip
        curve = fitted.curve
        changed = corrupted.changed
        metrics = {
            "seed": seed,
            "n_train": len(y),
            "n_test": len(y_test),
            "classes": data.num_classes,
            "threshold": spec.threshold,
            "train_accuracy": curve.train_accuracy[-1],
            "test_accuracy": curve.test_accuracy[-1],
            "generalization_gap": curve.train_accuracy[-1] - curve.test_accuracy[-1],
            "fit": fitted.epochs_to_fit is not None,
            "epochs_to_fit": fitted.epochs_to_fit,
            "seconds_to_fit": fitted.seconds_to_fit,
            "epochs": fitted.epochs,
            "max_epochs": spec.training.epochs,
            "train_seconds": fitted.train_seconds,
            "epochs_per_second": fitted.epochs / fitted.train_seconds if fitted.train_seconds > 0 else None,
            "corrupted": int(corrupted.selected.sum()),
            "changed": int(changed.sum()),
            "clean_fit": curve.clean_fit[-1] if curve.clean_fit else None,
            "corrupted_fit": curve.corrupted_fit[-1] if curve.corrupted_fit else None,
            "curve": curve.as_dict(),
        }
        artifacts = {"learning-curve.csv": curve.csv(), "corruption.json": json.dumps(corrupted.record).encode()}
        flags = [] if metrics["fit"] else ["not-fit"]
        return JobResult(metrics=metrics, flags=flags, seconds=time.perf_counter() - start, artifacts=artifacts)

    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        from reports.random_labels import aggregate

        return aggregate(records)

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        from reports.random_labels import random_labels_markdown

        return random_labels_markdown(cells)

    def summary(self, cells: Sequence[Mapping[str, Any]]) -> list[str]:
        from reports.random_labels import summary_lines

        return summary_lines(cells)

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        from reports.random_labels import tables

        return tables(cells)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.random_labels_plots import figures

        return figures(cells)

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.random_labels_plots import learning_curves

        return learning_curves(cells)


def _corruptions(raw: Any) -> tuple[CorruptionSpec, ...]:
    """``[[corruptions]]``: each a registered corruption with a grid of ``p`` (default [1.0]), every p in [0, 1]."""
    from bench.catalog import registry

    registered = registry("corruptions")
    found = []
    for i, item in enumerate(fields._table_list(raw, "spec.corruptions")):
        path = f"spec.corruptions[{i}]"
        name, grid, params = fields._graded({"p": [1.0], **item}, path, "p", "a corruption name")
        for p in grid:
            if not 0 <= p <= 1:
                raise fields.fail(f"{path}.p", f"must be fractions in [0, 1], got {p}")
        try:
            registered.create(name, **params)
        except UserError as error:
            raise fields._component_error(path, error) from None
        found.append(CorruptionSpec(name, tuple(float(p) for p in grid), params, fields._code(registered, name)))
    labels = [(c.label) for c in found]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise fields.fail(f"spec.corruptions[{i}]", f"repeats corruption '{label}'; merge their p lists")
    return tuple(found)


def _data(spec: RunSpec, cache: Cache) -> Dataset:
    """The run's dataset with ``train_examples`` (a fixed stratified subset of the training split) and ``n_examples`` (the first test points)."""

    def make() -> Dataset:
        data = dataset(spec, cache)
        x_train, y_train = data.x_train, data.y_train
        if spec.train_examples is not None and spec.train_examples < len(y_train):
            from sklearn.model_selection import train_test_split

            keep, _ = train_test_split(torch.arange(len(y_train)).numpy(), train_size=spec.train_examples, stratify=y_train.numpy(), random_state=0)
            keep = torch.as_tensor(sorted(keep))
            x_train, y_train = x_train[keep], y_train[keep]
        n = spec.n_examples or len(data.y_test)
        return Dataset(data.name, x_train, y_train, data.x_test[:n], data.y_test[:n], data.classes)

    return cache.get(["random-labels-data", dataset_id(spec, cache), spec.train_examples, spec.n_examples], make)


def _corrupted(spec: RunSpec, cache: Cache, corruption: CorruptionSpec, p: float, seed: int) -> Corrupted:
    """The corrupted training (and test) set of a seed, shared by every model and regularizer of the worker."""
    data = _data(spec, cache)
    key = ["random-labels-corrupted", dataset_id(spec, cache), spec.train_examples, spec.n_examples, corruption.name, dict(corruption.params), p, seed]
    return cache.get(key, lambda: CORRUPTIONS.create(corruption.name, **corruption.params).corrupt(data, p, torch.Generator().manual_seed(seed)))
