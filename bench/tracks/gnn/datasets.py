"""Graph datasets, registered by name (``bench list graphs``); each returns a ``NodeGraph`` or a ``GraphSet``.

* ``csbm``: a contextual stochastic block model generated from its seed, the
  fast embedded default; the graph is worth about 25 points of accuracy over
  the features alone (a 2-layer GCN 0.93-0.95, an MLP 0.66-0.73 with the defaults).
* ``karate``: Zachary's karate club with PyG's four communities (bundled).
* ``ba-house``: house motifs attached to a Barabási–Albert graph (Ying et al.
  2019), generated from its seed; nodes are classified by their role in the
  structure, from degree one-hot features.
* ``planetoid``: Cora, CiteSeer or PubMed from a local folder in PyG's
  Planetoid format, with the public split.
* ``tu``: a TU graph-classification dataset (MUTAG, PROTEINS, ...) from a local folder.
* ``shapes``: point clouds of generated meshes (``bench.tracks.gnn.shapes``).

Nothing is downloaded unless ``download=True``. Splits are fixed: the public
one where the data has one, else drawn per class with ``bench.data.SPLIT_SEED``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from bench.data import SPLIT_SEED
from bench.errors import UserError, one_line, require
from bench.registry import Registry
from bench.tracks.gnn.graphs import GraphSet, NodeGraph, undirected

GRAPH_DATASETS: Registry = Registry("graph dataset", entry_points="frontier_bench.graph_datasets", import_paths=True)

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}  # PyG's folder names
PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")  # ind.<dataset>.<file>
HOUSE_ROLES = ("base", "middle", "bottom", "top")  # PyG's HouseMotif labels 0, 1, 2 (+1), the BA graph 0


def split_masks(y: torch.Tensor, train: float, val: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint train/val/test masks covering every item, stratified: ``train`` and ``val`` are fractions of each class
    (rounded, at least one training item per class), the test set is the rest."""
    masks = [torch.zeros(len(y), dtype=torch.bool) for _ in range(3)]
    for label in torch.unique(y):
        members = (y == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_train = max(1, round(train * len(members)))
        n_val = min(round(val * len(members)), len(members) - n_train)
        masks[0][members[:n_train]] = True
        masks[1][members[n_train : n_train + n_val]] = True
        masks[2][members[n_train + n_val :]] = True
    return masks[0], masks[1], masks[2]


def _check_fractions(train: float, val: float) -> None:
    require(0 < train < 1, "train", f"must be a fraction in (0, 1), got {train}")
    require(0 <= val < 1, "val", f"must be a fraction in [0, 1), got {val}")
    require(train + val < 1, "val", f"train + val must leave test nodes (< 1), got {train} + {val}")


def _node_graph(name: str, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor, classes: list[str], *, train: float, val: float) -> NodeGraph:
    """A ``NodeGraph`` with a stratified split drawn from ``SPLIT_SEED``."""
    masks = split_masks(y, train, val, torch.Generator().manual_seed(SPLIT_SEED))
    return NodeGraph(name, x.float(), undirected(edge_index, len(y)), y.long(), *masks, classes=classes)


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """PyG's generators draw from torch's and numpy's global generators: seed both, then restore the caller's."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def _unit_range(x: torch.Tensor) -> tuple[float, float] | None:
    """(0, 1) for features inside it (bag of words), else None (unbounded)."""
    return (0.0, 1.0) if x.numel() and bool(((x >= 0) & (x <= 1)).all()) else None


@GRAPH_DATASETS.register("csbm", description="contextual stochastic block model from a seed: 300 nodes, ~700 edges, 3 classes, 16 Gaussian features")
def csbm(
    *,
    nodes: int = 300,  # nodes, split into equal blocks
    classes: int = 3,  # blocks, one class each
    p_in: float = 0.04,  # probability of an edge between two nodes of one class
    p_out: float = 0.004,  # probability of an edge between two nodes of different classes
    features: int = 16,  # feature dimension
    snr: float = 1.75,  # norm of the class means over unit Gaussian noise
    seed: int = 0,  # draws the graph and the features (never the split)
    train: float = 0.3,  # fraction of each class that trains
    val: float = 0.2,  # fraction of each class that validates (the rest is tested)
) -> NodeGraph:
    """Contextual SBM (Deshpande et al. 2018): equal blocks, one per class; an edge joins two nodes of one class with
    probability ``p_in`` and of two classes with ``p_out``: the expected degree is about ``p_in * nodes / classes``
    within the class (4 with the defaults) and ``p_out * nodes * (classes - 1) / classes`` across (0.8), so 83% of the
    edges join nodes of one class. Features are the class's mean plus N(0, I) noise, the means drawn as
    ``snr * N(0, I) / sqrt(features)`` so that each has a norm of about ``snr``.
    """
    require(classes >= 2, "classes", f"must be at least 2, got {classes}")
    require(nodes >= 2 * classes, "nodes", f"must be at least 2 per class ({2 * classes}), got {nodes}")
    require(0 <= p_in <= 1, "p_in", f"must be a probability in [0, 1], got {p_in}")
    require(0 <= p_out <= 1, "p_out", f"must be a probability in [0, 1], got {p_out}")
    require(features >= 1, "features", f"must be at least 1, got {features}")
    require(snr >= 0, "snr", f"must be >= 0, got {snr}")
    _check_fractions(train, val)
    from torch_geometric.utils import stochastic_blockmodel_graph

    sizes = [nodes // classes + (c < nodes % classes) for c in range(classes)]
    y = torch.repeat_interleave(torch.arange(classes), torch.tensor(sizes))
    probs = torch.full((classes, classes), float(p_out)).fill_diagonal_(float(p_in))
    with _global_seed(seed):
        edge_index = stochastic_blockmodel_graph(sizes, probs, directed=False)
    generator = torch.Generator().manual_seed(seed)
    means = snr * torch.randn(classes, features, generator=generator) / features**0.5
    x = means[y] + torch.randn(nodes, features, generator=generator)
    return _node_graph("csbm", x, edge_index, y, [str(c) for c in range(classes)], train=train, val=val)


@GRAPH_DATASETS.register("karate", description="Zachary's karate club, bundled with PyG: 34 nodes, 78 edges, 4 communities, one-hot node ids")
def karate(
    *,
    train: float = 0.5,  # fraction of each class that trains
    val: float = 0.0,  # fraction of each class that validates (the rest is tested)
) -> NodeGraph:
    """Zachary's karate club with the four modularity communities of PyG's ``KarateClub`` (Kipf & Welling 2017) as
    classes and the identity as features. PyG's own split trains on one node per class; here half of each class
    trains and the rest is tested (no validation set by default: 34 nodes are too few to spare).
    """
    _check_fractions(train, val)
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    return _node_graph("karate", data.x, data.edge_index, data.y, [str(c) for c in range(4)], train=train, val=val)


@GRAPH_DATASETS.register("ba-house", description="house motifs on a Barabási-Albert graph, generated from a seed: 700 nodes, 4 structural roles")
def ba_house(
    *,
    nodes: int = 300,  # nodes of the base graph (the whole graph has nodes + 5 * motifs)
    motifs: int = 80,  # houses attached
    attach: int = 5,  # edges each new node of the base graph attaches with (Barabási-Albert's m)
    features: str = "degree",  # 'degree' (one-hot of the degree, 10 and more in one bin) or 'constant' (a single 1)
    seed: int = 0,  # draws the graph (never the split)
    train: float = 0.3,  # fraction of each class that trains
    val: float = 0.2,  # fraction of each class that validates (the rest is tested)
) -> NodeGraph:
    """BA-Shapes (Ying et al. 2019, GNNExplainer): ``motifs`` five-node houses, each joined by one edge to a random
    node of a Barabási–Albert graph of ``nodes`` nodes. A node's class is its role: the base graph, or the middle,
    bottom or top of a house. The degree one-hot features let an MLP tell the base from the houses and the middles
    (degree 3) from the rest, not the tops from the bottoms (0.85, against 0.95 for GraphSAGE); the paper's constant
    features leave everything to the structure, which mean aggregators (GraphSAGE, GAT) then cannot see at all.
    """
    require(attach >= 1, "attach", f"must be at least 1, got {attach}")
    require(nodes > attach, "nodes", f"must exceed attach ({attach}), got {nodes}")
    require(1 <= motifs <= nodes, "motifs", f"must be between 1 and nodes ({nodes}), got {motifs}")
    require(features in ("degree", "constant"), "features", f"must be 'degree' or 'constant', got {features!r}")
    _check_fractions(train, val)
    from torch_geometric.datasets import ExplainerDataset
    from torch_geometric.datasets.graph_generator import BAGraph

    with _global_seed(seed):  # the BA graph draws from numpy, the motifs' places from torch
        data = ExplainerDataset(graph_generator=BAGraph(num_nodes=nodes, num_edges=attach), motif_generator="house", num_motifs=motifs)[0]
    edge_index = undirected(data.edge_index, data.num_nodes)
    if features == "degree":
        degree = torch.bincount(edge_index[0], minlength=data.num_nodes)
        x = torch.nn.functional.one_hot(degree.clamp(max=10), 11)
    else:
        x = torch.ones(data.num_nodes, 1)
    return _node_graph("ba-house", x, edge_index, data.y, list(HOUSE_ROLES), train=train, val=val)


def _load(name: str, folder: Path, load: Callable[[], Any]) -> Any:
    """``load()``, one call into PyG, with its errors made one line."""
    try:
        return load()
    except Exception as error:  # a malformed file or a failed download: the user's data, not our bug
        raise UserError(f"graph dataset '{name}' could not be read from '{folder}': {one_line(error)}") from None


@GRAPH_DATASETS.register("planetoid", description="Cora, CiteSeer or PubMed from a local folder in PyG's Planetoid format, public split")
def planetoid(
    *,
    dataset: str = "cora",  # cora, citeseer or pubmed (any case)
    root: str | Path | None = None,  # folder holding Cora/raw/ind.cora.x etc. (PyG's layout; it adds Cora/processed)
    download: bool = False,  # fetch missing files from PyG's source
) -> NodeGraph:
    """A Planetoid citation graph (Yang et al. 2016) with its public split (20 training nodes per class, 500
    validation, 1,000 test) and its raw bag-of-words features, read by ``torch_geometric.datasets.Planetoid``.
    The raw files are pickles: read only folders you trust.
    """
    prefix = dataset.lower()
    require(prefix in PLANETOID_NAMES, "dataset", f"must be one of {', '.join(PLANETOID_NAMES)}, got '{dataset}'")
    folder_name = PLANETOID_NAMES[prefix]
    if root is None:
        raise UserError(f"graph dataset 'planetoid' needs a folder: pass root (--data-root) holding {folder_name}/raw/")
    raw = Path(root) / folder_name / "raw"
    missing = [f"ind.{prefix}.{file}" for file in PLANETOID_FILES if not (raw / f"ind.{prefix}.{file}").is_file()]
    if missing and not download:
        raise UserError(f"graph dataset 'planetoid': '{raw}' lacks {', '.join(missing)} (pass download=True to fetch them)")
    from torch_geometric.datasets import Planetoid

    data = _load("planetoid", raw, lambda: Planetoid(str(root), folder_name)[0])
    x = data.x.float()
    masks = (data.train_mask.bool(), data.val_mask.bool(), data.test_mask.bool())
    classes = [str(c) for c in range(int(data.y.max()) + 1)]
    return NodeGraph(prefix, x, undirected(data.edge_index, data.num_nodes), data.y.long(), *masks, classes=classes, feature_range=_unit_range(x))


@GRAPH_DATASETS.register("tu", description="a TU graph-classification dataset (MUTAG, PROTEINS, ...) from a local folder, stratified split")
def tu(
    *,
    dataset: str = "MUTAG",  # the name in the dataset's file names (case-sensitive)
    root: str | Path | None = None,  # folder holding MUTAG/raw/MUTAG_A.txt etc. (PyG's layout; it adds MUTAG/processed)
    train: float = 0.8,  # fraction of each class that trains (the rest is tested)
    download: bool = False,  # fetch missing files from the TU site
) -> GraphSet:
    """A TU dataset (Morris et al. 2020) read by ``torch_geometric.datasets.TUDataset``, split per class with
    ``SPLIT_SEED``. Node features are the continuous node attributes and the one-hot node labels where the dataset has
    them, else a constant 1 per node (a sum-aggregating network can still count degrees). Classes are named by the
    labels in ``<dataset>_graph_labels.txt``.
    """
    require(bool(dataset) and "/" not in dataset, "dataset", f"must be a TU dataset name such as MUTAG, got '{dataset}'")
    require(0 < train < 1, "train", f"must be a fraction in (0, 1), got {train}")
    if root is None:
        raise UserError(f"graph dataset 'tu' needs a folder: pass root (--data-root) holding {dataset}/raw/")
    raw = Path(root) / dataset / "raw"
    expected = [f"{dataset}_{file}.txt" for file in ("A", "graph_indicator", "graph_labels")]
    if not download and not all((raw / file).is_file() for file in expected):
        raise UserError(f"graph dataset 'tu': '{raw}' lacks the TU files (expected {', '.join(expected)}; pass download=True to fetch them)")
    from torch_geometric.datasets import TUDataset

    graphs = []
    for data in _load("tu", raw, lambda: TUDataset(str(root), dataset, use_node_attr=True)):
        x = data.x.float() if data.x is not None and data.x.shape[1] else torch.ones(data.num_nodes, 1)
        graphs.append(Data(x=x, edge_index=undirected(data.edge_index, data.num_nodes), y=data.y.view(1).long()))
    train_mask, _, test_mask = split_masks(torch.cat([g.y for g in graphs]), train, 0.0, torch.Generator().manual_seed(SPLIT_SEED))
    labels = sorted({int(float(v)) for v in (raw / f"{dataset}_graph_labels.txt").read_text().split()})  # PyG numbers them in this order
    return GraphSet(
        dataset,
        train=[graphs[i] for i in train_mask.nonzero().flatten().tolist()],
        test=[graphs[i] for i in test_mask.nonzero().flatten().tolist()],
        classes=[str(label) for label in labels],
        feature_range=_unit_range(torch.cat([g.x for g in graphs])),
    )


GRAPH_DATASETS.register(
    "shapes", "bench.tracks.gnn.shapes:shapes", description="point clouds sampled from generated meshes (sphere, cube, cylinder, cone, torus), kNN graph"
)
