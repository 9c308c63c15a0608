"""Attacks on graphs, registered by name (``bench list graph-attacks``): the GNN track's own registry.

An attack changes one thing, declared as its ``kind``:

* ``structure``: flips undirected edges; the budget is a fraction of the
  clean graph's edges (0.05: 5 % of them may be inserted or removed).
  ``random``, ``dice`` (Waniek et al. 2018), ``prbcd`` and ``grbcd`` (Geisler
  et al. 2021, PyG's implementations). Gradient attacks (``gradient = True``)
  need a model differentiable in its edge weights.
* ``features``: moves node features inside an Linf ball of radius ``budget``
  (``feature-pgd``), clipped to the data's feature range when it has one.
* ``points``: moves or drops the points of a point cloud
  (``bench.tracks.gnn.point_attacks``).

``perturb`` returns the perturbed graph; it never certifies itself: the
track verifies every perturbed graph against the threat model
(``bench.tracks.gnn.threat``) and a violation invalidates the job.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.errors import require
from bench.registry import Registry
from bench.tracks.gnn.graphs import NodeGraph, undirected

GRAPH_ATTACKS: Registry = Registry("graph attack", entry_points="frontier_bench.graph_attacks", import_paths=True)


class GraphAttack:
    """Base class: ``perturb(model, graph, budget, targets=..., generator=...)`` for one graph (node classification),
    ``perturb_graphs(model, graphs, budget, generator=..., device=..., feature_range=...)`` for graph classification
    (``feature_range``: the dataset's bounds of node features, None when unbounded)."""

    kind = "structure"  # structure | features | points
    levels: tuple[str, ...] = ("nodes",)  # 'nodes': one graph, node classification; 'graphs': graph classification
    gradient = False  # needs gradients through the model (structure: w.r.t. edge weights)
    budget_unit = "edges"  # how the budget reads: 'edges' (fraction of edges), 'eps', 'points' (fraction of points)

    def perturb(self, model: nn.Module, graph: NodeGraph, budget: float, *, targets: torch.Tensor, generator: torch.Generator) -> NodeGraph:
        raise NotImplementedError

    def perturb_graphs(
        self, model: nn.Module, graphs: Sequence[Any], budget: float, *, generator: torch.Generator, device: torch.device, feature_range: Any = None
    ) -> list[Any]:
        raise NotImplementedError


def edge_budget(graph: NodeGraph, budget: float) -> int:
    """Edge flips allowed at a budget fraction of the clean graph's undirected edges (rounded down)."""
    return int(math.floor(budget * graph.num_edges + 1e-9))


def flip(graph: NodeGraph, pairs: torch.Tensor) -> torch.Tensor:
    """``graph``'s edge_index with each undirected pair (2, k) flipped: removed if present, inserted if not."""
    n = graph.num_nodes
    row, col = graph.edge_index
    present = set((row * n + col).tolist())
    lo, hi = torch.minimum(pairs[0], pairs[1]), torch.maximum(pairs[0], pairs[1])
    remove, insert = [], []
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        (remove if a * n + b in present else insert).append((a, b))
    ids = row * n + col
    if remove:
        r = torch.tensor(remove)
        gone = torch.cat([r[:, 0] * n + r[:, 1], r[:, 1] * n + r[:, 0]])
        ids = ids[~torch.isin(ids, gone)]
    kept = torch.stack([ids // n, ids % n])
    added = torch.tensor(insert, dtype=torch.long).t().reshape(2, -1)
    return undirected(torch.cat([kept, added], dim=1), n)


class RandomFlips(GraphAttack):
    """Flip ``budget`` x edges uniformly random node pairs (half removals of existing edges, half insertions)."""

    def perturb(self, model: nn.Module, graph: NodeGraph, budget: float, *, targets: torch.Tensor, generator: torch.Generator) -> NodeGraph:
        k, n = edge_budget(graph, budget), graph.num_nodes
        row, col = graph.edge_index
        upper = (row < col).nonzero().flatten()
        removals = k // 2
        chosen = upper[torch.randperm(len(upper), generator=generator)[: min(removals, len(upper))]]
        pairs = [graph.edge_index[:, chosen]]
        present = set((row * n + col).tolist())
        inserted: set[int] = set()
        need = k - pairs[0].shape[1]
        while need > 0:
            a, b = torch.randint(0, n, (2, 4 * need + 8), generator=generator)
            for u, v in zip(a.tolist(), b.tolist(), strict=True):
                lo, hi = min(u, v), max(u, v)
                if lo != hi and lo * n + hi not in present and lo * n + hi not in inserted and need > 0:
                    inserted.add(lo * n + hi)
                    need -= 1
        pairs.append(torch.tensor([[i // n for i in inserted], [i % n for i in inserted]], dtype=torch.long).reshape(2, -1))
        return graph.with_edges(flip(graph, torch.cat(pairs, dim=1)))


class DICE(GraphAttack):
    """DICE (Waniek et al. 2018): "delete internally, connect externally" using the true labels: each flip removes an edge
    between two nodes of one class or inserts one between two classes, half and half."""

    def perturb(self, model: nn.Module, graph: NodeGraph, budget: float, *, targets: torch.Tensor, generator: torch.Generator) -> NodeGraph:
        k, n, y = edge_budget(graph, budget), graph.num_nodes, graph.y
        row, col = graph.edge_index
        internal = ((row < col) & (y[row] == y[col])).nonzero().flatten()
        removals = min(k // 2, len(internal))
        chosen = internal[torch.randperm(len(internal), generator=generator)[:removals]]
        pairs = [graph.edge_index[:, chosen]]
        present = set((row * n + col).tolist())
        inserted: set[int] = set()
        need = k - removals
        tries = 0
        while need > 0 and tries < 1000:
            tries += 1
            a, b = torch.randint(0, n, (2, 4 * need + 8), generator=generator)
            for u, v in zip(a.tolist(), b.tolist(), strict=True):
                lo, hi = min(u, v), max(u, v)
                if y[lo] != y[hi] and lo * n + hi not in present and lo * n + hi not in inserted and need > 0:
                    inserted.add(lo * n + hi)
                    need -= 1
        pairs.append(torch.tensor([[i // n for i in inserted], [i % n for i in inserted]], dtype=torch.long).reshape(2, -1))
        return graph.with_edges(flip(graph, torch.cat(pairs, dim=1)))


class _PyGAttack(GraphAttack):
    """PR-BCD / GR-BCD through PyG's ``torch_geometric.contrib.nn`` implementations (evasion, global, on the target nodes)."""

    gradient = True

    def __init__(self, epochs: int, block_size: int) -> None:
        require(isinstance(epochs, int) and epochs >= 1, "epochs", f"must be an integer >= 1, got {epochs!r}")
        require(isinstance(block_size, int) and block_size >= 1, "block_size", f"must be an integer >= 1, got {block_size!r}")
        self.epochs, self.block_size = epochs, block_size

    def build(self, model: nn.Module) -> Any:
        raise NotImplementedError

    def perturb(self, model: nn.Module, graph: NodeGraph, budget: float, *, targets: torch.Tensor, generator: torch.Generator) -> NodeGraph:
        k = edge_budget(graph, budget)
        if k == 0:
            return graph
        device = next(model.parameters()).device
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attack = self.build(model)
            state = torch.random.get_rng_state()
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # PyG samples blocks from the global generator
            try:
                edge_index, _ = attack.attack(graph.x.to(device), graph.edge_index.to(device), graph.y.to(device), budget=k, idx_attack=targets.to(device))
            finally:
                torch.random.set_rng_state(state)
        return graph.with_edges(undirected(edge_index.cpu(), graph.num_nodes))


class PRBCD(_PyGAttack):
    """Projected randomized block coordinate descent (Geisler et al. 2021): a relaxed flip per pair of a random block,
    projected on the budget, resampled, then sampled into discrete flips."""

    def __init__(
        self,
        epochs: int = 125,  # attack steps (PyG's default)
        epochs_resampling: int = 100,  # of them, the first ones that resample the block's weakest pairs
        block_size: int = 10_000,  # node pairs relaxed at a time (Geisler et al.: a random block, not all n^2)
        lr: float = 1000.0,  # step size, scaled by PyG with the budget and the block
        loss: str = "prob_margin",  # PyG's loss name: prob_margin, masked, margin, tanh_margin, ...
    ) -> None:
        super().__init__(epochs, block_size)
        require(
            isinstance(epochs_resampling, int) and 0 <= epochs_resampling <= epochs,
            "epochs_resampling",
            f"must be an integer in [0, epochs], got {epochs_resampling!r}",
        )
        self.epochs_resampling, self.lr, self.loss = epochs_resampling, float(lr), loss

    def build(self, model: nn.Module) -> Any:
        from torch_geometric.contrib.nn import PRBCDAttack

        return PRBCDAttack(model, self.block_size, epochs=self.epochs, epochs_resampling=self.epochs_resampling, loss=self.loss, lr=self.lr, log=False)


class GRBCD(_PyGAttack):
    """Greedy randomized block coordinate descent (Geisler et al. 2021): the flips with the largest gradient, a few per step."""

    def __init__(
        self,
        epochs: int = 125,  # attack steps (flips are spread over them)
        block_size: int = 10_000,  # node pairs scored at a time
        loss: str = "masked",  # PyG's loss name
    ) -> None:
        super().__init__(epochs, block_size)
        self.loss = loss

    def build(self, model: nn.Module) -> Any:
        from torch_geometric.contrib.nn import GRBCDAttack

        return GRBCDAttack(model, self.block_size, epochs=self.epochs, loss=self.loss, log=False)


class FeaturePGD(GraphAttack):
    """Projected gradient ascent on the node features (every node's) inside an Linf ball, on the targets' cross-entropy;
    clipped to the data's feature range when it has one. The budget is the radius."""

    kind = "features"
    levels = ("nodes", "graphs")
    gradient = True
    budget_unit = "eps"

    def __init__(
        self,
        steps: int = 50,  # gradient steps
        step_size: float = 0.1,  # per step, as a fraction of the budget (eps)
    ) -> None:
        require(isinstance(steps, int) and steps >= 1, "steps", f"must be an integer >= 1, got {steps!r}")
        require(isinstance(step_size, int | float) and step_size > 0, "step_size", f"must be > 0 (a fraction of the budget), got {step_size!r}")
        self.steps, self.step_size = steps, float(step_size)

    def _ascend(self, loss_of: Any, x: torch.Tensor, eps: float, feature_range: tuple[float, float] | None) -> torch.Tensor:
        delta = torch.zeros_like(x, requires_grad=True)
        for _ in range(self.steps):
            loss = loss_of(x + delta)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta += self.step_size * eps * grad.sign()
                delta.clamp_(-eps, eps)
                if feature_range is not None:
                    delta.copy_((x + delta).clamp(*feature_range) - x)
        return (x + delta).detach()

    def perturb(self, model: nn.Module, graph: NodeGraph, budget: float, *, targets: torch.Tensor, generator: torch.Generator) -> NodeGraph:
        if budget == 0:
            return graph
        device = next(model.parameters()).device
        edge_index, y, t = graph.edge_index.to(device), graph.y.to(device), targets.to(device)
        x = self._ascend(lambda z: nn.functional.cross_entropy(model(z, edge_index)[t], y[t]), graph.x.to(device), budget, graph.feature_range)
        return graph.with_features(x.cpu())

    def perturb_graphs(
        self, model: nn.Module, graphs: Sequence[Any], budget: float, *, generator: torch.Generator, device: torch.device, feature_range: Any = None
    ) -> list[Any]:
        from bench.tracks.gnn.training import batches

        out = []
        for batch in batches(graphs, 256):
            batch = batch.to(device)
            x = self._ascend(
                lambda z, b=batch: nn.functional.cross_entropy(model(z, b.edge_index, None, b.batch), b.y.view(-1)), batch.x, budget, feature_range
            )
            batch.x = x
            out.extend(g.cpu() for g in batch.to_data_list())
        return out


GRAPH_ATTACKS.register("random", RandomFlips, description="flips uniformly random node pairs (half removals, half insertions)")
GRAPH_ATTACKS.register("dice", DICE, description="DICE: delete edges inside classes, connect across classes (Waniek et al. 2018)")
GRAPH_ATTACKS.register("prbcd", PRBCD, description="PR-BCD, projected randomized block coordinate descent (Geisler et al. 2021; PyG)")
GRAPH_ATTACKS.register("grbcd", GRBCD, description="GR-BCD, greedy randomized block coordinate descent (Geisler et al. 2021; PyG)")
GRAPH_ATTACKS.register("feature-pgd", FeaturePGD, description="PGD on node features in an Linf ball (the budget is eps)")
GRAPH_ATTACKS.register(
    "point-perturb", "bench.tracks.gnn.point_attacks:PointPerturb", description="PGD on point coordinates (Linf or L2 per point; the budget is eps)"
)
GRAPH_ATTACKS.register(
    "point-drop", "bench.tracks.gnn.point_attacks:PointDrop", description="drops the most salient points (the budget is the fraction dropped)"
)
