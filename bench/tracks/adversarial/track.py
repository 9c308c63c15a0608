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
from bench import fields
from bench.errors import UserError
from bench.guard import eval_mode, predict
from bench.runner import job_key
from bench.spec import AttackSpec, ComponentSpec, ModelSpec, RunSpec
from bench.store import Outcome, Record
from bench.tracks import HIGHER, Job, JobResult, Metric, Task, Track
from bench.tracks.adversarial import defended, gallery, sanity
from bench.tracks.adversarial.evaluation import DEFAULT_CASCADE, History, attack_step
from bench.tracks.adversarial.flags import ADVISORY, FLAGS
from bench.training import file_digest
from bench.worker import Cache, dataset, eval_set
from defenses import DEFENSES
from reports.leaderboard import robustness_markdown, row_label

WORST_CASE = "worst-case"
SANITY = "sanity-checks"
CERTIFIED = "certified"
ADAPTIVE_LABELS = ("bpda", "eot", "bpda+eot")
MASKING_GAP = 0.05  # "much more robustness" under plain attacks than under the adaptive one
DEFAULT_DEFENSES = ("none", "pgd-at", "trades", "fast-at", "jpeg", "bit-depth", "randomized-smoothing")
DEFAULT_RADII = (0.25, 0.5, 1.0)
CORE_METRICS = ("n", "clean_accuracy", "robust_accuracy")  # stored beside the attack's own metrics; cells show them as columns


@dataclass(frozen=True)
class AdversarialSection:
    """The adversarial track's part of a spec."""

    cascade: bool  # attacks of one norm and eps run on what earlier ones left robust
    checks: bool  # sanity checks (flags) on models and attacks
    adaptive: bool  # add the adaptive attack (EOT, BPDA) each defense's declared properties call for
    models: tuple[ModelSpec, ...]
    defenses: tuple[ComponentSpec, ...]
    attacks: tuple[AttackSpec, ...]


class AdversarialTrack(Track):
    name = "adversarial"
    plots_title = "Robustness curves"
    fields = ("cascade", "checks", "adaptive", "models", "defenses", "attacks")
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
            models=fields.models_field(raw.get("models"), base_dir),
            defenses=fields.components_field(raw.get("defenses", [{"name": "none"}]), "defenses", "a defense name"),
            attacks=fields.attacks_field(raw.get("attacks")),
        )

    def validate(self, spec: RunSpec, cache: Cache) -> None:
        for i, item in enumerate(spec.defenses):
            defense = defended.defense(item)
            defense.check(dataset(spec, cache).input_shape)
            frozen = [m.label for m in spec.models if not m.train]
            if defense.trains and frozen:
                raise UserError(f"spec.defenses[{i}]: '{item.label}' trains the model, but {frozen[0]} has train = false (a fixed checkpoint)")

    def run_meta(self, spec: RunSpec, cache: Cache) -> dict[str, Any]:
        return {"classes": [str(c) for c in dataset(spec, cache).classes]}  # the gallery's label names

    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        """Per model and defense: sanity checks, certification, then each norm and eps's cascade of attacks.

        The block's first job measures the clean predictions (stored as its
        outcomes); every other job of the block depends on it and reads them,
        so no job's numbers depend on which worker ran what before it.
        """
        jobs: list[Job] = []
        dataset = {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}}
        for model in spec.models:
            # a checkpoint counts by its content, not its path: moving a project keeps its job keys (and attack seeds),
            # and new weights under the same file name get new keys
            checkpoint = file_digest(model.checkpoint) if model.checkpoint else None
            for defense in spec.defenses:
                chosen = DEFENSES.create(defense.name, **defense.params)
                attacks = [(a, ATTACKS.create(a.name, eps=a.eps[0], **a.params).norm) for a in spec.attacks]
                if spec.adaptive:
                    attacks = with_adaptive_attacks(attacks, chosen)
                base = {
                    "model": [model.name, dict(model.params), checkpoint, model.train],
                    "training": spec.training if model.train else None,
                    "defense": [defense.name, dict(defense.params)],
                    "dataset": dataset,
                    "n_examples": spec.n_examples,
                    "seed": spec.seed,
                    "batch_size": spec.batch_size,
                    "checks": spec.checks,
                }
                common = {"model": model.label, "defense": defense.label, "dataset": spec.dataset}
                owner = {"model": model, "defense": defense}
                block = len(jobs)
                if spec.checks:
                    for norm in dict.fromkeys(norm for _, norm in attacks):
                        columns = {**common, "attack": SANITY, "norm": norm, "eps": None}
                        jobs.append(Job(job_key(self.name, {**base, "sanity": norm}), len(jobs), columns, {**owner, "kind": SANITY}))
                if chosen.certifies:
                    radii = sorted({eps for a, norm in attacks if norm == "l2" for eps in a.eps}) or list(DEFAULT_RADII)
                    columns = {**common, "attack": CERTIFIED, "norm": "l2", "eps": None}
                    jobs.append(Job(job_key(self.name, {**base, "certify": radii}), len(jobs), columns, {**owner, "kind": CERTIFIED, "radii": radii}))
                chains: dict[tuple[str, float], list[tuple[str, Mapping[str, Any]]]] = {}
                for attack, norm, eps, converge in _ordered(attacks, cascade=spec.cascade):
                    chain = chains.setdefault((norm, eps), []) if spec.cascade else []
                    key = job_key(self.name, {**base, "attack": [attack.name, dict(attack.params), eps], "after": [k for k, _ in chain], "converge": converge})
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
                source = jobs[block].key  # measures the clean predictions the rest of the block reads
                for i in range(block + 1, len(jobs)):
                    jobs[i] = replace(jobs[i], depends_on=(source, *jobs[i].depends_on), payload={**jobs[i].payload, "clean_from": source})
        return jobs

    def run(self, task: Task, cache: Cache) -> JobResult:
        job, spec = task.job, task.spec
        model, trained = defended.defended(spec, job.payload["model"], job.payload["defense"], cache)
        x, y = eval_set(spec, cache)
        n = len(y)
        with eval_mode(model):
            source = job.payload.get("clean_from")
            if source is None:
                clean = predict(model, x, spec.batch_size) == y
            else:
                clean = torch.tensor([o["clean_correct"] for o in task.dependency(source).outcomes], dtype=torch.bool, device=y.device)
            clean_accuracy = int(clean.sum()) / n if n else 0.0
            core = {"n": n, "clean_accuracy": clean_accuracy}
            clean_only = [{"clean_correct": c} for c in clean.tolist()]
            if job.payload.get("kind") == SANITY:
                start = time.perf_counter()
                flags, metrics = sanity.model_checks(model, x, y, norm=job.labels["norm"])
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
            )
        result = JobResult(flags=step.flags, seconds=step.seconds, status=step.status, outcomes=clean_only)
        result.metrics = {**core, **step.metrics, "cascade": bool(job.payload["before"]) or spec.cascade, "adaptive": job.payload["adaptive"]}
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
        derived: dict[str, list[str]] = {}
        model_flags = {(r.model, r.defense, r.norm): _model_flags(r) for r in records if r.attack == SANITY}
        rows: dict[tuple, dict[float, list[Record]]] = {}
        for record in records:
            if record.attack in (SANITY, CERTIFIED):
                continue
            derived[record.key] = list(model_flags.get((record.model, record.defense, record.norm), []))
            rows.setdefault((record.model, record.defense, record.dataset, record.norm), {}).setdefault(record.eps, []).append(record)
        for by_eps in rows.values():
            worst = [(eps, _worst_case(members, outcomes)[0]) for eps, members in by_eps.items()]
            for eps in sanity.monotone_check([(eps, accuracy) for eps, accuracy in worst if accuracy is not None]):
                for record in by_eps[eps]:
                    derived[record.key].append("not-monotone-in-eps")
            for members in by_eps.values():
                if _masking(members):
                    for record in members:
                        derived[record.key].append("gradient-masking")
        return {key: flags for key, flags in derived.items() if flags}

    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        measured = [r for r in records if r.attack not in (SANITY, CERTIFIED)]
        cells = [_cell(record) for record in measured]
        for record in records:  # certified accuracy at each radius, beside the attacks at that L2 eps
            if record.attack == CERTIFIED and record.status == "ok":
                for radius, accuracy in record.metrics["certified_accuracy"].items():
                    cells.append({**_cell(record), "eps": float(radius), "robust_accuracy": accuracy, "metrics": {"certified": True}, "key": None})
        groups: dict[tuple, list[Record]] = {}
        for record in measured:
            groups.setdefault((record.model, record.defense, record.dataset, record.norm, record.eps), []).append(record)
        for members in groups.values():
            cells.append(_worst_case_cell(members, outcomes))
        return cells

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        return robustness_markdown(cells, worst_case=WORST_CASE, explanations=FLAGS)

    def cell_label(self, cell: Mapping[str, Any]) -> str:
        return row_label(cell)

    def gallery(self, records: Sequence[Record], artifacts: Mapping[str, Mapping[str, bytes]]) -> list[Any]:
        return gallery.groups(records, artifacts)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.plots import robustness_curves  # matplotlib loads only when a report draws

        return robustness_curves(cells, worst_case=WORST_CASE)


def with_adaptive_attacks(attacks: list[tuple[AttackSpec, str]], defense: Any) -> list[tuple[AttackSpec, str]]:
    """Add, per norm, the attack the defense's declared properties call for, after the last plain gradient attack.

    Randomized: EOT over the model's own randomness; not differentiable: BPDA;
    both: BPDA around EOT. It runs at every eps of that norm.
    """
    if defense.differentiable and not defense.randomized:
        return attacks
    name, params, label = "bpda", {"steps": 20}, "bpda"
    if defense.randomized:
        eot = {"distribution": "none", "samples": 4, "steps": 20}
        name, params, label = ("bpda", {"attack": "eot", **eot}, "bpda+eot") if not defense.differentiable else ("eot", eot, "eot")
    out = list(attacks)
    for norm in dict.fromkeys(norm for _, norm in attacks):
        grid = tuple(sorted({eps for a, n in attacks if n == norm for eps in a.eps}))
        last = max(i for i, (a, n) in enumerate(out) if n == norm and ATTACKS.create(a.name, eps=a.eps[0], **a.params).white_box)
        adaptive = AttackSpec(name, grid, {**params, "norm": norm}, label)
        out.insert(last + 1, (adaptive, norm))
    return out


def _model_flags(record: Record) -> list[str]:
    """The sanity job's flags, plus where the model contradicts what its defense declares."""
    flags = list(record.flags)
    if record.metrics.get("declared_differentiable") and "masked-gradients" in flags:
        flags.append("differentiable-claim-false")
    if record.metrics.get("declared_randomized") is False and "randomized" in flags:
        flags.append("randomness-undeclared")
    return flags


def _masking(members: Sequence[Record]) -> bool:
    """The adaptive attack breaks more than MASKING_GAP beyond every plain attack before it."""
    for adaptive in (r for r in members if r.metrics.get("adaptive") and r.status == "ok"):
        plain = [r.robust_accuracy for r in members if not r.metrics.get("adaptive") and r.status == "ok" and r.position < adaptive.position]
        if plain and min(plain) - adaptive.robust_accuracy > MASKING_GAP:
            return True
    return False


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


def _cell(record: Record) -> dict[str, Any]:
    return {
        "track": record.track,
        "model": record.model,
        "defense": record.defense,
        "attack": record.attack,
        "dataset": record.dataset,
        "norm": record.norm,
        "eps": record.eps,
        **{k: record.metrics.get(k) for k in CORE_METRICS},
        "flags": list(record.flags),
        "seconds": record.seconds,
        "status": record.status,
        "error": record.error,
        "params": record.params,
        "metrics": {k: v for k, v in record.metrics.items() if k not in CORE_METRICS},
        "key": record.key,
    }


def _worst_case(members: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> tuple[float | None, int | None, list[Record]]:
    """Per example, robust only if it survived every valid attack: (accuracy, n, the valid attacks)."""
    valid = [r for r in members if r.status == "ok" and r.key in outcomes]
    if not valid:
        return None, None, valid
    per_example = [{o.example: o.robust for o in outcomes[r.key]} for r in valid]
    examples = sorted(per_example[0])
    if not all(sorted(p) == examples for p in per_example):
        return None, None, valid
    n = len(examples)
    survived = sum(all(p[i] for p in per_example) for i in examples)
    return (survived / n if n else 0.0), n, valid


def _worst_case_cell(members: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[str, Any]:
    accuracy, n, valid = _worst_case(members, outcomes)
    flags = {f for r in members for f in r.flags}
    if len(valid) < len(members):
        flags.add("worst-case-incomplete")
    first = members[0]
    return {
        **{k: getattr(first, k) for k in ("track", "model", "defense", "dataset", "norm", "eps")},
        "attack": WORST_CASE,
        "n": n,
        "clean_accuracy": valid[0].clean_accuracy if valid else None,
        "robust_accuracy": accuracy,
        "flags": sorted(flags),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok" if accuracy is not None else "failed",
        "error": None,
        "params": {"attacks": [r.attack for r in valid]},
        "metrics": {"cascade": any(r.metrics.get("cascade") for r in members)},
        "key": None,
    }
