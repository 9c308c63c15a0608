"""Graph networks, registered by name (``bench list graph-models``).

Every factory is ``factory(in_features, classes, *, graph_level=False, **params)`` (a user's
factory may leave out ``graph_level``: it is passed only to factories that name it)
and returns an ``nn.Module`` whose ``forward(x, edge_index, edge_weight=None,
batch=None)`` gives logits per node (``graph_level``: per graph, after a
pooling over ``batch``). A module whose output is differentiable in
``edge_weight`` sets ``edge_weights = True``: gradient attacks on the structure
(PR-BCD, GR-BCD) attack it directly; the others are attacked by transfer from
a GCN trained on the same graph (the track records which).

* ``gcn`` (Kipf & Welling 2017), ``gat`` (Velickovic et al. 2018),
  ``gin`` (Xu et al. 2019, sum aggregation weighted by the edge weights),
  ``sage`` (Hamilton et al. 2017), ``appnp`` (Gasteiger et al. 2019);
* ``mlp``: ignores the graph, the baseline every graph result is compared to.

Point-cloud networks (``pointnet``, ``edgeconv``) are in ``bench.tracks.gnn.point_models``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import APPNP, GATConv, GCNConv, SAGEConv, global_max_pool, global_mean_pool
from torch_geometric.nn.conv import MessagePassing

from bench.errors import require
from bench.registry import Registry

GRAPH_MODELS: Registry = Registry("graph model", entry_points="frontier_bench.graph_models", import_paths=True)

POOLS = {"mean": global_mean_pool, "max": global_max_pool}


class WeightedGINConv(MessagePassing):
    """GIN's update ``MLP((1 + eps) x_i + sum_j w_ji x_j)``, the sum weighted by the edge weights (1 without)."""

    def __init__(self, mlp: nn.Module, eps: float = 0.0) -> None:
        super().__init__(aggr="add")
        self.mlp, self.eps = mlp, eps

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp((1 + self.eps) * x + self.propagate(edge_index, x=x, edge_weight=edge_weight))

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor | None) -> torch.Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j


def dense_gcn(conv: GCNConv, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``conv`` on a dense weighted adjacency (n, n), as GCNConv computes it on the same weights as edges: self loops of
    weight 1 where the diagonal is 0, symmetric degree normalization, messages from row to column."""
    a = adjacency + torch.diag((adjacency.diagonal() == 0).to(adjacency.dtype))
    scale = a.sum(0).clamp(min=1e-12).pow(-0.5)  # in-degrees (at the column), as gcn_norm
    return (scale[:, None] * a * scale[None, :]).t() @ conv.lin(x) + conv.bias


class GraphNet(nn.Module):
    """Layers of one convolution kind with ReLU and dropout between them, an optional pooling head.

    ``edge_index`` may be a dense float adjacency (n, n) instead of edges when every layer is a sum-aggregating GCNConv
    (``dense_adjacency``): a defense whose graph is dense (svd) then costs one matrix product per layer, not n^2 messages."""

    def __init__(self, convs: list[nn.Module], *, weighted: bool, dropout: float, graph_level: bool, pool: str, hidden: int, classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.edge_weights = weighted
        self.dense_adjacency = weighted and all(type(conv) is GCNConv for conv in convs) and not graph_level
        self.dropout = dropout
        self.pool = POOLS[pool] if graph_level else None
        self.head = nn.Linear(hidden, classes) if graph_level else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = nn.functional.dropout(x, self.dropout, self.training)
            if edge_index.is_floating_point():
                x = dense_gcn(conv, x, edge_index)
            else:
                x = conv(x, edge_index, edge_weight) if self.edge_weights else conv(x, edge_index)
            if i < last or self.head is not None:
                x = x.relu()
        if self.head is not None:
            x = self.head(self.pool(x, batch if batch is not None else x.new_zeros(x.shape[0], dtype=torch.long)))
        return x


def _sizes(in_features: int, classes: int, hidden: int, layers: int, graph_level: bool) -> list[tuple[int, int]]:
    require(isinstance(layers, int) and layers >= 1, "layers", f"must be an integer >= 1, got {layers!r}")
    require(isinstance(hidden, int) and hidden >= 1, "hidden", f"must be an integer >= 1, got {hidden!r}")
    dims = [in_features] + [hidden] * (layers - 1) + [hidden if graph_level else classes]
    return list(zip(dims[:-1], dims[1:], strict=True))


def _check_pool(pool: str) -> None:
    require(pool in POOLS, "pool", f"must be one of {', '.join(POOLS)}, got {pool!r}")


@GRAPH_MODELS.register("gcn", description="graph convolutional network (Kipf & Welling 2017); aggr='median' is the median defense")
def gcn(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 32,  # units per hidden layer
    layers: int = 2,  # graph convolutions
    dropout: float = 0.5,  # dropout before each layer
    aggr: str = "add",  # 'add' (GCN) or 'median' (the median defense; not differentiable in edge weights)
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> GraphNet:
    _check_pool(pool)
    require(aggr in ("add", "median"), "aggr", f"must be 'add' or 'median', got {aggr!r}")
    if aggr == "median":
        from torch_geometric.nn.aggr import MedianAggregation

        convs = [GCNConv(a, b, aggr=MedianAggregation()) for a, b in _sizes(in_features, classes, hidden, layers, graph_level)]
    else:
        convs = [GCNConv(a, b) for a, b in _sizes(in_features, classes, hidden, layers, graph_level)]
    return GraphNet(convs, weighted=aggr == "add", dropout=dropout, graph_level=graph_level, pool=pool, hidden=hidden, classes=classes)


@GRAPH_MODELS.register("gat", description="graph attention network (Velickovic et al. 2018); attacked on the structure by transfer")
def gat(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 8,  # units per hidden layer
    heads: int = 8,  # attention heads of the hidden layers (the last layer has one)
    layers: int = 2,  # graph convolutions
    dropout: float = 0.5,  # dropout before each layer
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> GraphNet:
    _check_pool(pool)
    require(isinstance(heads, int) and heads >= 1, "heads", f"must be an integer >= 1, got {heads!r}")
    sizes = _sizes(in_features, classes, hidden, layers, graph_level)
    convs: list[nn.Module] = []
    for i, (a, b) in enumerate(sizes):
        last = i == len(sizes) - 1
        width_in = a if i == 0 else hidden * heads
        convs.append(GATConv(width_in, b, heads=1 if last else heads, dropout=dropout))
    return GraphNet(convs, weighted=False, dropout=dropout, graph_level=graph_level, pool=pool, hidden=hidden, classes=classes)


@GRAPH_MODELS.register("gin", description="graph isomorphism network (Xu et al. 2019), sum aggregation weighted by edge weights")
def gin(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 32,  # units per hidden layer
    layers: int = 2,  # graph convolutions
    dropout: float = 0.5,  # dropout before each layer
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> GraphNet:
    _check_pool(pool)
    convs: list[nn.Module] = []
    for a, b in _sizes(in_features, classes, hidden, layers, graph_level):
        convs.append(WeightedGINConv(nn.Sequential(nn.Linear(a, hidden), nn.ReLU(), nn.Linear(hidden, b))))
    return GraphNet(convs, weighted=True, dropout=dropout, graph_level=graph_level, pool=pool, hidden=hidden, classes=classes)


@GRAPH_MODELS.register("sage", description="GraphSAGE, mean aggregation (Hamilton et al. 2017); attacked on the structure by transfer")
def sage(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 32,  # units per hidden layer
    layers: int = 2,  # graph convolutions
    dropout: float = 0.5,  # dropout before each layer
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> GraphNet:
    _check_pool(pool)
    convs = [SAGEConv(a, b) for a, b in _sizes(in_features, classes, hidden, layers, graph_level)]
    return GraphNet(convs, weighted=False, dropout=dropout, graph_level=graph_level, pool=pool, hidden=hidden, classes=classes)


class APPNPNet(nn.Module):
    """An MLP's predictions propagated by personalized PageRank (Gasteiger et al. 2019)."""

    edge_weights = True

    def __init__(self, mlp: nn.Module, k: int, alpha: float, dropout: float, graph_level: bool, pool: str, classes: int) -> None:
        super().__init__()
        self.mlp, self.propagation, self.dropout = mlp, APPNP(k, alpha), dropout
        self.pool = POOLS[pool] if graph_level else None
        self.head = nn.Linear(classes, classes) if graph_level else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        x = self.propagation(self.mlp(nn.functional.dropout(x, self.dropout, self.training)), edge_index, edge_weight)
        if self.head is not None:
            x = self.head(self.pool(x, batch if batch is not None else x.new_zeros(x.shape[0], dtype=torch.long)))
        return x


@GRAPH_MODELS.register("appnp", description="APPNP: an MLP, then K steps of personalized PageRank (Gasteiger et al. 2019)")
def appnp(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 64,  # units per hidden layer
    k: int = 10,  # propagation steps
    alpha: float = 0.1,  # teleport probability
    dropout: float = 0.5,  # dropout before each layer
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> APPNPNet:
    _check_pool(pool)
    require(isinstance(k, int) and k >= 1, "k", f"must be an integer >= 1, got {k!r}")
    require(isinstance(alpha, int | float) and 0 < alpha <= 1, "alpha", f"must be in (0, 1], got {alpha!r}")
    mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))
    return APPNPNet(mlp, k, float(alpha), dropout, graph_level, pool, classes)


class GraphFreeMLP(nn.Module):
    """An MLP on the node features alone: the graph is ignored (its output cannot move under structure attacks)."""

    edge_weights = False
    graph_free = True

    def __init__(self, mlp: nn.Module, graph_level: bool, pool: str) -> None:
        super().__init__()
        self.mlp = mlp
        self.pool = POOLS[pool] if graph_level else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        if self.pool is not None:
            return self.mlp[-1](self.pool(self.mlp[:-1](x), batch if batch is not None else x.new_zeros(x.shape[0], dtype=torch.long)))
        return self.mlp(x)


@GRAPH_MODELS.register("mlp", description="an MLP on the node features that ignores the graph: the baseline every GNN is compared to")
def mlp(
    in_features: int,
    classes: int,
    *,
    graph_level: bool = False,
    hidden: int = 64,  # units per hidden layer
    dropout: float = 0.5,  # dropout before each layer
    pool: str = "mean",  # graph-level readout: 'mean' or 'max'
) -> GraphFreeMLP:
    _check_pool(pool)
    require(isinstance(hidden, int) and hidden >= 1, "hidden", f"must be an integer >= 1, got {hidden!r}")
    layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes)]
    return GraphFreeMLP(nn.Sequential(*layers), graph_level, pool)


GRAPH_MODELS.register("pointnet", "bench.tracks.gnn.point_models:pointnet", description="PointNet: a shared MLP per point, max-pooled (ignores the graph)")
GRAPH_MODELS.register("edgeconv", "bench.tracks.gnn.point_models:edgeconv", description="EdgeConv (DGCNN) on the kNN graph of the points")


def differentiable_in_edges(model: nn.Module) -> bool:
    """Whether gradients w.r.t. edge weights reach the output (PR-BCD / GR-BCD can attack it directly)."""
    return bool(getattr(model, "edge_weights", False))


def graph_free(model: nn.Module) -> bool:
    return bool(getattr(model, "graph_free", False))


def make(name: str, params: dict[str, Any], in_features: int, classes: int, graph_level: bool) -> nn.Module:
    return GRAPH_MODELS.create(name, context={"in_features": in_features, "classes": classes, "graph_level": graph_level}, **params)
