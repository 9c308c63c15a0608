"""The adversarial track: robust accuracy of models x defenses under attacks x eps.

For each model, defense, norm and eps the attacks form a cascade (spec
``cascade = true``, the default): each runs, as its own job, only on the points
every earlier one left robust, so the last column is the per-example worst case
at a fraction of the cost of running every attack on every point. Every
adversarial batch is verified against the threat model independently of the
attack, and robust accuracy is re-measured on the returned points. One
``sanity-checks`` job per model, defense and norm checks the model itself;
its flags, and flags only several jobs show together, are stored on every
row they concern.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attacks import ATTACKS
from bench import accel, fields
from bench.errors import UserError
from bench.guard import eval_mode, predict
from bench.runner import job_key
from bench.spec import AttackSpec, ComponentSpec, ModelSpec, RunSpec
from bench.store import Outcome, Record
from bench.tracks import HIGHER, Job, JobResult, Metric, Task, Track
from bench.tracks.adversarial import defended, gallery, rows, sanity
from bench.tracks.adversarial.evaluation import DEFAULT_CASCADE, DEFAULT_DRAWS, MASKING, History, adaptive_attack, adaptive_position, attack_step, implausible
from bench.tracks.adversarial.flags import ADVISORY, FLAGS
from bench.tracks.adversarial.ranking import cell_vectors
from bench.tracks.adversarial.rows import CERTIFIED, SANITY, WORST_CASE
from bench.worker import Cache, dataset, eval_set
from defenses import DEFENSES
from reports.leaderboard import robustness_markdown, row_label

ADAPTIVE_LABELS = ("bpda", "eot", "bpda+eot")
DEFAULT_DEFENSES = ("none", "pgd-at", "trades", "fast-at", "jpeg", "bit-depth", "randomized-smoothing")
DEFAULT_RADII = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class AdversarialSection:
    """The adversarial track's part of a spec."""

    cascade: bool  # attacks of one norm and eps run on what earlier ones left robust
    checks: bool  # sanity checks (flags) on models and attacks
    adaptive: bool  # add the adaptive attack (EOT, BPDA) a defense's declared properties or the checks' findings call for
    draws: int  # forward passes whose majority is one prediction of a randomized model
    models: tuple[ModelSpec, ...]
    defenses: tuple[ComponentSpec, ...]
    attacks: tuple[AttackSpec, ...]


class AdversarialTrack(Track):
    name = "adversarial"
    plots_title = "Robustness curves"
    fields = ("cascade", "checks", "adaptive", "draws", "models", "defenses", "attacks")
    dimensions = ("model", "defense", "attack", "dataset", "norm", "eps")
    metrics = {
        "clean_accuracy": Metric(HIGHER, "fraction", "accuracy on the unperturbed evaluation points", scope=("model", "defense", "dataset")),
        "robust_accuracy": Metric(HIGHER, "fraction", "fraction of points still classified correctly after the attack (and every attack before it)"),
        "transform_averaged_accuracy": Metric(HIGHER, "fraction", "accuracy averaged over the EOT distribution's transformations"),
    }
    explanations = FLAGS
    advisory = ADVISORY

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defense comparison on small-cnn; a spec naming its own models compares no defenses unless it names them."""
        cascade = [{"name": name, **params} for name, params in DEFAULT_CASCADE]
        defenses = DEFAULT_DEFENSES if "models" not in (user or {}) else ("none",)
        return {
            "dataset": "digits",
            "n_examples": 200,
            "training": {"epochs": 20},  # 30 by default elsewhere; keeps the cold default under 3 minutes on 2 cores
            "seed": 0,
            "models": [{"name": "small-cnn"}],
            "defenses": [{"name": name} for name in defenses],
            "attacks": [{**a, "eps": [0.1, 0.2, 0.3]} for a in cascade] + [{**a, "norm": "l2", "eps": [0.5, 1.0]} for a in cascade],
        }

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> AdversarialSection:
        return AdversarialSection(
            cascade=fields.boolean(raw, "cascade", True),
            checks=fields.boolean(raw, "checks", True),
            adaptive=fields.boolean(raw, "adaptive", True),
            draws=fields.integer(raw, "draws", DEFAULT_DRAWS, minimum=1),
            models=fields.models_field(raw.get("models"), base_dir),
            defenses=fields.components_field(raw.get("defenses", [{"name": "none"}]), "defenses", "a defense name"),
            attacks=fields.attacks_field(raw.get("attacks")),
        )

    def validate(self, spec: RunSpec, cache: Cache) -> None:
        shape = dataset(spec, cache).input_shape
        for i, attack in enumerate(spec.attacks):
            norm = ATTACKS.create(attack.name, eps=attack.eps[0], **attack.params).norm
            for eps in attack.eps:
                why = implausible(eps, norm, shape)
                if why is not None:
                    raise UserError(f"spec.attacks[{i}].eps ({attack.label}): {why}")
        for i, item in enumerate(spec.defenses):
            defense = defended.defense(item)
            defense.check(shape)
            frozen = [m.label for m in spec.models if not m.train]
            if defense.trains and frozen:
                raise UserError(f"spec.defenses[{i}]: '{item.label}' trains the model, but {frozen[0]} has train = false (a fixed checkpoint)")

    def run_meta(self, spec: RunSpec, cache: Cache) -> dict[str, Any]:
        return {"classes": [str(c) for c in dataset(spec, cache).classes]}  # the gallery's label names

    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        """Per model and defense: sanity checks, certification, then each norm and eps's cascade of attacks.

        The block's first job measures the clean predictions (stored as its outcomes, with how many draws one
        prediction takes); every other job of the block depends on it and reads them, so no job's numbers
        depend on which worker ran what before it. With checks on, the cascades wait one round for the
        sanity checks: what they detect (a randomized model, masked gradients) adds the adaptive attack up
        front, as a declared defense property does. Signs of masking only the cascade shows (noise, transfer
        or black-box beating white-box) add it, next round, at the end of each chain of that norm.
        """
        jobs: list[Job] = []
        dataset = {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}}
        for model in spec.models:
            # model.identity: a checkpoint counts by its content, not its path, and the model's code by its fingerprint:
            # moving a project keeps its job keys (and attack seeds); new weights or an edited model get new keys
            for defense in spec.defenses:
                chosen = DEFENSES.create(defense.name, **defense.params)
                plain = [(a, ATTACKS.create(a.name, eps=a.eps[0], **a.params).norm) for a in spec.attacks]
                norms = list(dict.fromkeys(norm for _, norm in plain))
                base = {
                    "model": model.identity,
                    "training": spec.training if model.train else None,
                    "defense": defense.identity,
                    "dataset": dataset,
                    "n_examples": spec.n_examples,
                    "seed": spec.seed,
                    "batch_size": spec.batch_size,
                    "checks": spec.checks,
                    "draws": spec.draws,
                }
                common = {"model": model.label, "defense": defense.label, "dataset": spec.dataset}
                owner = {"model": model, "defense": defense}
                block = len(jobs)
                checked: dict[str, str] = {}  # norm -> its sanity job
                if spec.checks:
                    for norm in norms:
                        columns = {**common, "attack": SANITY, "norm": norm, "eps": None}
                        checked[norm] = job_key(self.name, {**base, "sanity": norm})
                        jobs.append(Job(checked[norm], len(jobs), columns, {**owner, "kind": SANITY}))
                if chosen.certifies:
                    radii = sorted({eps for a, norm in plain if norm == "l2" for eps in a.eps}) or list(DEFAULT_RADII)
                    columns = {**common, "attack": CERTIFIED, "norm": "l2", "eps": None}
                    jobs.append(Job(job_key(self.name, {**base, "certify": radii}), len(jobs), columns, {**owner, "kind": CERTIFIED, "radii": radii}))
                if all(key in finished for key in checked.values()):  # else the cascades wait for what the checks detect
                    detected = {norm: _detected(chosen, finished.get(checked.get(norm, ""))) for norm in norms}
                    upfront = {norm: adaptive_attack(**found) if spec.adaptive else None for norm, found in detected.items()}
                    attacks = with_adaptive_attacks(plain, upfront)
                    chains = self._chains(jobs, attacks, spec, base, common, owner)
                    if spec.adaptive:
                        self._adaptive_after(jobs, chains, detected, upfront, finished, base, common, owner)
                source = jobs[block].key  # measures the clean predictions the rest of the block reads
                for i in range(block + 1, len(jobs)):
                    jobs[i] = replace(jobs[i], depends_on=(source, *jobs[i].depends_on), payload={**jobs[i].payload, "clean_from": source})
        return jobs

    def _chains(self, jobs, attacks, spec, base, common, owner) -> dict[tuple[str, float], list[tuple[str, Mapping[str, Any]]]]:
        """Append each norm and eps's cascade (or, without cascade, independent attacks); return the chains."""
        chains: dict[tuple[str, float], list[tuple[str, Mapping[str, Any]]]] = {}
        for attack, norm, eps, converge in _ordered(attacks, cascade=spec.cascade):
            chain = chains.setdefault((norm, eps), []) if spec.cascade else []
            self._append(jobs, chain, attack, norm, eps, converge, base, common, owner)
        return chains

    def _append(self, jobs, chain, attack, norm, eps, converge, base, common, owner) -> None:
        key = job_key(self.name, {**base, "attack": [attack.name, dict(attack.params), eps, attack.code], "after": [k for k, _ in chain], "converge": converge})
        columns = {**common, "attack": attack.label, "norm": norm, "eps": eps}
        payload = {
            **owner,
            "attack": attack.name,
            "params": dict(attack.params),
            "eps": eps,
            "before": list(chain),
            "convergence_check": converge,
            "adaptive": attack.label in ADAPTIVE_LABELS,
        }
        jobs.append(Job(key, len(jobs), columns, payload, depends_on=tuple(k for k, _ in chain)))
        chain.append((key, {"name": attack.name, "params": dict(attack.params), "eps": eps}))

    def _adaptive_after(self, jobs, chains, detected, upfront, finished, base, common, owner) -> None:
        """Once a norm's chains have run: the adaptive attack that what they showed calls for, if not the one that ran."""
        for norm, found in detected.items():
            members = [chain for (n, _), chain in chains.items() if n == norm]
            records = [finished.get(key) for chain in members for key, _ in chain]
            if not members or None in records:
                continue
            shown = {flag for record in records for flag in record.flags}
            randomized = found["randomized"] or any((record.metrics.get("draws") or 1) > 1 for record in records)
            later = adaptive_attack(randomized=randomized, masked=found["masked"] or bool(MASKING & shown))
            if later is None or later == upfront[norm]:
                continue
            name, params, label = later
            for (n, eps), chain in chains.items():
                if n == norm:
                    self._append(jobs, chain, AttackSpec(name, (eps,), {**params, "norm": norm}, label), norm, eps, True, base, common, owner)

    def run(self, task: Task, cache: Cache) -> JobResult:
        spec, labels = task.spec, task.job.labels
        sizes = cache.get("batch-sizes", accel.BatchSizes)  # the worker's: a size that ran out of memory is not tried again
        key = (labels["model"], labels["defense"])
        with accel.policy(precision=spec.precision, batch_size=spec.batch_size, sizes=sizes, key=key):
            result = self._run(task, cache)
        smaller = {name: sizes.size((k, name), spec.batch_size) for k, name in sizes.halvings if k == key}
        if smaller:  # what ran out of memory at the spec's batch size, and the size that fit
            result.provenance["batch_size"] = smaller
        recipe = defended.training_recipe(task.spec, task.job.payload["defense"])
        if recipe:  # what the leaderboard says a training-time defense was trained with
            result.provenance["training"] = recipe
        return result

    def _run(self, task: Task, cache: Cache) -> JobResult:
        job, spec = task.job, task.spec
        model, trained = defended.defended(spec, job.payload["model"], job.payload["defense"], cache)
        x, y = eval_set(spec, cache)
        n = len(y)
        with eval_mode(model):
            source = job.payload.get("clean_from")
            if source is None:  # the block's clean source: how many draws one prediction takes, and the clean predictions
                draws = sanity.prediction_draws(model, x, spec.draws)
                prediction = getattr(model, "prediction_name", None) if draws > 1 else None
                clean = predict(model, x, spec.batch_size, draws=draws) == y
            else:
                found = task.dependency(source)
                draws, prediction = int(found.metrics.get("draws") or 1), found.metrics.get("prediction")
                clean = torch.tensor([o["clean_correct"] for o in found.outcomes], dtype=torch.bool, device=y.device)
            clean_accuracy = int(clean.sum()) / n if n else 0.0
            core = {"n": n, "clean_accuracy": clean_accuracy, "draws": draws, **({"prediction": prediction} if prediction else {})}
            clean_only = [{"clean_correct": c} for c in clean.tolist()]
            if job.payload.get("kind") == SANITY:
                start = time.perf_counter()
                flags, metrics = sanity.model_checks(model, x, y, norm=job.labels["norm"], draws=draws)
                chosen = defended.defense(job.payload["defense"])
                if chosen.wraps:  # what the defense declares about the model the attacks face
                    metrics.update(declared_randomized=chosen.randomized, declared_differentiable=chosen.differentiable)
                return JobResult(metrics={**core, **metrics}, flags=flags, seconds=time.perf_counter() - start, outcomes=clean_only)
            if job.payload.get("kind") == CERTIFIED:
                start = time.perf_counter()
                radius = defended.defense(job.payload["defense"]).certify(model, x, y)
                certified = {str(r): float((radius >= r).float().mean()) for r in job.payload["radii"]}
                metrics = {**core, "certified_accuracy": certified, "radius": [round(float(r), 4) for r in radius]}
                return JobResult(metrics=metrics, seconds=time.perf_counter() - start, outcomes=clean_only)
            robust, history = clean, []
            for key, before in job.payload["before"]:
                found = task.dependency(key)
                if found.status != "ok":  # invalid (left its threat model): the cascade goes on from the last valid attack
                    continue
                after = torch.tensor([o["robust"] for o in found.outcomes], dtype=torch.bool, device=y.device)
                attack = ATTACKS.create(before["name"], eps=before["eps"], **before["params"])
                history.append(History(attack, robust & ~after))
                robust = after
            attack = ATTACKS.create(job.payload["attack"], eps=job.payload["eps"], **job.payload["params"])
            chosen = defended.defense(job.payload["defense"])
            transfer = job.payload["convergence_check"] and spec.checks and (chosen.trains or chosen.wraps)
            step = attack_step(
                model,
                x,
                y,
                attack,
                robust=robust,
                history=history,
                batch_size=spec.batch_size,
                checks=spec.checks,
                convergence_check=job.payload["convergence_check"],
                surrogate=defended.undefended(spec, job.payload["model"], cache) if transfer else None,
                draws=draws,
            )
        result = JobResult(flags=step.flags, seconds=step.seconds, status=step.status, outcomes=clean_only)
        result.metrics = {
            **core,
            **step.metrics,
            "cascade": bool(job.payload["before"]) or spec.cascade,
            "adaptive": job.payload["adaptive"],
            "white_box": attack.white_box,
        }
        if step.checks_broke:
            result.metrics["broken_by_checks"] = dict(step.checks_broke)
        result.provenance.update(attacked=int(step.attacked.sum()), broken=int(step.broken.sum()), model_recipe=trained.recipe)  # the cascade's bookkeeping
        if step.status == "ok":
            result.metrics["robust_accuracy"] = int(step.robust.sum()) / n if n else 0.0
            result.outcomes = [{"clean_correct": c, "robust": r} for c, r in zip(clean.tolist(), step.robust.tolist(), strict=True)]
            with eval_mode(model):
                picked = gallery.pick(model, x, y, step)
            if picked:
                result.artifacts = {gallery.ARTIFACT: gallery.encode(picked)}
        return result

    def derive(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[str, list[str]]:
        return rows.derive(records, outcomes)

    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        return rows.cells(records, outcomes)

    def paired(
        self, cells: Sequence[Mapping[str, Any]], records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]], *, fields: Sequence[str]
    ) -> dict[tuple, Any]:
        return cell_vectors(cells, records, outcomes, fields=fields)

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        return robustness_markdown(cells, worst_case=WORST_CASE, explanations=FLAGS)

    def cell_label(self, cell: Mapping[str, Any]) -> str:
        return row_label(cell)

    def gallery(self, records: Sequence[Record], artifacts: Mapping[str, Mapping[str, bytes]]) -> list[Any]:
        return gallery.groups(records, artifacts)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.plots import robustness_curves  # matplotlib loads only when a report draws

        return robustness_curves(cells, worst_case=WORST_CASE)


def with_adaptive_attacks(attacks: list[tuple[AttackSpec, str]], chosen: Mapping[str, tuple[str, dict[str, Any], str] | None]) -> list[tuple[AttackSpec, str]]:
    """Add, per norm, its adaptive attack (``evaluation.adaptive_attack``) after the last white-box attack of that norm, at every eps."""
    out = list(attacks)
    for norm, adaptive in chosen.items():
        if adaptive is None:
            continue
        name, params, label = adaptive
        if any(a.label == label for a, n in attacks if n == norm):  # the spec lists it already
            continue
        grid = tuple(sorted({eps for a, n in attacks if n == norm for eps in a.eps}))
        members = [i for i, (_, n) in enumerate(out) if n == norm]
        position = adaptive_position([ATTACKS.create(out[i][0].name, eps=out[i][0].eps[0], **out[i][0].params) for i in members])
        at = members[position - 1] + 1 if position else members[0]
        out.insert(at, (AttackSpec(name, grid, {**params, "norm": norm}, label), norm))
    return out


def _detected(defense: Any, sanity_record: Record | None) -> dict[str, bool]:
    """What calls for an adaptive attack before the cascade runs: the defense's declarations and the model checks' findings."""
    flags = set(sanity_record.flags) if sanity_record is not None else set()
    return {"randomized": defense.randomized or "randomized" in flags, "masked": not defense.differentiable or "masked-gradients" in flags}


def _ordered(attacks: Sequence[tuple[Any, str]], *, cascade: bool) -> list[tuple[Any, str, float, bool]]:
    """(attack spec, norm, eps, run the convergence check) in plan order.

    In a cascade only the last gradient attack of each chain is checked for
    convergence: later attacks make up for an earlier one stopping short.
    """
    items = [(spec, norm, eps) for spec, norm in attacks for eps in spec.eps]
    last: dict[tuple[str, float], int] = {}
    for i, (spec, norm, eps) in enumerate(items):
        attack = ATTACKS.create(spec.name, eps=eps, **spec.params)
        if attack.white_box and attack.iterative:
            last[norm, eps] = i
    return [(spec, norm, eps, not cascade or last.get((norm, eps)) == i) for i, (spec, norm, eps) in enumerate(items)]
