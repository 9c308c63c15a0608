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
from typing import Any

import torch

from attacks import ATTACKS
from bench import sanity
from bench.errors import UserError
from bench.evaluation import DEFAULT_CASCADE, History, attack_step
from bench.flags import FLAGS
from bench.guard import eval_mode, predict
from bench.runner import Context, job_key
from bench.spec import AttackSpec, RunSpec
from bench.store import Example, Outcome, Record
from bench.tracks import Job, JobResult, Track
from bench.training import file_digest
from defenses import DEFENSES
from reports.leaderboard import robustness_markdown

WORST_CASE = "worst-case"
SANITY = "sanity-checks"
CERTIFIED = "certified"
ADAPTIVE_LABELS = ("bpda", "eot", "bpda+eot")
MASKING_GAP = 0.05  # "much more robustness" under plain attacks than under the adaptive one
DEFAULT_DEFENSES = ("none", "pgd-at", "trades", "fast-at", "jpeg", "bit-depth", "randomized-smoothing")
DEFAULT_RADII = (0.25, 0.5, 1.0)
GALLERY_SIZE = 4  # examples kept per job for the report's gallery


class AdversarialTrack(Track):
    name = "adversarial"
    plots_title = "Robustness curves"

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

    def validate(self, spec: RunSpec, context: Context) -> None:
        for i, item in enumerate(spec.defenses):
            defense = context.defense(item)
            defense.check(context.data.input_shape)
            frozen = [m.label for m in spec.models if not m.train]
            if defense.trains and frozen:
                raise UserError(f"spec.defenses[{i}]: '{item.label}' trains the model, but {frozen[0]} has train = false (a fixed checkpoint)")

    def plan(self, spec: RunSpec) -> list[Job]:
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
        return jobs

    def run(self, job: Job, context: Context) -> JobResult:
        model = context.model(job.payload["model"], job.payload["defense"])
        x, y = context.eval_set()
        with eval_mode(model):
            clean_key = ("clean", id(model))
            if clean_key not in context.memo:
                context.memo[clean_key] = predict(model, x, context.spec.batch_size) == y
            clean = context.memo[clean_key]
            n = len(y)
            clean_accuracy = int(clean.sum()) / n if n else 0.0
            if job.payload.get("kind") == SANITY:
                start = time.perf_counter()
                flags, metrics = sanity.model_checks(model, x, y, norm=job.columns["norm"])
                chosen = context.defense(job.payload["defense"])
                if chosen.wraps:  # what the defense declares about the model the attacks face
                    metrics.update(declared_randomized=chosen.randomized, declared_differentiable=chosen.differentiable)
                return JobResult(n=n, clean_accuracy=clean_accuracy, flags=flags, metrics=metrics, seconds=time.perf_counter() - start)
            if job.payload.get("kind") == CERTIFIED:
                start = time.perf_counter()
                radius = context.defense(job.payload["defense"]).certify(model, x, y)
                certified = {str(r): float((radius >= r).float().mean()) for r in job.payload["radii"]}
                metrics = {"certified_accuracy": certified, "radius": [round(float(r), 4) for r in radius]}
                return JobResult(n=n, clean_accuracy=clean_accuracy, metrics=metrics, seconds=time.perf_counter() - start)
            robust, history = clean, []
            for key, before in job.payload["before"]:
                outcomes = context.outcomes(key)
                if outcomes is None:  # failed or invalid: the cascade goes on from the last valid attack
                    continue
                after = torch.tensor([o.robust for o in outcomes], dtype=torch.bool, device=y.device)
                attack = ATTACKS.create(before["name"], eps=before["eps"], **before["params"])
                history.append(History(attack, robust & ~after))
                robust = after
            attack = ATTACKS.create(job.payload["attack"], eps=job.payload["eps"], **job.payload["params"])
            chosen = context.defense(job.payload["defense"])
            transfer = job.payload["convergence_check"] and context.spec.checks and (chosen.trains or chosen.wraps)
            step = attack_step(
                model,
                x,
                y,
                attack,
                robust=robust,
                history=history,
                batch_size=context.spec.batch_size,
                checks=context.spec.checks,
                convergence_check=job.payload["convergence_check"],
                surrogate=context.undefended(job.payload["model"]) if transfer else None,
            )
        result = JobResult(n=n, clean_accuracy=clean_accuracy, flags=step.flags, seconds=step.seconds, status=step.status)
        result.metrics = {**step.metrics, "cascade": bool(job.depends_on) or context.spec.cascade, "adaptive": job.payload["adaptive"]}
        result.provenance.update(attacked=int(step.attacked.sum()), broken=int(step.broken.sum()))  # the cascade's bookkeeping
        trained = context.trained.get((job.columns["model"], job.columns["defense"]))
        if trained is not None:
            result.provenance["model_recipe"] = trained.recipe
        if step.status == "ok":
            result.robust_accuracy = int(step.robust.sum()) / n if n else 0.0
            result.outcomes = [Outcome(i, bool(c), bool(r)) for i, (c, r) in enumerate(zip(clean.tolist(), step.robust.tolist(), strict=True))]
            with eval_mode(model):
                result.examples = _gallery(model, x, y, step)
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
        "n": record.n,
        "clean_accuracy": record.clean_accuracy,
        "robust_accuracy": record.robust_accuracy,
        "flags": list(record.flags),
        "seconds": record.seconds,
        "status": record.status,
        "error": record.error,
        "params": record.params,
        "metrics": record.metrics,
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


def _gallery(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: Any) -> list[Example]:
    """A few points this attack ran on, for the report's gallery: the ones it broke first, then ones that held."""
    broken, held = step.broken.nonzero().flatten(), (step.attacked & step.robust).nonzero().flatten()
    chosen = sorted(torch.cat([broken, held])[:GALLERY_SIZE].tolist())
    if not chosen:
        return []
    index = torch.tensor(chosen, device=y.device)
    clean_prediction, adversarial_prediction = predict(model, x[index]), predict(model, step.x_adv[index])
    return [
        Example(i, int(y[i]), int(c), int(a), x[i].float().cpu().numpy(), step.x_adv[i].float().cpu().numpy())
        for i, c, a in zip(chosen, clean_prediction.tolist(), adversarial_prediction.tolist(), strict=True)
    ]
