"""Point-cloud classifiers (``pointnet``, ``edgeconv``), registered in ``bench.tracks.gnn.models.GRAPH_MODELS``.

Both follow the graph-model contract (``forward(x, edge_index, edge_weight=None,
batch=None)``, logits per cloud) and classify whole clouds only: the node
features ``x`` are the coordinates. PointNet (Qi et al. 2017, without the
T-Nets) ignores the graph; EdgeConv (DGCNN, Wang et al. 2019) convolves on the
kNN graph it is given, which the point attacks rebuild after moving points.
Neither is differentiable in edge weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import EdgeConv, global_max_pool

from bench.errors import require


def _mlp(*widths: int) -> nn.Sequential:
    """Linear + ReLU layers through ``widths``."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _check(graph_level: bool, hidden: int, dropout: float) -> None:
    require(graph_level, "graph_level", "point-cloud models classify whole clouds: only graph_level=True is supported")
    require(isinstance(hidden, int) and hidden >= 1, "hidden", f"must be an integer >= 1, got {hidden!r}")
    require(isinstance(dropout, int | float) and 0 <= dropout < 1, "dropout", f"must be in [0, 1), got {dropout!r}")


def _head(width: int, hidden: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))


def _batch(x: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    return batch if batch is not None else x.new_zeros(x.shape[0], dtype=torch.long)


class PointNet(nn.Module):
    """A shared MLP on every point, a max over the points of each cloud, an MLP head. The graph is ignored."""

    edge_weights = False
    graph_free = True

    def __init__(self, points: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.points, self.head = points, head

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(global_max_pool(self.points(x), _batch(x, batch)))


class EdgeConvNet(nn.Module):
    """EdgeConv layers (an MLP on ``[x_i, x_j - x_i]``, max over the neighbours) on the given graph, their outputs
    concatenated per point (as in DGCNN), a max over the points of each cloud, an MLP head."""

    edge_weights = False

    def __init__(self, convs: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.convs, self.head = nn.ModuleList(convs), head

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        features = []
        for conv in self.convs:
            x = conv(x, edge_index)
            features.append(x)
        return self.head(global_max_pool(torch.cat(features, dim=1), _batch(x, batch)))


def pointnet(in_features: int, classes: int, *, graph_level: bool = True, hidden: int = 64, layers: int = 3, dropout: float = 0.0) -> PointNet:
    """PointNet (Qi et al. 2017) without its alignment networks.

    hidden: units of the per-point MLP (its last layer has twice as many) and of the head; layers: Linear + ReLU layers per point;
    dropout: before the head's output layer."""
    _check(graph_level, hidden, dropout)
    require(isinstance(layers, int) and layers >= 1, "layers", f"must be an integer >= 1, got {layers!r}")
    widths = [in_features] + [hidden] * (layers - 1) + [2 * hidden]
    return PointNet(_mlp(*widths), _head(2 * hidden, hidden, classes, float(dropout)))


def edgeconv(in_features: int, classes: int, *, graph_level: bool = True, hidden: int = 64, dropout: float = 0.0) -> EdgeConvNet:
    """Two EdgeConv layers (Wang et al. 2019, max aggregation) on the cloud's kNN graph, then a max pool and a head.

    hidden: output units of each EdgeConv MLP (two Linear + ReLU layers) and of the head; dropout: before the head's output layer."""
    _check(graph_level, hidden, dropout)
    convs = [EdgeConv(_mlp(2 * in_features, hidden, hidden), aggr="max"), EdgeConv(_mlp(2 * hidden, hidden), aggr="max")]
    return EdgeConvNet(convs, _head(2 * hidden, hidden, classes, float(dropout)))
