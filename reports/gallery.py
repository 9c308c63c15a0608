"""The gallery: for each model x attack, a few clean inputs beside their adversarial versions and the magnified perturbation.

Takes the stored examples as they are (objects with ``example``, ``label``,
``clean_prediction``, ``adversarial_prediction``, ``clean`` and
``adversarial`` arrays of shape (C, H, W) in [0, 1]) and returns an HTML
fragment with the pictures embedded as base64 PNG. Broken examples come
first (``shown``): the ones the attack fooled, then the ones that held
against a real perturbation, then the ones misclassified already; an example
the attack left unchanged (no perturbation at all) shows nothing about it and
is dropped when the group has a broken one, else it comes last.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GalleryGroup:
    """The examples of one job, under a caption such as 'small-cnn / none / pgd, Linf eps 0.1'."""

    title: str
    examples: Sequence[Any]


def to_image(array: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] to what imsave draws: (H, W) grey or (H, W, 3) colour."""
    array = np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0)
    if array.ndim == 2:
        return array
    if array.shape[0] == 3:
        return np.transpose(array, (1, 2, 0))
    return array[0]


def perturbation(clean: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The perturbation scaled into [0, 1] around mid-grey; returns the image, its magnification and its largest |delta|."""
    delta = np.asarray(adversarial, dtype=np.float32) - np.asarray(clean, dtype=np.float32)
    largest = float(np.abs(delta).max()) if delta.size else 0.0
    if largest == 0.0:
        return np.full_like(delta, 0.5), 1.0, 0.0
    magnification = 0.5 / largest
    return 0.5 + delta * magnification, magnification, largest


def png_data_uri(array: np.ndarray) -> str:
    """A (C, H, W) image as a ``data:image/png;base64,...`` address."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, to_image(array), cmap="gray", vmin=0.0, vmax=1.0, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _name(index: int, classes: Sequence[str]) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def verdict(example: Any) -> str:
    """'fooled' (clean right, adversarial wrong), 'held' (adversarial right) or 'wrong already' (clean wrong, adversarial too)."""
    if example.clean_prediction == example.label and example.adversarial_prediction != example.label:
        return "fooled"
    return "held" if example.adversarial_prediction == example.label else "wrong already"


def unperturbed(example: Any) -> bool:
    return not np.any(np.asarray(example.adversarial, dtype=np.float32) != np.asarray(example.clean, dtype=np.float32))


_ORDER = {"fooled": 0, "held": 1, "wrong already": 2}


def shown(examples: Sequence[Any]) -> list[Any]:
    """The examples in the order the gallery shows them: fooled, held, wrong already, then unperturbed ones (dropped when one was fooled)."""
    fooled = any(verdict(e) == "fooled" for e in examples)
    kept = [e for e in examples if not (fooled and unperturbed(e))]
    return sorted(kept, key=lambda e: (unperturbed(e), _ORDER[verdict(e)]))  # stable: stored order within each kind


def _tile(src: str, alt: str, caption: str, *, css: str = "") -> str:
    return f'<figure class="tile{css}"><img src="{src}" alt="{html.escape(alt)}" width="96" height="96"><figcaption>{caption}</figcaption></figure>'


def gallery_html(groups: Sequence[GalleryGroup], *, classes: Sequence[str] = ()) -> str:
    """The gallery section's body: one block per group, one line of three pictures per example."""
    if not groups:
        return '<p class="muted">This run stored no gallery examples.</p>'
    blocks = []
    for group in groups:
        lines = []
        for ex in shown(group.examples):
            label, clean_pred, adv_pred = (_name(i, classes) for i in (ex.label, ex.clean_prediction, ex.adversarial_prediction))
            image, magnification, largest = perturbation(ex.clean, ex.adversarial)
            kind = verdict(ex)
            esc = html.escape
            lines.append(
                '<div class="example">'
                + _tile(
                    png_data_uri(ex.clean),
                    f"clean input #{ex.example}, label {label}",
                    f"#{ex.example} clean: label <b>{esc(label)}</b>, predicted <b>{esc(clean_pred)}</b>",
                )
                + _tile(
                    png_data_uri(ex.adversarial),
                    f"adversarial input #{ex.example}",
                    f'adversarial: predicted <b>{esc(adv_pred)}</b> <span class="verdict {kind.split()[0]}">{kind}</span>',
                )
                + _tile(
                    png_data_uri(image),
                    f"perturbation of #{ex.example}",
                    f"perturbation &times;{magnification:.3g} (max |&delta;| {largest:.3g})" if largest else "no perturbation",
                    css=" delta",
                )
                + "</div>"
            )
        blocks.append(f'<section class="gallery-group"><h3>{html.escape(group.title)}</h3>{"".join(lines)}</section>')
    return "\n".join(blocks)
