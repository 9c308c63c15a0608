"""bench.tracks.gnn.datasets: the generated graphs, and PyG's Planetoid and TU loaders on tiny files written here in their real formats."""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn
from torch_geometric.nn import GCNConv

from bench.errors import ParamError, UserError
from bench.tracks.gnn.datasets import GRAPH_DATASETS, split_masks
from bench.tracks.gnn.graphs import NodeGraph, undirected

GENERATED = ["csbm", "karate", "ba-house"]  # need no files


def _check_node_graph(graph: NodeGraph) -> None:
    """The invariants every node-classification dataset keeps: dtypes, undirected simple edges, disjoint masks."""
    n = graph.num_nodes
    assert graph.x.dtype == torch.float32 and graph.y.dtype == torch.int64 and graph.y.shape == (n,)
    assert torch.equal(graph.edge_index, undirected(graph.edge_index, n))  # both directions, sorted, no duplicates
    assert bool((graph.edge_index[0] != graph.edge_index[1]).all())
    assert int(graph.edge_index.max()) < n
    masks = torch.stack([graph.train_mask, graph.val_mask, graph.test_mask])
    assert masks.dtype == torch.bool and masks.shape == (3, n)
    assert int(masks.sum(0).max()) <= 1
    assert int(graph.y.max()) < graph.num_classes


# -- generated and bundled graphs ---------------------------------------------------
@pytest.mark.parametrize("name", GENERATED)
def test_generated_graphs_keep_the_invariants_and_cover_every_node(name):
    graph = GRAPH_DATASETS.create(name)
    _check_node_graph(graph)
    assert bool((graph.train_mask | graph.val_mask | graph.test_mask).all())
    assert set(graph.y[graph.train_mask].tolist()) == set(range(graph.num_classes))  # stratified: every class trains
    assert GRAPH_DATASETS.meta(name)["description"]


@pytest.mark.parametrize("name", GENERATED)
def test_generation_is_repeatable_and_leaves_the_global_generators_alone(name):
    torch.manual_seed(5)
    np.random.seed(5)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(5)
    np.random.seed(5)
    first = GRAPH_DATASETS.create(name)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    np.random.seed(7)  # PyG's BA generator draws from numpy: another state must not change the graph
    assert GRAPH_DATASETS.create(name).fingerprint == first.fingerprint


def test_csbm_seed_draws_another_graph_on_the_same_split():
    first, second = GRAPH_DATASETS.create("csbm", seed=0), GRAPH_DATASETS.create("csbm", seed=1)
    assert first.fingerprint != second.fingerprint
    assert not torch.equal(first.x, second.x)
    assert first.edge_index.shape != second.edge_index.shape or not torch.equal(first.edge_index, second.edge_index)
    assert torch.equal(first.train_mask, second.train_mask) and torch.equal(first.test_mask, second.test_mask)


def test_csbm_defaults_and_split_sizes():
    graph = GRAPH_DATASETS.create("csbm")
    assert (graph.num_nodes, graph.num_features, graph.num_classes) == (300, 16, 3)
    assert torch.bincount(graph.y).tolist() == [100, 100, 100]
    assert (int(graph.train_mask.sum()), int(graph.val_mask.sum()), int(graph.test_mask.sum())) == (90, 60, 150)
    assert graph.feature_range is None
    same_class = graph.y[graph.edge_index[0]] == graph.y[graph.edge_index[1]]
    assert 0.7 < same_class.float().mean().item() < 0.95  # homophilous, not a disjoint union of classes


@pytest.mark.parametrize(
    ("params", "field"),
    [({"nodes": 1}, "nodes"), ({"classes": 0}, "classes"), ({"p_in": 1.5}, "p_in"), ({"train": 0.0}, "train"), ({"train": 0.6, "val": 0.4}, "val")],
)
def test_csbm_bad_parameter_names_itself(params, field):
    with pytest.raises(ParamError, match=f"^{field}: ") as error:
        GRAPH_DATASETS.create("csbm", **params)
    assert error.value.field == field and "\n" not in str(error.value)


class _GCN(nn.Module):
    def __init__(self, features: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv1, self.conv2 = GCNConv(features, hidden), GCNConv(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(nn.functional.dropout(self.conv1(x, edge_index).relu(), 0.5, self.training), edge_index)


class _MLP(nn.Module):
    def __init__(self, features: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(features, hidden), nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.linear2(nn.functional.dropout(self.linear1(x).relu(), 0.5, self.training))


def _test_accuracy(model: nn.Module, graph: NodeGraph, epochs: int = 200) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(graph.x, graph.edge_index)[graph.train_mask], graph.y[graph.train_mask]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(graph.x, graph.edge_index).argmax(1)
    return (predictions[graph.test_mask] == graph.y_test).float().mean().item()


def test_csbm_graph_is_worth_ten_points_over_the_features():
    """What the track relies on: on the default csbm, a GCN beats an MLP on the same features by a wide margin."""
    graph = GRAPH_DATASETS.create("csbm")
    torch.manual_seed(0)
    gcn = _test_accuracy(_GCN(graph.num_features, graph.num_classes), graph)
    torch.manual_seed(0)
    mlp = _test_accuracy(_MLP(graph.num_features, graph.num_classes), graph)
    assert gcn >= 0.85 and gcn >= mlp + 0.10, (gcn, mlp)


def test_karate_is_the_bundled_club():
    graph = GRAPH_DATASETS.create("karate")
    assert (graph.num_nodes, graph.num_edges, graph.num_classes, graph.num_features) == (34, 78, 4, 34)
    assert int(graph.val_mask.sum()) == 0
    halves = [round(int(count) / 2) for count in torch.bincount(graph.y)]
    assert [int(graph.train_mask[graph.y == c].sum()) for c in range(4)] == halves


def test_ba_house_counts_and_roles():
    graph = GRAPH_DATASETS.create("ba-house")
    assert graph.num_nodes == 300 + 5 * 80 and list(graph.classes) == ["base", "middle", "bottom", "top"]
    assert torch.bincount(graph.y).tolist() == [300, 160, 160, 80]
    assert graph.num_features == 11 and torch.equal(graph.x.sum(1), torch.ones(graph.num_nodes))  # degree one-hot
    constant = GRAPH_DATASETS.create("ba-house", features="constant", nodes=50, motifs=10)
    assert constant.num_nodes == 100 and torch.equal(constant.x, torch.ones(100, 1))
    with pytest.raises(ParamError, match="^motifs: "):
        GRAPH_DATASETS.create("ba-house", nodes=20, motifs=30)


def test_split_masks_are_stratified_disjoint_and_complete():
    y = torch.tensor([0] * 10 + [1] * 5 + [2])
    train, val, test = split_masks(y, 0.5, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(train.int() + val.int() + test.int(), torch.ones(len(y), dtype=torch.int))
    assert [int(train[y == c].sum()) for c in range(3)] == [5, 2, 1]  # at least one per class
    assert [int(val[y == c].sum()) for c in range(3)] == [2, 1, 0]
    again = split_masks(y, 0.5, 0.2, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again, strict=True))


def test_registry_lists_the_datasets():
    assert set(GRAPH_DATASETS.names()) == {"csbm", "karate", "ba-house", "planetoid", "tu", "shapes"}


# -- Planetoid's format -------------------------------------------------------------
LABELED, ALL_TRAIN, TESTED, WIDTH, CLASSES = 6, 520, 20, 8, 3  # PyG's public split takes the 500 nodes after the labeled as validation


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


def _write_planetoid(root: Path, prefix: str = "cora", folder: str = "Cora") -> dict:
    """Planetoid's raw files (Yang et al. 2016): ``x``/``y`` the labeled training nodes, ``allx``/``ally`` every
    non-test node (the labeled first), ``tx``/``ty`` the test nodes in the order of ``test.index`` (node ids after
    ``allx``, written shuffled), features as pickled scipy CSR matrices, labels as pickled one-hot arrays, ``graph``
    a pickled dict from a node to its neighbours (here a ring, with a self loop and a duplicate to clean)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = ALL_TRAIN + TESTED
    labels = np.arange(n) % CLASSES
    features = (rng.random((n, WIDTH)) < 0.3).astype(np.float32)
    one_hot = np.eye(CLASSES, dtype=np.int64)[labels]
    test_index = rng.permutation(np.arange(ALL_TRAIN, n))
    graph: defaultdict[int, list[int]] = defaultdict(list)
    for node in range(n):
        graph[node].append((node + 1) % n)
    graph[0] += [0, 1]
    files = {
        "x": sp.csr_matrix(features[:LABELED]),
        "y": one_hot[:LABELED],
        "allx": sp.csr_matrix(features[:ALL_TRAIN]),
        "ally": one_hot[:ALL_TRAIN],
        "tx": sp.csr_matrix(features[test_index]),
        "ty": one_hot[test_index],
        "graph": graph,
    }
    for name, obj in files.items():
        _pickle(raw / f"ind.{prefix}.{name}", obj)
    (raw / f"ind.{prefix}.test.index").write_text("".join(f"{i}\n" for i in test_index))
    return {"features": features, "labels": labels, "test_index": test_index}


def test_planetoid_reads_the_raw_files_with_the_public_split(tmp_path):
    written = _write_planetoid(tmp_path)
    graph = GRAPH_DATASETS.create("planetoid", dataset="Cora", root=str(tmp_path))
    _check_node_graph(graph)
    n = ALL_TRAIN + TESTED
    assert (graph.name, graph.num_nodes, graph.num_edges, graph.num_features, graph.num_classes) == ("cora", n, n, WIDTH, CLASSES)
    assert torch.equal(graph.x, torch.as_tensor(written["features"]))  # test rows back at their nodes
    assert torch.equal(graph.y, torch.as_tensor(written["labels"]))
    assert graph.train_mask.nonzero().flatten().tolist() == list(range(LABELED))
    assert graph.val_mask.nonzero().flatten().tolist() == list(range(LABELED, LABELED + 500))
    assert graph.test_mask.nonzero().flatten().tolist() == sorted(written["test_index"].tolist())
    assert graph.feature_range == (0.0, 1.0)
    assert GRAPH_DATASETS.create("planetoid", root=tmp_path).fingerprint == graph.fingerprint  # again, from processed/


def test_planetoid_without_its_files_is_a_one_line_user_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="nowhere") as error:
        GRAPH_DATASETS.create("planetoid", dataset="citeseer", root=missing)
    assert "ind.citeseer.x" in str(error.value) and "\n" not in str(error.value)
    assert not missing.exists()  # nothing created, nothing fetched
    with pytest.raises(UserError, match="needs a folder"):
        GRAPH_DATASETS.create("planetoid")
    with pytest.raises(ParamError, match="^dataset: "):
        GRAPH_DATASETS.create("planetoid", dataset="arxiv", root=tmp_path)


def test_planetoid_with_a_corrupt_file_is_a_user_error(tmp_path):
    _write_planetoid(tmp_path)
    (tmp_path / "Cora" / "raw" / "ind.cora.graph").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="could not be read"):
        GRAPH_DATASETS.create("planetoid", root=tmp_path)


# -- TU's format --------------------------------------------------------------------
def _write_tu(root: Path, name: str, *, node_labels: bool) -> list[int]:
    """TU files (Morris et al. 2020): ``_A`` one edge per line as 1-based global node ids (one direction only here),
    ``_graph_indicator`` the 1-based graph of each node, ``_graph_labels`` a label per graph, ``_node_labels`` a
    label per node. Ten cycles of 3 to 7 nodes, labelled -1 (odd) or 1 (even)."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    edges, indicator, node_label, graph_labels, first = [], [], [], [], 1
    for graph in range(10):
        size = 3 + graph % 5
        edges += [(first + i, first + (i + 1) % size) for i in range(size)]
        indicator += [graph + 1] * size
        node_label += [i % 2 for i in range(size)]
        graph_labels.append(1 if size % 2 == 0 else -1)
        first += size
    (raw / f"{name}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (raw / f"{name}_graph_indicator.txt").write_text("".join(f"{g}\n" for g in indicator))
    (raw / f"{name}_graph_labels.txt").write_text("".join(f"{label}\n" for label in graph_labels))
    if node_labels:
        (raw / f"{name}_node_labels.txt").write_text("".join(f"{label}\n" for label in node_label))
    return graph_labels


@pytest.mark.parametrize(("node_labels", "width"), [(True, 2), (False, 1)])
def test_tu_reads_the_raw_files_into_a_stratified_split(tmp_path, node_labels, width):
    graph_labels = _write_tu(tmp_path, "TINY", node_labels=node_labels)
    dataset = GRAPH_DATASETS.create("tu", dataset="TINY", root=tmp_path)
    assert (len(dataset.train), len(dataset.test), list(dataset.classes)) == (8, 2, ["-1", "1"])
    assert sorted(dataset.y_test.tolist()) == [0, 1]  # one of each class tested
    graphs = [*dataset.train, *dataset.test]
    assert sorted(int(g.y) for g in graphs) == sorted(int(label > 0) for label in graph_labels)
    for g in graphs:
        assert g.x.dtype == torch.float32 and g.x.shape == (g.num_nodes, width)
        assert g.y.shape == (1,) and g.y.dtype == torch.int64
        assert g.edge_index.shape[1] == 2 * g.num_nodes and torch.equal(g.edge_index, undirected(g.edge_index, g.num_nodes))
        assert int(g.y) == int(g.num_nodes % 2 == 0)
    assert dataset.num_features == width and dataset.feature_range == (0.0, 1.0)


def test_tu_without_its_files_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="MUTAG_A.txt") as error:
        GRAPH_DATASETS.create("tu", dataset="MUTAG", root=tmp_path)
    assert str(tmp_path / "MUTAG" / "raw") in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ParamError, match="^train: "):
        GRAPH_DATASETS.create("tu", root=tmp_path, train=1.0)
