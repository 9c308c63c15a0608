"""The uncertainty track: does each estimator's confidence match reality, and does its uncertainty see trouble coming?

One job per model x estimator x seed measures, on the evaluation points:
in-distribution accuracy, NLL, Brier score, ECE and AURC (with the
reliability bins); the same metrics at every level of every dataset shift
(Ovadia et al. 2019, scaled to the embedded data); OOD AUROC and AUPR per OOD
set; and how well uncertainty separates clean inputs from adversarial ones
(AUROC), with each attack aimed at the estimator's own predictive
distribution. OOD and adversarial scores are the total predictive entropy for
every estimator, and the epistemic part (mutual information) too where an
estimator has one (``none`` and ``temperature`` have a single deterministic
prediction, so theirs is identically zero and reported as n/a).

Models train on the training split minus a held-out validation split
(``VALIDATION_FRACTION``, fixed and stratified) on which temperature scaling
is fitted. Ensemble member m of seed s has seed s + 1000 m, so member 0 is the
model every other estimator of seed s uses (trained once, cached).
A job's labels are model, estimator, dataset and seed; cells aggregate the
seeds (mean, with the std beside it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacks import ATTACKS
from bench import accel, fields
from bench.data import Dataset
from bench.errors import UserError
from bench.guard import eval_mode
from bench.runner import job_key
from bench.spec import AttackSpec, ComponentSpec, ModelSpec, RunSpec, ShiftSpec
from bench.store import Outcome, Record
from bench.tracks import HIGHER, LOWER, Job, JobResult, Metric, Task, Track
from bench.tracks.uncertainty import metrics as m
from bench.tracks.uncertainty.ood import OOD_SETS
from bench.tracks.uncertainty.shifts import SHIFTS
from bench.training import build_model, obtain_model
from bench.worker import Cache, dataset, dataset_id, eval_set, resolve_device
from models.estimators import ESTIMATORS, Estimator, Predictive

VALIDATION_FRACTION = 0.2  # of the training split, held out for fitting (temperature) and never trained on
MEMBER_SEED_STRIDE = 1000
N_BINS = 15


@dataclass(frozen=True)
class UncertaintySection:
    """The uncertainty track's part of a spec."""

    models: tuple[ModelSpec, ...]
    estimators: tuple[ComponentSpec, ...]
    shifts: tuple[ShiftSpec, ...]
    ood: tuple[ComponentSpec, ...]
    attacks: tuple[AttackSpec, ...]


class UncertaintyTrack(Track):
    name = "uncertainty"
    plots_title = "Dataset shift and reliability diagrams"
    fields = ("models", "estimators", "shifts", "ood", "attacks")
    replicates = True
    dimensions = ("model", "estimator", "dataset", "seed")
    cell_dimensions = ("model", "estimator", "dataset")
    metrics = {
        "accuracy": Metric(HIGHER, "fraction", "in-distribution accuracy"),
        "nll": Metric(LOWER, "nats", "negative log-likelihood"),
        "brier": Metric(LOWER, "", "Brier score"),
        "ece": Metric(LOWER, "fraction", "expected calibration error (15 bins)"),
        "aurc": Metric(LOWER, "", "area under the risk-coverage curve"),
        "ood_auroc*": Metric(HIGHER, "fraction", "how well uncertainty tells OOD inputs from test inputs"),
        "ood_aupr*": Metric(HIGHER, "fraction", "area under the precision-recall curve of OOD detection"),
        "adv_auroc*": Metric(HIGHER, "fraction", "how well uncertainty tells adversarial inputs from clean ones"),
        "adv_accuracy*": Metric(HIGHER, "fraction", "accuracy under the attack"),
    }

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """small-cnn with dropout on digits; four estimators, rotation and roll shifts, four OOD sets, PGD; three seeds."""
        return {
            "dataset": "digits",
            "seed": 0,
            "seeds": 3,
            "models": [{"name": "small-cnn", "dropout": 0.25}],
            "estimators": [{"name": "none"}, {"name": "temperature"}, {"name": "mc-dropout", "samples": 20}, {"name": "ensemble", "size": 4}],
            "shifts": [{"name": "rotate", "levels": list(range(15, 181, 15))}, {"name": "roll", "levels": [0.125, 0.25, 0.375, 0.5]}],
            "ood": [{"name": "held-out-classes"}, {"name": "inverted"}, {"name": "uniform-noise"}, {"name": "gaussian-noise"}],
            "attacks": [{"name": "pgd", "eps": 0.1, "steps": 10}],
            "training": {"epochs": 10},
        }

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> UncertaintySection:
        estimators = fields.components_field(raw.get("estimators"), "estimators", "an estimator name")
        if not estimators:
            raise UserError('spec.estimators: the uncertainty track needs at least one estimator (e.g. [[estimators]] name = "none")')
        return UncertaintySection(
            models=fields.models_field(raw.get("models"), base_dir),
            estimators=estimators,
            shifts=fields.shifts_field(raw.get("shifts")),
            ood=fields.components_field(raw.get("ood"), "ood", "an OOD set name"),
            attacks=fields.attacks_field(raw.get("attacks")),
        )

    def validate(self, spec: RunSpec, cache: Cache) -> None:
        data = dataset(spec, cache)
        classes = data.num_classes
        for i, item in enumerate(spec.ood):
            held = OOD_SETS.create(item.name, **item.params).held_out(classes)
            if any(c >= classes for c in held) or len(held) >= classes:
                raise UserError(f"spec.ood[{i}].classes: must leave some of the {classes} classes 0..{classes - 1} for training, got {list(held)}")
        for model in spec.models:
            built = build_model(model, data, spec.seed)  # untrained: cheap, and enough to see its layers
            for i, item in enumerate(spec.estimators):
                try:
                    ESTIMATORS.create(item.name, **item.params).check(built, model.label)
                except UserError as error:
                    raise UserError(f"spec.estimators[{i}]: {error}") from None

    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        dataset = {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}}
        common = {
            "dataset": dataset,
            "n_examples": spec.n_examples,
            "batch_size": spec.batch_size,
            "validation": VALIDATION_FRACTION,
            "shifts": [[s.name, list(s.levels), dict(s.params)] for s in spec.shifts],
            "ood": [o.identity for o in spec.ood],
            "attacks": [[a.name, list(a.eps), dict(a.params), a.code] for a in spec.attacks],
        }
        jobs: list[Job] = []
        for model in spec.models:
            for estimator in spec.estimators:
                for seed in range(spec.seed, spec.seed + spec.seeds):
                    identity = {
                        **common,
                        "model": model.identity,
                        "training": spec.training if model.train else None,
                        "estimator": estimator.identity,
                        "seed": seed,
                    }
                    labels = {"model": model.label, "estimator": estimator.label, "dataset": spec.dataset, "seed": seed}
                    payload = {"model": model, "estimator": estimator, "seed": seed, "params": {"seed": seed}}
                    jobs.append(Job(job_key(self.name, identity), len(jobs), labels, payload))
        return jobs

    def run(self, task: Task, cache: Cache) -> JobResult:
        start = time.perf_counter()
        spec: RunSpec = task.spec
        item: ComponentSpec = task.job.payload["estimator"]
        model: ModelSpec = task.job.payload["model"]
        seed: int = task.job.payload["seed"]
        estimator = ESTIMATORS.create(item.name, **item.params)
        x, y = eval_set(spec, cache)
        classes = dataset(spec, cache).num_classes
        members, fitted, recipes = _fitted(spec, cache, model, estimator, seed, held_out=())
        predictive = fitted.predict(members, x, spec.batch_size)
        result = {"seed": seed, "in_distribution": {**_summary(predictive, y), "reliability": _reliability(predictive, y)}}
        if getattr(fitted, "temperature", None) is not None:
            result["temperature"] = fitted.temperature
        result["shift"] = {
            shift.name: [{"level": level, **_summary(fitted.predict(members, SHIFTS.create(shift.name, level=level, **shift.params)(x), spec.batch_size), y)}
                         for level in shift.levels]
            for shift in spec.shifts
        }  # fmt: skip
        generator = torch.Generator().manual_seed(seed)
        result["ood"] = {}
        for item_ood in spec.ood:
            ood = OOD_SETS.create(item_ood.name, **item_ood.params)
            x_in, y_in, x_out = ood.make(x, y, classes, generator)
            held = ood.held_out(classes)
            if held:  # its own model, which never saw the held-out classes
                own, own_fitted, own_recipes = _fitted(spec, cache, model, estimator, seed, held_out=held)
                recipes += own_recipes
                scores_in, scores_out = own_fitted.predict(own, x_in, spec.batch_size), own_fitted.predict(own, x_out, spec.batch_size)
            else:
                scores_in, scores_out = predictive, fitted.predict(members, x_out, spec.batch_size)
            result["ood"][item_ood.label] = _separation(scores_in, scores_out, fitted.has_epistemic)
        result["adversarial"] = {}
        target = fitted.attack_model(members).to(resolve_device(spec.device))
        sizes = cache.get("batch-sizes", accel.BatchSizes)
        for attack_spec in spec.attacks:
            for eps in attack_spec.eps:
                attack = ATTACKS.create(attack_spec.name, eps=eps, **attack_spec.params)
                with eval_mode(target), accel.policy(precision=spec.precision, batch_size=spec.batch_size, sizes=sizes, key=(model.label, item.label)):
                    x_adv = accel.attack_points(attack, target, x, y)  # batched, halved on out-of-memory
                attacked = fitted.predict(members, x_adv, spec.batch_size)
                separation = _separation(predictive, attacked, fitted.has_epistemic)
                result["adversarial"][attack_label(attack_spec.label, attack.norm, eps)] = {**separation, "accuracy": m.accuracy(attacked.probs, y)}
        result.update(n=len(y), clean_accuracy=result["in_distribution"]["accuracy"])
        return JobResult(metrics=result, seconds=time.perf_counter() - start, provenance={"model_recipes": recipes})

    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        from reports.uncertainty import aggregate

        return aggregate(records)

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        from reports.uncertainty import uncertainty_markdown

        return uncertainty_markdown(cells)

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        from reports.uncertainty import uncertainty_tables

        return uncertainty_tables(cells)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.uncertainty_plots import reliability_diagrams, shift_curves

        return shift_curves(cells) + reliability_diagrams(cells)

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.uncertainty_plots import reliability_diagrams

        return reliability_diagrams(cells)


def attack_label(label: str, norm: str, eps: float) -> str:
    return f"{label}-{norm}-{eps:g}"


def _summary(predictive: Predictive, y: torch.Tensor) -> dict[str, float]:
    probs = predictive.probs
    return {
        "accuracy": m.accuracy(probs, y),
        "nll": m.negative_log_likelihood(probs, y),
        "brier": m.brier_score(probs, y),
        "ece": m.expected_calibration_error(probs, y, N_BINS),
        "aurc": m.aurc(probs, y),
        "total": float(predictive.total.mean()),
        "aleatoric": float(predictive.aleatoric.mean()),
        "epistemic": float(predictive.epistemic.mean()),
    }


def _reliability(predictive: Predictive, y: torch.Tensor) -> dict[str, list[float]]:
    count, hits, confidence = m.calibration_bins(predictive.probs, y, N_BINS)
    return {"count": count.tolist(), "correct": hits.tolist(), "confidence": confidence.tolist()}


def _separation(clean: Predictive, other: Predictive, has_epistemic: bool) -> dict[str, float | None]:
    """How well uncertainty tells ``other`` (OOD or adversarial) from ``clean``: AUROC and AUPR of the total entropy, AUROC of the epistemic part."""
    return {
        "auroc": m.ood_auroc(clean.total, other.total),
        "aupr": m.ood_aupr(clean.total, other.total),
        "auroc_epistemic": m.ood_auroc(clean.epistemic, other.epistemic) if has_epistemic else None,
        "total_in": float(clean.total.mean()),
        "total_out": float(other.total.mean()),
        "epistemic_in": float(clean.epistemic.mean()),
        "epistemic_out": float(other.epistemic.mean()),
    }


def _splits(spec: RunSpec, cache: Cache, held_out: tuple[int, ...]) -> tuple[Dataset, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Training data without the validation split (and without ``held_out`` classes), the validation split on the device, and its identity."""

    def make() -> tuple[Dataset, torch.Tensor, torch.Tensor, dict[str, Any]]:
        from sklearn.model_selection import train_test_split

        data, device = dataset(spec, cache), resolve_device(spec.device)
        indices = torch.arange(len(data.y_train)).numpy()
        train, val = train_test_split(indices, test_size=VALIDATION_FRACTION, stratify=data.y_train.numpy(), random_state=0)
        train, val = torch.as_tensor(train), torch.as_tensor(val)
        if held_out:
            keep = torch.tensor(held_out)
            train, val = train[~torch.isin(data.y_train[train], keep)], val[~torch.isin(data.y_train[val], keep)]
        subset = Dataset(data.name, data.x_train[train], data.y_train[train], data.x_test, data.y_test, data.classes)
        identity = {**dataset_id(spec, cache), "validation": VALIDATION_FRACTION, "held_out": list(held_out)}
        return subset, data.x_train[val].to(device), data.y_train[val].to(device), identity

    return cache.get(["uncertainty-split", spec.dataset, dict(spec.dataset_params), spec.device, list(held_out)], make)


def _fitted(
    spec: RunSpec, cache: Cache, model: ModelSpec, estimator: Estimator, seed: int, *, held_out: tuple[int, ...]
) -> tuple[list[torch.nn.Module], Estimator, list[str]]:
    """The estimator's trained members (cached by recipe, memoized in the worker), the estimator fitted on the validation split, the recipes."""
    data, x_val, y_val, identity = _splits(spec, cache, held_out)
    device = resolve_device(spec.device)
    members, recipes = [], []
    for index in range(estimator.members()):
        member_seed = seed + MEMBER_SEED_STRIDE * index
        key = ["uncertainty-model", repr(model), identity, spec.training, member_seed, spec.device, spec.precision, spec.memory_format]
        trained = cache.get(
            key, lambda member_seed=member_seed: obtain_model(model, data, identity, spec.training, seed=member_seed, device=device, precision=spec.precision)
        )
        members.append(accel.memory_format(trained.model.to(device), device, spec.memory_format))
        recipes.append(trained.recipe)
    return members, estimator.fit(members, x_val, y_val), recipes
