"""Gallery examples of the adversarial track: kept by a job as one artifact, rendered as blocks of the HTML page.

A job keeps a few points it attacked (the ones it broke first, then ones that
held): clean input, adversarial input, label and both predictions. They are
stored as the job's ``gallery`` artifact (an ``.npz`` of arrays) and rendered
by ``reports.gallery``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.guard import predict

ARTIFACT = "gallery"
GALLERY_SIZE = 4  # examples kept per job


@dataclass(frozen=True, eq=False)
class Example:
    """A clean input beside its adversarial version, with the label and both predictions."""

    example: int  # index in the evaluation set
    label: int
    clean_prediction: int
    adversarial_prediction: int
    clean: np.ndarray  # (C, H, W) float32 in [0, 1]
    adversarial: np.ndarray  # same shape


def encode(examples: Sequence[Example]) -> bytes:
    """The artifact: one ``.npz`` holding every example's numbers and pixels (float32)."""
    if not examples:
        return b""
    for e in examples:
        if np.shape(e.clean) != np.shape(e.adversarial):
            raise ValueError(f"example {e.example}: clean {np.shape(e.clean)} and adversarial {np.shape(e.adversarial)} differ in shape")
    numbers = np.array([[e.example, e.label, e.clean_prediction, e.adversarial_prediction] for e in examples], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        numbers=numbers,
        clean=np.stack([np.asarray(e.clean, dtype="<f4") for e in examples]),
        adversarial=np.stack([np.asarray(e.adversarial, dtype="<f4") for e in examples]),
    )
    return buffer.getvalue()


def decode(blob: bytes) -> list[Example]:
    if not blob:
        return []
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        numbers, clean, adversarial = data["numbers"], data["clean"], data["adversarial"]
    return [
        Example(int(n[0]), int(n[1]), int(n[2]), int(n[3]), c.astype(np.float32), a.astype(np.float32))
        for n, c, a in zip(numbers, clean, adversarial, strict=True)
    ]


def pick(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: Any) -> list[Example]:
    """A few points this attack ran on: the ones it broke first, then ones that held (perturbed ones before untouched ones)."""
    moved = (step.x_adv != x).flatten(1).any(dim=1)
    held = step.attacked & step.robust
    broken, held_moved, held_still = step.broken.nonzero().flatten(), (held & moved).nonzero().flatten(), (held & ~moved).nonzero().flatten()
    chosen = torch.cat([broken, held_moved, held_still])[:GALLERY_SIZE].tolist()  # broken first, then held points the attack did perturb
    if not chosen:
        return []
    index = torch.tensor(chosen, device=y.device)
    clean_prediction, adversarial_prediction = predict(model, x[index]), predict(model, step.x_adv[index])
    return [
        Example(i, int(y[i]), int(c), int(a), x[i].float().cpu().numpy(), step.x_adv[i].float().cpu().numpy())
        for i, c, a in zip(chosen, clean_prediction.tolist(), adversarial_prediction.tolist(), strict=True)
    ]


def groups(records: Sequence[Any], artifacts: Mapping[str, Mapping[str, bytes]]) -> list[Any]:
    """One gallery block per model x defense x attack: the examples of its middle eps (in plan order)."""
    from reports.gallery import GalleryGroup
    from reports.leaderboard import NORM_TITLES, percent

    stored = {key: decode(found[ARTIFACT]) for key, found in artifacts.items() if found.get(ARTIFACT)}
    by_attack: dict[tuple, list[Any]] = {}
    for record in records:
        if stored.get(record.key):
            by_attack.setdefault((record.model, record.defense, record.attack, record.dataset, record.norm), []).append(record)
    out = []
    for (model, defense, attack, dataset, norm), members in by_attack.items():
        members = sorted(members, key=lambda r: (r.eps is None, r.eps))
        chosen = members[len(members) // 2]
        eps = f" eps {chosen.eps:g}" if chosen.eps is not None else ""
        robust = f" (robust accuracy {percent(chosen.robust_accuracy)}%)" if chosen.robust_accuracy is not None else ""
        title = f"{model} / {defense} / {attack}, {dataset} {NORM_TITLES.get(norm, norm or '')}{eps}{robust}"
        out.append(GalleryGroup(title, tuple(stored[chosen.key])))
    return out
