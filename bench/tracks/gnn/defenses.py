"""Defenses of graph networks, registered by name (``bench list graph-defenses``): the GNN track's own registry.

A defense is either a preprocessing of the graph applied before the model,
at training and at test time (``preprocess``), or a change of the model
(``model_params``, merged into the model's factory parameters). Each declares
whether it is differentiable in the edge weights, so the track knows what its
adaptive attack is: gradient attacks go through the whole pipeline (for
``jaccard``, whose pruning is a hard threshold, the mask is held constant, as
BPDA's identity would: gradients reach the edges it keeps); a defense that
blocks them (``median``) is attacked by transfer and says so.

* ``none``: the model as it is.
* ``jaccard`` (GCN-Jaccard, Wu et al. 2019): drop edges whose endpoints'
  features have a Jaccard similarity (binary features) or cosine similarity
  (real features) below ``threshold``.
* ``svd`` (GCN-SVD, Entezari et al. 2020): replace the adjacency matrix by its
  rank-``rank`` approximation (dense; negative entries clipped to 0 so that
  the GCN's degree normalization is defined).
* ``median`` (Geisler et al. 2021's robust aggregation; PyG's
  ``MedianAggregation``): the model's sum aggregation becomes a median.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from bench.errors import require
from bench.registry import Registry
from bench.tracks.gnn.graphs import NodeGraph
from bench.tracks.gnn.training import train_nodes

GRAPH_DEFENSES: Registry = Registry("graph defense", entry_points="frontier_bench.graph_defenses", import_paths=True)

Edges = tuple[torch.Tensor, torch.Tensor | None]


class GraphDefense:
    """Base class: no preprocessing, no change of the model."""

    differentiable = True  # gradients w.r.t. edge weights pass through it (the adaptive attack attacks the pipeline)
    model_params: Mapping[str, Any] = {}  # merged into the model factory's parameters (an architecture defense)
    preprocesses = False
    needs_edge_weights = False  # its graph carries weights: only models that read edge weights can take it
    levels: tuple[str, ...] = ("nodes", "graphs")  # the datasets it applies to

    def fit(self, model: nn.Module, graph: NodeGraph, training: Any, *, seed: int, device: torch.device, edges: Edges) -> nn.Module:
        """Train ``model`` (behind this defense, which gave ``edges``) on ``graph``: plain training unless the defense trains."""
        return train_nodes(model, graph, training, seed=seed, device=device, edges=edges)

    def preprocess(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> Edges:
        return edge_index, edge_weight

    def preprocess_dense(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> torch.Tensor | None:
        """The same graph as a dense weighted adjacency (n, n), where that is the cheaper form; None: use ``preprocess``."""
        return None


class Defended(nn.Module):
    """``model`` behind ``defense``'s preprocessing: the pipeline attacks and evaluation see (same forward signature)."""

    def __init__(self, model: nn.Module, defense: GraphDefense) -> None:
        super().__init__()
        self.model, self.defense = model, defense
        self.edge_weights = bool(getattr(model, "edge_weights", False)) and defense.differentiable

    def edges(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None) -> Edges:
        """What the model behind the defense is given: the preprocessed edges, or a dense adjacency where both sides can."""
        if getattr(self.model, "dense_adjacency", False):
            dense = self.defense.preprocess_dense(x, edge_index, edge_weight)
            if dense is not None:
                return dense, None
        return self.defense.preprocess(x, edge_index, edge_weight)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        edge_index, edge_weight = self.edges(x, edge_index, edge_weight)
        return self.model(x, edge_index, edge_weight, batch)


class NoDefense(GraphDefense):
    """The model as it is."""


class Jaccard(GraphDefense):
    """GCN-Jaccard: edges between dissimilar nodes are dropped before the model sees the graph."""

    preprocesses = True
    levels = ("nodes",)

    def __init__(
        self,
        threshold: float = 0.01,  # the feature similarity an edge needs to stay (Jaccard for binary features, else cosine)
    ) -> None:
        require(isinstance(threshold, int | float) and 0 <= threshold <= 1, "threshold", f"must be a similarity in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)

    def similarity(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        a, b = x[edge_index[0]], x[edge_index[1]]
        if bool(((x == 0) | (x == 1)).all()):  # binary features (bag of words): Jaccard
            inter = (a * b).sum(1)
            union = ((a + b) > 0).float().sum(1)
            return inter / union.clamp(min=1)
        return nn.functional.cosine_similarity(a, b, dim=1)

    def preprocess(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> Edges:
        with torch.no_grad():
            keep = self.similarity(x.detach(), edge_index) >= self.threshold
        if edge_weight is None:
            return edge_index[:, keep], None
        return edge_index, edge_weight * keep.to(edge_weight.dtype)  # the mask is constant: gradients reach kept edges


class LowRank(GraphDefense):
    """GCN-SVD: the adjacency replaced by its best rank-``rank`` approximation (a dense graph with weights)."""

    preprocesses = True
    needs_edge_weights = True
    levels = ("nodes",)

    def __init__(
        self,
        rank: int = 10,  # rank of the approximation (Entezari et al.: 10 to 50)
    ) -> None:
        require(isinstance(rank, int) and rank >= 1, "rank", f"must be an integer >= 1, got {rank!r}")
        self.rank = rank

    def preprocess(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> Edges:
        low = self.preprocess_dense(x, edge_index, edge_weight)
        index = (low.detach() > 0).nonzero().t()
        return index, low[index[0], index[1]]

    def preprocess_dense(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> torch.Tensor:
        n = x.shape[0]
        weight = edge_weight if edge_weight is not None else torch.ones(edge_index.shape[1], device=x.device)
        dense = torch.zeros(n, n, device=x.device, dtype=weight.dtype).index_put((edge_index[0], edge_index[1]), weight, accumulate=True)
        k = min(self.rank, n)
        # The top singular vectors by randomized subspace iteration (Halko et al.): its backward runs through matrix products,
        # QR and the SVD of a small (k + 8) x n matrix, so ties among the discarded singular values (a sparse graph has many) never
        # reach it; the full SVD's backward divides by every gap and turns such ties into nan.
        with torch.random.fork_rng(devices=[dense.device] if dense.device.type == "cuda" else []):
            torch.manual_seed(0)  # its random start: the same low-rank graph every time (a defense, not a randomized one)
            u, s, v = torch.svd_lowrank(dense, q=min(k + 8, n), niter=4)
        vh = v.t()
        low = ((u[:, :k] * s[:k]) @ vh[:k]).clamp(min=0)
        return low * (1 - torch.eye(n, device=x.device, dtype=low.dtype))  # the model adds its own self loops


class Median(GraphDefense):
    """The model's aggregation replaced by the median of the neighbours' messages (not differentiable in edge weights)."""

    differentiable = False
    model_params = {"aggr": "median"}


class PRBCDTraining(GraphDefense):
    """Adversarial training on the structure (Xu et al. 2019; Geisler et al. 2021): training alternates with PR-BCD
    perturbing the training graph against the current model on the training nodes; every ``every`` epochs the model
    continues on a freshly perturbed graph (the first round on the clean one)."""

    levels = ("nodes",)
    needs_edge_weights = True  # PR-BCD needs gradients w.r.t. the edges

    def __init__(
        self,
        budget: float = 0.1,  # edge flips per perturbed training graph, as a fraction of the edges
        every: int = 20,  # epochs between perturbations
        attack_epochs: int = 20,  # PR-BCD steps per perturbation (a short attack: training calls it often)
    ) -> None:
        require(isinstance(budget, int | float) and 0 < budget <= 1, "budget", f"must be a fraction in (0, 1], got {budget!r}")
        require(isinstance(every, int) and every >= 1, "every", f"must be an integer >= 1, got {every!r}")
        require(isinstance(attack_epochs, int) and attack_epochs >= 1, "attack_epochs", f"must be an integer >= 1, got {attack_epochs!r}")
        self.budget, self.every, self.attack_epochs = float(budget), every, attack_epochs

    def fit(self, model: nn.Module, graph: NodeGraph, training: Any, *, seed: int, device: torch.device, edges: Edges) -> nn.Module:
        from bench.tracks.gnn.attacks import PRBCD

        attack = PRBCD(epochs=self.attack_epochs, epochs_resampling=self.attack_epochs * 4 // 5)
        generator = torch.Generator().manual_seed(seed)
        rounds = max(1, -(-training.epochs // self.every))
        current = graph
        for r in range(rounds):
            if r > 0:
                current = attack.perturb(model, graph, self.budget, targets=graph.train_mask.nonzero().flatten(), generator=generator)
            epochs = min(self.every, training.epochs - r * self.every)  # the rounds add up to training.epochs
            model = train_nodes(model, current, replace(training, epochs=epochs), seed=seed + r, device=device)
        return model


GRAPH_DEFENSES.register("none", NoDefense, description="no defense")
GRAPH_DEFENSES.register("jaccard", Jaccard, description="GCN-Jaccard: drop edges between dissimilar nodes (Wu et al. 2019)")
GRAPH_DEFENSES.register("svd", LowRank, description="GCN-SVD: a low-rank approximation of the adjacency (Entezari et al. 2020)")
GRAPH_DEFENSES.register("median", Median, description="median aggregation instead of the sum (PyG's MedianAggregation)")
GRAPH_DEFENSES.register("prbcd-at", PRBCDTraining, description="adversarial training against PR-BCD on the training nodes (Xu et al. 2019)")
