"""Attacks on point clouds (``point-perturb``, ``point-drop``) and ``verify_points``, the threat model they are checked against.

A cloud's input is its coordinates (``x = pos``) and the kNN graph of them, so
an attack changes points and the graph follows: after every move or drop the
kNN graph is rebuilt with the cloud's own ``k`` (``shapes.rebuild``). Index
selection is not differentiable; gradients reach the coordinates through
``x`` (and, for EdgeConv, through ``x_j - x_i`` on the current graph).

* ``PointPerturb``: PGD on the coordinates (as Xiang et al. 2019 do with C&W),
  inside an Linf ball per coordinate or an L2 ball per point of radius eps.
* ``PointDrop``: drops the points of largest saliency (Zheng et al. 2019), in
  a few rounds, at most ``floor(budget * points)`` per cloud.

Attacks batch the clouds of equal size and ``k``; they never change the
model's mode or weights, and use ``generator`` for nothing: both are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from bench.errors import require
from bench.tracks.gnn.attacks import GraphAttack
from bench.tracks.gnn.shapes import batched_knn_edges, knn_edges, rebuild

NORMS = ("linf", "l2")
CHUNK = 256  # clouds per batched forward pass
TOLERANCE = 1e-5  # float slack of verify_points' eps check


def _chunks(graphs: Sequence[Data]) -> list[list[int]]:
    """Indices of ``graphs`` in groups of equal point count and ``k``, at most ``CHUNK`` each."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, g in enumerate(graphs):
        groups.setdefault((int(g.pos.shape[0]), int(g.k)), []).append(i)
    return [ids[s : s + CHUNK] for ids in groups.values() for s in range(0, len(ids), CHUNK)]


def _cloud_losses(model: nn.Module, y: Tensor, k: int) -> Callable[[Tensor], Tensor]:
    """Cross-entropy per cloud of the clouds ``pos`` (b, n, 3), each given to the model as x = pos on its kNN graph."""

    def losses(pos: Tensor) -> Tensor:
        b, n = pos.shape[:2]
        batch = torch.arange(b, device=pos.device).repeat_interleave(n)
        logits = model(pos.reshape(b * n, -1), batched_knn_edges(pos, k), None, batch)
        return nn.functional.cross_entropy(logits, y, reduction="none")

    return losses


def _stack(graphs: Sequence[Data], ids: list[int], device: torch.device) -> tuple[Tensor, Tensor, int]:
    return torch.stack([graphs[i].pos for i in ids]).to(device), torch.cat([graphs[i].y.view(-1) for i in ids]).to(device), int(graphs[ids[0]].k)


class PointPerturb(GraphAttack):
    """PGD on the point coordinates, maximizing the cross-entropy; the budget is eps. ``norm='linf'``: every coordinate moves
    at most eps; ``'l2'``: every point moves at most eps (Euclidean). ``steps`` ascent steps of ``step_size`` x eps (signed
    gradient for linf, the gradient normalized per point for l2), from the clean points; each cloud keeps its iterate of
    highest loss."""

    kind = "points"
    levels = ("graphs",)
    gradient = True
    budget_unit = "eps"

    def __init__(self, norm: str = "linf", steps: int = 20, step_size: float = 0.25) -> None:
        require(norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}, got {norm!r}")
        require(isinstance(steps, int) and steps >= 1, "steps", f"must be an integer >= 1, got {steps!r}")
        require(isinstance(step_size, int | float) and step_size > 0, "step_size", f"must be > 0 (a fraction of eps), got {step_size!r}")
        self.norm, self.steps, self.step_size = norm, steps, float(step_size)

    def _step(self, delta: Tensor, grad: Tensor, eps: float) -> Tensor:
        if self.norm == "linf":
            return (delta + self.step_size * eps * grad.sign()).clamp(-eps, eps)
        delta = delta + self.step_size * eps * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return delta * (eps / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)

    def _ascend(self, losses_of: Callable[[Tensor], Tensor], pos: Tensor, eps: float) -> Tensor:
        delta = torch.zeros_like(pos)
        best, best_loss = delta, torch.full(pos.shape[:1], -math.inf, device=pos.device)
        for step in range(self.steps + 1):
            delta.requires_grad_(True)
            losses = losses_of(pos + delta)
            better = losses.detach() > best_loss
            best = torch.where(better.view(-1, 1, 1), delta.detach(), best)
            best_loss = torch.where(better, losses.detach(), best_loss)
            if step == self.steps:
                break
            (grad,) = torch.autograd.grad(losses.sum(), delta)
            delta = self._step(delta.detach(), grad, eps)
        return (pos + best).detach()

    def perturb_graphs(
        self, model: nn.Module, graphs: Sequence[Data], budget: float, *, generator: torch.Generator, device: torch.device, feature_range: Any = None
    ) -> list[Data]:
        require(budget >= 0, "budget", f"must be >= 0 (eps), got {budget!r}")
        out = list(graphs)
        if budget == 0:
            return out
        for ids in _chunks(graphs):
            pos, y, k = _stack(graphs, ids, device)
            moved = self._ascend(_cloud_losses(model, y, k), pos, float(budget))
            for i, p in zip(ids, moved, strict=True):
                out[i] = rebuild(graphs[i], p)
        return out


class PointDrop(GraphAttack):
    """Saliency-map point dropping (Zheng et al. 2019): a point's saliency ``-r^alpha * (grad . (p - c))``, with ``c`` the
    cloud's coordinate-wise median and ``r = |p - c|``, estimates how much the loss grows when the point is moved to the
    center (where, for a max-pooled network, it no longer counts); the highest are dropped, ``floor(budget * points)`` per
    cloud in ``rounds`` rounds, the saliency recomputed on the remaining points (and their rebuilt kNN graph) each round."""

    kind = "points"
    levels = ("graphs",)
    gradient = True
    budget_unit = "points"

    def __init__(self, rounds: int = 4, alpha: float = 1.0) -> None:
        require(isinstance(rounds, int) and rounds >= 1, "rounds", f"must be an integer >= 1, got {rounds!r}")
        require(isinstance(alpha, int | float) and alpha >= 0, "alpha", f"must be >= 0, got {alpha!r}")
        self.rounds, self.alpha = rounds, float(alpha)

    def _saliency(self, losses_of: Callable[[Tensor], Tensor], pos: Tensor) -> Tensor:
        pos = pos.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(losses_of(pos).sum(), pos)
        offset = (pos - pos.median(dim=1, keepdim=True).values).detach()
        return -offset.norm(dim=-1).pow(self.alpha) * (grad * offset).sum(-1)

    def perturb_graphs(
        self, model: nn.Module, graphs: Sequence[Data], budget: float, *, generator: torch.Generator, device: torch.device, feature_range: Any = None
    ) -> list[Data]:
        require(0 <= budget < 1, "budget", f"must be in [0, 1) (the fraction of points dropped), got {budget!r}")
        out = list(graphs)
        for ids in _chunks(graphs):
            pos, y, k = _stack(graphs, ids, device)
            total = math.floor(budget * pos.shape[1] + 1e-9)
            if total == 0:
                continue
            losses_of = _cloud_losses(model, y, k)
            keep = torch.arange(pos.shape[1], device=device).expand(len(ids), -1)
            for r in range(self.rounds):
                count = total // self.rounds + (r < total % self.rounds)
                if count == 0:
                    continue
                current = pos.gather(1, keep.unsqueeze(-1).expand(-1, -1, 3))
                dropped = self._saliency(losses_of, current).topk(count, dim=1).indices
                kept = torch.ones_like(keep, dtype=torch.bool).scatter_(1, dropped, False)
                keep = keep[kept].view(len(ids), -1)
            for i, rows in zip(ids, keep.cpu(), strict=True):
                out[i] = rebuild(graphs[i], graphs[i].pos[rows])
        return out


def verify_points(original: Sequence[Data], perturbed: Sequence[Data], *, unit: str, budget: float, norm: str = "linf") -> list[str]:
    """The threat model of the point attacks, checked on their output whatever they claim: one line per violation (none: valid).

    Always: as many clouds, labels unchanged, finite coordinates, x = pos, edges the kNN graph (the original's ``k``) of the
    perturbed points. ``unit='eps'``: the same points, each moved at most ``budget`` (``norm`` 'linf': per coordinate; 'l2':
    per point; ``TOLERANCE`` of slack). ``unit='points'``: at most ``floor(budget * points)`` dropped and every remaining point
    one of the original ones, exactly (as a multiset: none duplicated)."""
    require(unit in ("eps", "points"), "unit", f"must be 'eps' or 'points', got {unit!r}")
    require(norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}, got {norm!r}")
    if len(original) != len(perturbed):
        return [f"{len(perturbed)} perturbed clouds for {len(original)} clouds"]
    problems = []
    for i, (o, p) in enumerate(zip(original, perturbed, strict=True)):
        where = f"cloud {i}"
        if not torch.equal(o.y.view(-1).cpu(), p.y.view(-1).cpu()):
            problems.append(f"{where}: label changed from {o.y.view(-1).tolist()} to {p.y.view(-1).tolist()}")
        pos, clean = p.pos.detach().cpu(), o.pos.detach().cpu()
        if pos.ndim != 2 or pos.shape[1] != clean.shape[1] or not bool(torch.isfinite(pos).all()):
            problems.append(f"{where}: coordinates of shape {tuple(pos.shape)} are not finite points like the original's {tuple(clean.shape)}")
            continue
        if not torch.equal(p.x.detach().cpu(), pos):
            problems.append(f"{where}: x differs from pos")
        if unit == "eps":
            if pos.shape != clean.shape:
                problems.append(f"{where}: {pos.shape[0]} points for {clean.shape[0]}: points may move, not appear or vanish")
                continue
            move = pos - clean
            size = float(move.abs().max() if norm == "linf" else move.norm(dim=1).max())
            if size > budget + TOLERANCE:
                problems.append(f"{where}: a point moved {size:.6g} ({norm}), beyond eps {budget:g}")
        else:
            allowed = math.floor(budget * clean.shape[0] + 1e-9)
            dropped = clean.shape[0] - pos.shape[0]
            if dropped > allowed:
                problems.append(f"{where}: {dropped} points dropped, at most {allowed} allowed")
            _, ids = torch.unique(torch.cat([clean, pos]), dim=0, return_inverse=True)
            there = torch.bincount(ids[: clean.shape[0]], minlength=int(ids.max()) + 1)
            used = torch.bincount(ids[clean.shape[0] :], minlength=int(ids.max()) + 1)
            invented = int((used - there).clamp_min(0).sum())
            if invented:
                problems.append(f"{where}: {invented} points that are not among the original points")
        if not torch.equal(p.edge_index.cpu(), knn_edges(pos, int(o.k))):
            problems.append(f"{where}: edges are not the kNN graph (k={int(o.k)}) of its points")
    return problems
