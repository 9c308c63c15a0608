"""``shapes``: point clouds sampled from generated surfaces, the point-cloud track's small synthetic dataset.

Every surface (sphere, cube, cylinder, cone, torus, hemisphere) is a triangle
mesh of a solid of revolution: a polyline profile turned around the z axis
(``segments=4`` makes the cube). Each cloud draws a random anisotropic scale
and a random rotation (upright by default, or uniform on SO(3)), transforms the
mesh, samples points uniformly on its surface (each triangle by its area),
adds a little Gaussian noise and is normalized: centered, scaled into the unit
ball. Its graph is the undirected kNN graph of its points, and ``k`` stays on
every cloud (``data.k``) so that an attack that moves or drops points rebuilds
the same kind of graph (``rebuild``). No mesh library, no download: the whole
set is a function of its arguments. A square pyramid was left out: at 64
points it is too often taken for a cone, by any model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import Data

from bench.data import SPLIT_SEED
from bench.errors import require
from bench.tracks.gnn.graphs import GraphSet, undirected

SCALE_RANGE = (0.8, 1.25)  # per axis, before the rotation: spheres become ellipsoids, cubes boxes
TILT = 0.3  # radians: how far an upright shape's axis may lean
ROTATIONS = ("upright", "so3")


def _profile_circle(center: tuple[float, float], radius: float, start: float, stop: float, n: int) -> list[tuple[float, float]]:
    return [(center[0] + radius * math.cos(a), center[1] + radius * math.sin(a)) for a in torch.linspace(start, stop, n).tolist()]


# (r, z) profiles revolved around z, and the number of segments of the revolution
PROFILES: dict[str, tuple[list[tuple[float, float]], int]] = {
    "sphere": (_profile_circle((0.0, 0.0), 1.0, -math.pi / 2, math.pi / 2, 13), 24),
    "cube": ([(0.0, -1.0), (math.sqrt(2), -1.0), (math.sqrt(2), 1.0), (0.0, 1.0)], 4),
    "cylinder": ([(0.0, -1.0), (0.5, -1.0), (0.5, 1.0), (0.0, 1.0)], 32),
    "cone": ([(0.0, -1.0), (1.0, -1.0), (0.0, 1.0)], 32),
    "torus": (_profile_circle((1.0, 0.0), 0.35, -math.pi, math.pi, 13), 32),
    "hemisphere": ([(0.0, 0.0), *_profile_circle((0.0, 0.0), 1.0, 0.0, math.pi / 2, 7)], 24),
}


def _revolve(profile: list[tuple[float, float]], segments: int) -> tuple[Tensor, Tensor]:
    """The triangle mesh (vertices (V, 3), faces (F, 3)) of ``profile`` turned around the z axis; triangles on the axis have no area."""
    rz = torch.tensor(profile, dtype=torch.float64)
    angles = torch.arange(segments, dtype=torch.float64) * (2 * math.pi / segments)
    vertices = torch.stack([rz[:, :1] * angles.cos(), rz[:, :1] * angles.sin(), rz[:, 1:].expand(-1, segments)], dim=-1).reshape(-1, 3)
    i = torch.arange(len(profile) - 1).view(-1, 1)
    j = torch.arange(segments).view(1, -1)
    a, b = i * segments + j, i * segments + (j + 1) % segments
    c, d = a + segments, b + segments
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    return vertices, faces


def _about_axis(angle: Tensor, axis: int) -> Tensor:
    """Rotations (count, 3, 3) by ``angle`` (count,) about coordinate axis ``axis``."""
    cos, sin = angle.cos(), angle.sin()
    m = torch.eye(3, dtype=angle.dtype).repeat(len(angle), 1, 1)
    a, b = [i for i in range(3) if i != axis]
    m[:, a, a], m[:, a, b], m[:, b, a], m[:, b, b] = cos, -sin, sin, cos
    return m


def _rotations(count: int, rotation: str, generator: torch.Generator) -> Tensor:
    """Random rotation matrices (count, 3, 3): uniform on SO(3) (from normalized Gaussian quaternions), or upright:
    a uniform turn about the shape's axis, its axis tilted by at most ``TILT`` in a uniform direction."""
    if rotation == "so3":
        q = torch.randn(count, 4, generator=generator, dtype=torch.float64)
        w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
        return torch.stack(
            [
                torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
            ],
            dim=-2,
        )
    spin, tilt, direction = torch.rand(3, count, generator=generator, dtype=torch.float64)
    return _about_axis(2 * math.pi * direction, 2) @ _about_axis(TILT * (2 * tilt - 1), 0) @ _about_axis(2 * math.pi * spin, 2)


def _sample(vertices: Tensor, faces: Tensor, count: int, points: int, noise: float, rotation: str, generator: torch.Generator) -> Tensor:
    """``count`` clouds (count, points, 3): the mesh scaled, rotated, sampled by area, noised and normalized into the unit ball."""
    scale = torch.empty(count, 1, 3, dtype=torch.float64).uniform_(*SCALE_RANGE, generator=generator)
    v = (vertices.unsqueeze(0) * scale) @ _rotations(count, rotation, generator).transpose(1, 2)  # (count, V, 3)
    tri = v[:, faces]  # (count, F, 3 corners, 3)
    areas = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]).norm(dim=-1)
    chosen = torch.multinomial(areas, points, replacement=True, generator=generator)  # (count, points)
    corners = tri.gather(1, chosen[..., None, None].expand(-1, -1, 3, 3))
    u, w = torch.rand(2, count, points, 1, generator=generator, dtype=torch.float64)
    root = u.sqrt()
    pos = (1 - root) * corners[:, :, 0] + root * (1 - w) * corners[:, :, 1] + root * w * corners[:, :, 2]
    pos = _into_unit_ball(pos)
    pos = pos + noise * torch.randn(pos.shape, generator=generator, dtype=torch.float64)
    return _into_unit_ball(pos).float()


def _into_unit_ball(pos: Tensor) -> Tensor:
    pos = pos - pos.mean(dim=1, keepdim=True)
    return pos / pos.norm(dim=-1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)


def batched_knn_edges(pos: Tensor, k: int) -> Tensor:
    """The kNN graphs of clouds of equal size ``pos`` (b, n, 3) as one edge_index over their b * n points, cloud after cloud
    (as PyG's ``Batch`` numbers them): each point joined to its ``k`` nearest others of its cloud (fewer when the cloud is
    smaller), both directions, no self loops, sorted. Distances are exact (no matmul shortcut), so the same points give the
    same graph in a batch or alone."""
    b, n = pos.shape[:2]
    k = min(k, n - 1)
    if k < 1:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    pos = pos.detach()
    distance = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    distance.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    neighbours = distance.topk(k, dim=2, largest=False).indices + n * torch.arange(b, device=pos.device).view(-1, 1, 1)
    rows = torch.arange(b * n, device=pos.device).repeat_interleave(k)
    return undirected(torch.stack([rows, neighbours.reshape(-1)]), b * n)


def knn_edges(pos: Tensor, k: int) -> Tensor:
    """The undirected kNN graph of one cloud ``pos`` (n, 3): see ``batched_knn_edges``."""
    return batched_knn_edges(pos.unsqueeze(0), k)


def rebuild(data: Data, pos: Tensor) -> Data:
    """A new cloud of ``data``'s label and ``k`` on the points ``pos``: x = pos and the kNN graph recomputed (on the CPU)."""
    pos = pos.detach().cpu().float()
    k = int(data.k)
    return Data(x=pos.clone(), pos=pos, edge_index=knn_edges(pos, k), y=data.y.detach().cpu().clone(), k=k)


def shapes(
    *, points: int = 64, per_class: int = 60, k: int = 8, noise: float = 0.01, train: float = 0.75, rotation: str = "upright", seed: int = SPLIT_SEED
) -> GraphSet:
    """``per_class`` clouds of ``points`` points for each surface of ``PROFILES``, their kNN graphs (``k`` neighbours),
    split ``train`` / rest stratified by class. ``rotation``: 'upright' (any turn about the vertical axis, a tilt of at most
    ``TILT``: the z/z protocol of ModelNet with a wobble) or 'so3' (uniform: far harder for models without alignment).
    ``seed`` fixes the clouds and the split."""
    require(isinstance(points, int) and points >= 2, "points", f"must be an integer >= 2, got {points!r}")
    require(isinstance(per_class, int) and per_class >= 2, "per_class", f"must be an integer >= 2, got {per_class!r}")
    require(isinstance(k, int) and 1 <= k < points, "k", f"must be an integer in [1, points), got {k!r}")
    require(isinstance(noise, int | float) and noise >= 0, "noise", f"must be >= 0, got {noise!r}")
    require(isinstance(train, int | float) and 0 < train < 1, "train", f"must be in (0, 1), got {train!r}")
    require(rotation in ROTATIONS, "rotation", f"must be one of {', '.join(ROTATIONS)}, got {rotation!r}")
    generator = torch.Generator().manual_seed(seed)
    n_train = min(per_class - 1, max(1, round(train * per_class)))
    train_set, test_set = [], []
    for label, (profile, segments) in enumerate(PROFILES.values()):
        clouds = _sample(*_revolve(profile, segments), per_class, points, float(noise), rotation, generator)
        order = torch.randperm(per_class, generator=generator).tolist()
        y = torch.tensor([label])
        for rank, i in enumerate(order):
            pos = clouds[i].clone()  # its own storage, not a view of the whole class
            (train_set if rank < n_train else test_set).append(Data(x=pos.clone(), pos=pos, edge_index=knn_edges(pos, k), y=y.clone(), k=k))
    return GraphSet(name="shapes", train=train_set, test=test_set, classes=tuple(PROFILES), points=True, feature_range=None)
