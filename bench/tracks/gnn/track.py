"""The GNN track: how robust are graph networks, and their defenses, to attacks on the structure, the features and the points?

One job per model x defense x attack x budget x mode x seed. Its model is
trained on the clean graph (behind the defense's preprocessing, with the
defense's model change), memoized per worker by its recipe; the attack then
perturbs the graph at its budget against the attacked test nodes (evasion),
or the model is retrained on the perturbed graph (``poisoning = true``). Every
perturbed graph is verified against its threat model (``threat``): a
violation makes the job invalid. Per test node (or test graph) the job keeps
whether it was classified correctly before and after, so the leaderboard's
worst case over attacks counts a node broken if any attack broke it.

Modes: ``adaptive`` attacks the whole pipeline, defense included (for a
structure gradient attack that needs a model differentiable in its edge
weights); ``transfer`` applies the perturbation found on a surrogate (the same
model without the defense, or a GCN for a model that is not differentiable in
its edges), which is how graph defenses were long evaluated. Defended models
get both, so the leaderboard shows when a defense only holds against
transferred perturbations (flag ``gradient-masking``, Mujkanovic et al. 2022).
A transfer job depends on its surrogate's job when that is in the plan and
reads the flipped edges from it; otherwise it runs the surrogate itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import fields
from bench.errors import UserError, one_line
from bench.runner import job_key
from bench.spec import RunSpec
from bench.store import Outcome, Record
from bench.tracks import HIGHER, LOWER, Job, JobResult, Metric, Task, Track
from bench.tracks.gnn.attacks import edge_budget, flip
from bench.tracks.gnn.defenses import Defended
from bench.tracks.gnn.graphs import GraphSet, NodeGraph
from bench.tracks.gnn.models import graph_free
from bench.tracks.gnn.section import (
    ADAPTIVE,
    BUDGETS,
    TRANSFER,
    GNNSection,
    GraphAttackSpec,
    GraphModel,
    applies,
    attacks_field,
    differentiable,
    graph_model,
    is_graph_free,
    make_defense,
    surrogate_of,
)
from bench.tracks.gnn.threat import violations
from bench.tracks.gnn.training import graph_predictions, node_predictions, train_graphs
from bench.worker import Cache, dataset, dataset_id, resolve_device
from reports.gnn import EXPLANATIONS


class GNNTrack(Track):
    name = "gnn"
    plots_title = "Accuracy against the attack budget"
    fields = ("models", "defenses", "attacks", "poisoning", "transfer", "surrogate")
    replicates = True
    datasets = "graphs"
    dimensions = ("model", "defense", "attack", "mode", "budget", "dataset", "seed")
    cell_dimensions = ("model", "defense", "attack", "mode", "budget_unit", "budget", "dataset")
    metrics = {
        "clean_accuracy": Metric(
            HIGHER, "fraction", "accuracy on the attacked test nodes (or graphs) of the clean graph", scope=("model", "defense", "dataset")
        ),
        "robust_accuracy": Metric(HIGHER, "fraction", "accuracy on the attacked test nodes (or graphs) after the attack"),
        "relative_drop": Metric(LOWER, "fraction", "1 - robust / clean accuracy"),
        "*_accuracy_low": Metric(HIGHER, "fraction", "lower end of the 95 % t-interval over seeds"),
        "*_accuracy_high": Metric(HIGHER, "fraction", "upper end of the 95 % t-interval over seeds"),
        "seeds": Metric(HIGHER, "", "seeds that finished"),
    }
    explanations = EXPLANATIONS

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A contextual SBM: GCN (with Jaccard and SVD defenses), GAT and the graph-free MLP under DICE and PR-BCD at 1, 5, 10
        and 25 % of the edges; 3 seeds, one job per core."""
        return {
            "dataset": "csbm",
            "seed": 0,
            "seeds": 3,
            "models": [{"name": "gcn"}, {"name": "gat"}, {"name": "mlp"}],
            "defenses": [{"name": "none"}, {"name": "jaccard"}, {"name": "svd"}],
            "attacks": [{"name": "dice", "budget": BUDGETS}, {"name": "prbcd", "budget": BUDGETS}],
            "training": {"epochs": 200, "lr": 0.01, "weight_decay": 5e-4},
            "executor": {"name": "processes"},  # every job runs on one thread (reproducible weights): one job per core
        }

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> GNNSection:
        from bench.catalog import registry

        models = tuple(graph_model(item, f"spec.models[{i}]", base_dir) for i, item in enumerate(fields._table_list(raw.get("models"), "spec.models")))
        fields._unique("spec.models", [m.label for m in models])
        defenses = fields.components_field(raw.get("defenses", [{"name": "none"}]), "defenses", "a graph defense name", "graph-defenses")
        surrogate = raw.get("surrogate", "gcn")
        if not isinstance(surrogate, str) or surrogate not in registry("graph-models"):
            raise fields.fail("spec.surrogate", f"must be a registered graph model name, got {surrogate!r}")
        return GNNSection(
            models=models,
            defenses=defenses,
            attacks=attacks_field(raw.get("attacks")),
            poisoning=fields.boolean(raw, "poisoning", False),
            transfer=fields.boolean(raw, "transfer", True),
            surrogate=surrogate,
        )

    def validate(self, spec: RunSpec, cache: Cache) -> None:
        """Every model built and run on the data; attacks and defenses that fit its kind (one line each, before any compute)."""
        data = dataset(spec, cache)
        level = data.level
        for i, attack in enumerate(spec.attacks):
            made = attack.create()
            if level not in made.levels:
                raise UserError(f"spec.attacks[{i}] ({attack.label}): attacks {' and '.join(made.levels)} datasets; {spec.dataset} is a {level} dataset")
            if made.kind == "points" and not getattr(data, "points", False):
                raise UserError(f"spec.attacks[{i}] ({attack.label}): moves points of point clouds; {spec.dataset} has none")
        for i, defense in enumerate(spec.defenses):
            if level not in make_defense(defense).levels:
                raise UserError(f"spec.defenses[{i}] ({defense.label}): defends node classification on one graph; {spec.dataset} is a {level} dataset")
        if spec.n_examples is not None and level == "nodes" and spec.n_examples > len(data.test_nodes):
            raise UserError(f"spec.n_examples: {spec.n_examples} asked for, but {spec.dataset} has {len(data.test_nodes)} test nodes")
        for i, model in enumerate(spec.models):
            try:
                net = _built(model, data, spec.seed, None)
                out = _forward(net, data)
            except UserError as error:
                raise UserError(f"spec.models[{i}] ({model.label}): {error}") from None
            except Exception as error:  # a user's model that does not run on this data: one line, not a traceback
                raise UserError(f"spec.models[{i}] ({model.label}): does not run on {spec.dataset}: {one_line(error)}") from None
            if out.shape[-1] != data.num_classes:
                raise UserError(
                    f"spec.models[{i}] ({model.label}): returns {out.shape[-1]} logits per {level[:-1]}; {spec.dataset} has {data.num_classes} classes"
                )

    def run_meta(self, spec: RunSpec, cache: Cache) -> dict[str, Any]:
        data = dataset(spec, cache)
        return {"classes": list(data.classes)}

    # -- jobs ---------------------------------------------------------------------
    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        common = {
            "dataset": {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}},
            "n_examples": spec.n_examples,
            "training": asdict(spec.training),
            "poisoning": spec.poisoning,
        }
        seeds = range(spec.seed, spec.seed + spec.seeds)
        jobs: list[Job] = []
        keys: dict[tuple, str] = {}

        def add(
            model: GraphModel, defense: fields.ComponentSpec, attack: GraphAttackSpec, budget: float, seed: int, mode: str, surrogate: GraphModel | None
        ) -> None:
            depends = keys.get((surrogate.label, "none", attack.label, budget, seed)) if surrogate is not None else None
            identity = {
                **common,
                "model": model.identity,
                "defense": defense.identity,
                "attack": [attack.name, dict(attack.params), attack.code],
                "budget": budget,
                "seed": seed,
                "mode": mode,
                "surrogate": surrogate.identity if surrogate is not None else None,
            }
            labels = {
                "model": model.label,
                "defense": defense.label,
                "attack": attack.label,
                "mode": mode,
                "budget": budget,
                "dataset": spec.dataset,
                "seed": seed,
            }
            payload = {
                "model": model,
                "defense": defense,
                "attack": attack,
                "budget": budget,
                "seed": seed,
                "mode": mode,
                "surrogate": surrogate,
                "params": {"seed": seed},
            }
            key = job_key(self.name, identity)
            keys[(model.label, defense.label, attack.label, budget, seed)] = key
            jobs.append(Job(key, len(jobs), labels, payload, depends_on=(depends,) if depends else ()))

        later: list[tuple] = []
        for model in spec.models:
            for defense in spec.defenses:
                if not applies(model, defense):
                    continue
                for attack in spec.attacks:
                    made = attack.create()
                    structure_gradient = made.kind == "structure" and made.gradient
                    direct = not structure_gradient or differentiable(model, defense) or is_graph_free(model)  # graph-free: nothing to move
                    for budget in attack.budgets:
                        for seed in seeds:
                            if direct:
                                add(model, defense, attack, budget, seed, ADAPTIVE, None)
                            if structure_gradient and not is_graph_free(model) and (not direct or (spec.transfer and defense.name != "none")):
                                later.append((model, defense, attack, budget, seed))
        for model, defense, attack, budget, seed in later:  # after their surrogates' jobs, whose keys they depend on
            add(model, defense, attack, budget, seed, TRANSFER, surrogate_of(model, spec))
        return jobs

    def run(self, task: Task, cache: Cache) -> JobResult:
        start = time.perf_counter()
        spec: RunSpec = task.spec
        payload = task.job.payload
        model_spec: GraphModel = payload["model"]
        defense = make_defense(payload["defense"])
        attack_spec: GraphAttackSpec = payload["attack"]
        attack = attack_spec.create()
        budget, seed, mode = payload["budget"], payload["seed"], payload["mode"]
        data = dataset(spec, cache)
        device = resolve_device(spec.device)
        trained, train_seconds = _trained(spec, cache, model_spec, payload["defense"], seed, data, device)
        net = Defended(trained, defense)
        generator = torch.Generator().manual_seed(seed)
        attack_start = time.perf_counter()
        flags: list[str] = []
        metrics: dict[str, Any] = {"kind": attack.kind, "budget_unit": attack.budget_unit, "level": data.level, "seed": seed, "graph_free": graph_free(trained)}
        if isinstance(data, NodeGraph):
            targets = _targets(spec, data)
            clean_correct = node_predictions(net, data, targets, device) == data.y[targets]
            allowed = edge_budget(data, budget) if attack.kind == "structure" else None
            if attack.kind == "structure" and is_graph_free(model_spec, trained):
                perturbed = data  # its predictions do not read the graph: no perturbation can move them
                metrics["skipped"] = "graph-free model: structure perturbations cannot change its predictions"
            elif mode == TRANSFER:
                perturbed = _transferred(task, cache, data, attack_spec, budget, seed, device)
                flags += [] if differentiable(model_spec, payload["defense"]) else ["transfer-only"]
            else:
                perturbed = attack.perturb(net, data, budget, targets=targets, generator=generator)
            problems = violations(attack.kind, data, perturbed, budget, unit=attack.budget_unit, allowed=allowed)
            if problems:
                return _invalid(problems, metrics, start)
            if spec.poisoning:
                net, _ = _fit(spec, model_spec, payload["defense"], perturbed, seed, device)
            robust_correct = node_predictions(net, perturbed, targets, device) == data.y[targets]
            metrics.update(allowed=allowed, n_targets=len(targets))
            if attack.kind == "structure":
                pairs = _flipped(data, perturbed)
                metrics.update(changed=len(pairs), flips=pairs)
            else:
                metrics["changed"] = int(((perturbed.x - data.x).abs().amax(dim=1) > 0).sum())
        else:
            graphs = list(data.test[: spec.n_examples] if spec.n_examples else data.test)
            labels = torch.cat([g.y.view(-1) for g in graphs])
            clean_correct = graph_predictions(net, graphs, device) == labels
            perturbed = attack.perturb_graphs(net, graphs, budget, generator=generator, device=device, feature_range=data.feature_range)
            problems = violations(
                attack.kind, graphs, perturbed, budget, unit=attack.budget_unit, norm=getattr(attack, "norm", "linf"), feature_range=data.feature_range
            )
            if problems:
                return _invalid(problems, metrics, start)
            robust_correct = graph_predictions(net, perturbed, device) == labels
            metrics.update(allowed=None, n_targets=len(graphs), changed=None)
        clean, robust = clean_correct.float().mean().item(), robust_correct.float().mean().item()
        metrics.update(
            clean_accuracy=clean,
            robust_accuracy=robust,
            relative_drop=1 - robust / clean if clean > 0 else None,
            surrogate=payload["surrogate"].label if payload["surrogate"] is not None else None,
            attack_seconds=time.perf_counter() - attack_start,
            train_seconds=train_seconds,
        )
        outcomes = [{"clean": bool(c), "robust": bool(r)} for c, r in zip(clean_correct.tolist(), robust_correct.tolist(), strict=True)]
        return JobResult(metrics=metrics, flags=flags, seconds=time.perf_counter() - start, outcomes=outcomes)

    # -- rendering ----------------------------------------------------------------
    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        from reports.gnn import aggregate

        return aggregate(records, outcomes)

    def derive(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[str, list[str]]:
        from reports.gnn import gradient_masking

        return gradient_masking(records)

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        from reports.gnn_tables import gnn_markdown

        return gnn_markdown(cells)

    def summary(self, cells: Sequence[Mapping[str, Any]]) -> list[str]:
        from reports.gnn_tables import summary_lines

        return summary_lines(cells)

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        from reports.gnn_tables import tables

        return tables(cells)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.gnn_plots import figures

        return figures(cells)

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.gnn_plots import images

        return images(cells)


# -- running ------------------------------------------------------------------------
def _built(model: GraphModel, data: NodeGraph | GraphSet, seed: int, defense: fields.ComponentSpec | None) -> nn.Module:
    torch.manual_seed(seed)
    extra = dict(make_defense(defense).model_params) if defense is not None else {}
    net = model.build(data.num_features, data.num_classes, data.level == "graphs", extra)
    if model.checkpoint_path is not None:
        from models.checkpoint import read_state_dict

        net.load_state_dict(read_state_dict(model.checkpoint_path))
    return net


def _forward(net: nn.Module, data: NodeGraph | GraphSet) -> torch.Tensor:
    from bench.guard import eval_mode

    with eval_mode(net), torch.no_grad():
        if isinstance(data, NodeGraph):
            return net(data.x, data.edge_index)
        from bench.tracks.gnn.training import batches

        batch = batches(data.test[:4], 4)[0]
        return net(batch.x, batch.edge_index, None, batch.batch)


def _fit(
    spec: RunSpec, model: GraphModel, defense_spec: fields.ComponentSpec, data: NodeGraph | GraphSet, seed: int, device: torch.device
) -> tuple[nn.Module, float]:
    """``model`` with ``defense`` trained on ``data`` (the defense's preprocessing computed once), behind the defense."""
    start = time.perf_counter()
    defense = make_defense(defense_spec)
    net = _built(model, data, seed, defense_spec)
    if model.train:
        if isinstance(data, NodeGraph):
            with torch.no_grad():
                edges = Defended(net, defense).edges(data.x.to(device), data.edge_index.to(device))
            net = defense.fit(net, data, spec.training, seed=seed, device=device, edges=edges)
        else:
            net = train_graphs(net, data, spec.training, seed=seed, device=device)
    return Defended(net.to(device).eval(), defense), time.perf_counter() - start


def _trained(
    spec: RunSpec, cache: Cache, model: GraphModel, defense: fields.ComponentSpec, seed: int, data: Any, device: torch.device
) -> tuple[nn.Module, float]:
    """The model trained on the clean graph, once per worker and recipe; returns the inner model (its defense is re-wrapped)."""
    key = ["gnn-model", dataset_id(spec, cache), model.identity, defense.identity, asdict(spec.training), seed, str(device)]
    defended, seconds = cache.get(key, lambda: _fit(spec, model, defense, data, seed, device))
    return defended.model, seconds


def _targets(spec: RunSpec, data: NodeGraph) -> torch.Tensor:
    nodes = data.test_nodes
    return nodes[: spec.n_examples] if spec.n_examples else nodes


def _flipped(clean: NodeGraph, perturbed: NodeGraph) -> list[list[int]]:
    """The undirected pairs (u < v) whose edge the attack inserted or removed."""
    a = {(u, v) for u, v in clean.edge_index.t().tolist() if u < v}
    b = {(u, v) for u, v in perturbed.edge_index.t().tolist() if u < v}
    return [list(pair) for pair in sorted(a ^ b)]


def _transferred(task: Task, cache: Cache, data: NodeGraph, attack_spec: GraphAttackSpec, budget: float, seed: int, device: torch.device) -> NodeGraph:
    """The surrogate's perturbation: read from its stored job when there is one, else computed here (memoized per worker)."""
    for dependency in task.dependencies.values():
        if dependency.status == "ok" and dependency.metrics.get("flips") is not None:
            pairs = torch.tensor(dependency.metrics["flips"], dtype=torch.long).reshape(-1, 2).t()
            return data.with_edges(flip(data, pairs)) if pairs.numel() else data
    spec: RunSpec = task.spec
    surrogate: GraphModel = task.job.payload["surrogate"]
    none = fields.ComponentSpec("none")

    def make() -> NodeGraph:
        trained, _ = _trained(spec, cache, surrogate, none, seed, data, device)
        return attack_spec.create().perturb(trained, data, budget, targets=_targets(spec, data), generator=torch.Generator().manual_seed(seed))

    return cache.get(["gnn-surrogate", dataset_id(spec, cache), surrogate.identity, attack_spec.label, attack_spec.code, budget, seed, spec.n_examples], make)


def _invalid(problems: list[str], metrics: dict[str, Any], start: float) -> JobResult:
    return JobResult(status="invalid", metrics=metrics, flags=["threat-model-violated"], seconds=time.perf_counter() - start, error="; ".join(problems))
