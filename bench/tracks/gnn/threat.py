"""Every perturbed graph checked against its threat model, whatever attack made it (an attack never certifies itself).

A violation is a one-line message; the track marks the job ``invalid`` with
the flag ``threat-model-violated``, as the adversarial track does for images.

* structure: the graph is still undirected, has no self loops, no duplicate
  edges, only its own nodes, the node features are unchanged, and at most
  ``allowed`` undirected pairs differ from the clean graph;
* features: the edges are unchanged and every feature moved at most ``eps``
  (Linf), inside the data's feature range when it has one;
* points: ``bench.tracks.gnn.point_attacks.verify_points``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bench.tracks.gnn.graphs import NodeGraph

TOLERANCE = 1e-5


def changed_pairs(clean: torch.Tensor, perturbed: torch.Tensor, n: int) -> int:
    """Undirected pairs present in exactly one of two edge sets."""
    a = {(min(u, v), max(u, v)) for u, v in clean.t().tolist()}
    b = {(min(u, v), max(u, v)) for u, v in perturbed.t().tolist()}
    return len(a ^ b)


def structure_violations(clean: NodeGraph, perturbed: NodeGraph, allowed: int) -> list[str]:
    problems = []
    n = clean.num_nodes
    edges = perturbed.edge_index
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= n):
        return [f"edges name nodes outside 0..{n - 1}"]
    row, col = edges
    if bool((row == col).any()):
        problems.append(f"{int((row == col).sum())} self loops")
    ids = row * n + col
    if len(torch.unique(ids)) != len(ids):
        problems.append(f"{len(ids) - len(torch.unique(ids))} duplicate edges")
    if not torch.equal(torch.sort(ids).values, torch.sort(col * n + row).values):
        problems.append("the graph is no longer undirected (an edge without its reverse)")
    if not torch.equal(perturbed.x, clean.x):
        problems.append("node features changed by a structure attack")
    flips = changed_pairs(clean.edge_index, edges, n)
    if flips > allowed:
        problems.append(f"{flips} edges flipped, budget {allowed}")
    return problems


def feature_violations(clean: Any, perturbed: Any, eps: float, feature_range: tuple[float, float] | None) -> list[str]:
    problems = []
    if clean.x.shape != perturbed.x.shape:
        return [f"feature shape {tuple(perturbed.x.shape)}, expected {tuple(clean.x.shape)}"]
    if not torch.equal(clean.edge_index, perturbed.edge_index):
        problems.append("edges changed by a feature attack")
    moved = float((perturbed.x - clean.x).abs().max()) if clean.x.numel() else 0.0
    if not moved <= eps + TOLERANCE:  # also catches nan
        problems.append(f"features moved {moved:.4g} in Linf, eps {eps:g}")
    if feature_range is not None and perturbed.x.numel():
        low, high = float(perturbed.x.min()), float(perturbed.x.max())
        if low < feature_range[0] - TOLERANCE or high > feature_range[1] + TOLERANCE:
            problems.append(f"features in [{low:.4g}, {high:.4g}], outside their range {list(feature_range)}")
    return problems


def violations(
    kind: str, clean: Any, perturbed: Any, budget: float, *, unit: str, allowed: int | None = None, norm: str = "linf", feature_range: Any = None
) -> list[str]:
    """What breaks the threat model of an attack of ``kind`` (empty: the perturbation is admissible)."""
    if kind == "structure":
        return structure_violations(clean, perturbed, int(allowed or 0))
    if kind == "features":
        if isinstance(clean, NodeGraph):
            return feature_violations(clean, perturbed, budget, clean.feature_range)
        return _each(clean, perturbed, lambda a, b: feature_violations(a, b, budget, feature_range))
    from bench.tracks.gnn.point_attacks import verify_points

    return verify_points(clean, perturbed, unit=unit, budget=budget, norm=norm)


def _each(clean: Sequence[Any], perturbed: Sequence[Any], check: Any) -> list[str]:
    if len(clean) != len(perturbed):
        return [f"{len(perturbed)} graphs after the attack, {len(clean)} before"]
    for i, (a, b) in enumerate(zip(clean, perturbed, strict=True)):
        found = check(a, b)
        if found:
            return [f"graph {i}: {found[0]}"]
    return []
