"""What the GNN track's datasets are: one graph for node classification, or a set of graphs for graph classification.

Every registered graph dataset (``bench.tracks.gnn.datasets.GRAPH_DATASETS``,
``bench list graphs``) returns one of these. Edges are stored undirected
(both directions), without self loops or duplicates, as PyG's ``edge_index``.
The split is fixed by the dataset (the public split where one exists, else
drawn once with ``bench.data.SPLIT_SEED``): the run's seeds vary model
initialization and the attacks, as in the image tracks.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def undirected(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Both directions of every edge, no self loops, no duplicates, sorted (row-major)."""
    row, col = edge_index
    keep = row != col
    row, col = row[keep], col[keep]
    both = torch.cat([torch.stack([row, col]), torch.stack([col, row])], dim=1)
    ids = torch.unique(both[0] * num_nodes + both[1])
    return torch.stack([ids // num_nodes, ids % num_nodes])


@dataclass(frozen=True, eq=False)
class NodeGraph:
    """One graph whose nodes are classified (csbm, karate, Cora, ...)."""

    name: str
    x: torch.Tensor  # (n, d) float32 node features
    edge_index: torch.Tensor  # (2, 2m) int64: both directions of the m undirected edges, no self loops
    y: torch.Tensor  # (n,) int64
    train_mask: torch.Tensor  # (n,) bool
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    classes: Sequence[str]
    feature_range: tuple[float, float] | None = None  # bounds of the features (bag of words: (0, 1)); None: unbounded

    level = "nodes"

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        """Undirected edges (each counted once)."""
        return int(self.edge_index.shape[1]) // 2

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def y_test(self) -> torch.Tensor:
        return self.y[self.test_mask]

    @property
    def test_nodes(self) -> torch.Tensor:
        return self.test_mask.nonzero().flatten()

    @functools.cached_property
    def fingerprint(self) -> str:
        return _digest(self.x, self.edge_index, self.y, self.train_mask, self.val_mask, self.test_mask)

    def with_edges(self, edge_index: torch.Tensor) -> NodeGraph:
        return replace(self, edge_index=edge_index)

    def with_features(self, x: torch.Tensor) -> NodeGraph:
        return replace(self, x=x)


@dataclass(frozen=True, eq=False)
class GraphSet:
    """Graphs that are classified whole (point clouds, TU datasets): lists of ``torch_geometric.data.Data``
    with ``x``, ``edge_index`` (undirected), ``y`` (shape (1,)) and, for point clouds, ``pos`` (k, 3)."""

    name: str
    train: Sequence[object]
    test: Sequence[object]
    classes: Sequence[str]
    points: bool = False  # point clouds: ``pos`` holds the coordinates, ``x`` is built from them
    feature_range: tuple[float, float] | None = None

    level = "graphs"

    @property
    def num_features(self) -> int:
        return int(self.train[0].x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def y_test(self) -> torch.Tensor:
        return torch.cat([g.y.view(-1) for g in self.test])

    @functools.cached_property
    def fingerprint(self) -> str:
        tensors = [t for g in (*self.train, *self.test) for t in (g.x, g.edge_index, g.y)]
        return _digest(*tensors)
