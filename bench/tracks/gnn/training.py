"""Training and evaluating graph networks: full-batch for one graph (node classification), minibatches of graphs otherwise.

Node classification follows the GNN-robustness literature (Geisler et al.
2021): Adam, full batch, the weights of the epoch with the best validation
accuracy kept (the last when there is no validation split). Graph
classification trains on minibatches of graphs (PyG's ``Batch``). One CPU
thread and a seeded generator: the same weights on every machine.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from bench.guard import eval_mode
from bench.tracks.gnn.graphs import GraphSet, NodeGraph
from bench.training import make_optimizer


def train_nodes(
    model: nn.Module, graph: NodeGraph, training: Any, *, seed: int, device: torch.device, edges: tuple[torch.Tensor, torch.Tensor | None] | None = None
) -> nn.Module:
    """Train ``model`` on ``graph``'s training nodes for ``training.epochs`` full-batch epochs; keep the best validation epoch.
    ``edges``: what the model is given instead of the graph's edges (a defense's preprocessed graph, computed once)."""
    torch.manual_seed(seed)
    model = model.to(device)
    edge_index, edge_weight = edges if edges is not None else (graph.edge_index, None)
    x, y, edge_index = graph.x.to(device), graph.y.to(device), edge_index.to(device)
    edge_weight = edge_weight.to(device) if edge_weight is not None else None
    train, val = graph.train_mask.to(device), graph.val_mask.to(device)
    optimizer = make_optimizer(model, training)
    best, best_state = -1.0, None
    for _ in range(training.epochs):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x, edge_index, edge_weight)[train], y[train])
        loss.backward()
        optimizer.step()
        if bool(val.any()):
            with eval_mode(model), torch.no_grad():
                accuracy = (model(x, edge_index, edge_weight)[val].argmax(1) == y[val]).float().mean().item()
            if accuracy > best:
                best, best_state = accuracy, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def node_predictions(model: nn.Module, graph: NodeGraph, nodes: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Predicted classes of ``nodes`` (eval mode)."""
    with eval_mode(model), torch.no_grad():
        return model(graph.x.to(device), graph.edge_index.to(device))[nodes.to(device)].argmax(1).cpu()


def batches(graphs: Sequence[Any], batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None) -> list[Batch]:
    order = torch.randperm(len(graphs), generator=generator).tolist() if shuffle else list(range(len(graphs)))
    return [Batch.from_data_list([graphs[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size)]


def train_graphs(model: nn.Module, data: GraphSet, training: Any, *, seed: int, device: torch.device) -> nn.Module:
    """Train a graph classifier on ``data.train`` in minibatches of ``training.batch_size`` graphs for ``training.epochs`` epochs."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device)
    optimizer = make_optimizer(model, training)
    for _ in range(training.epochs):
        model.train()
        for batch in batches(data.train, training.batch_size, shuffle=True, generator=generator):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(batch.x, batch.edge_index, None, batch.batch), batch.y.view(-1)).backward()
            optimizer.step()
    model.eval()
    return model


def graph_predictions(model: nn.Module, graphs: Sequence[Any], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes of ``graphs`` (eval mode), in order."""
    found = []
    with eval_mode(model), torch.no_grad():
        for batch in batches(graphs, batch_size):
            batch = batch.to(device)
            found.append(model(batch.x, batch.edge_index, None, batch.batch).argmax(1).cpu())
    return torch.cat(found) if found else torch.empty(0, dtype=torch.long)
