"""Plots rendered from cells with matplotlib: robustness curves (robust accuracy against eps).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no
global figure state, no display needed) and written as SVG for the HTML page
or PDF for a LaTeX report. Output is reproducible: fixed SVG ids, no dates.
Legends sit outside the axes (right of them), so they never cover a curve;
every file is saved with ``bbox_inches="tight"``, so nothing is cut off.
User-chosen text (model names) is shown as it is, never read as mathtext.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.leaderboard import NORM_TITLES, sections

_STYLE = {"svg.hashsalt": "frontier-bench", "svg.fonttype": "none", "font.size": 10, "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True, eq=False)
class Plot:
    """A named figure: ``name`` is its file stem (``robustness-digits-linf``), ``title`` its caption."""

    name: str
    title: str
    figure: Any  # matplotlib.figure.Figure


def plain(text: object) -> str:
    """Text matplotlib shows as it is: a ``$`` escaped (no mathtext), a leading ``_`` kept (legends skip such labels)."""
    shown = str(text).replace("$", r"\$")
    return "\u200a" + shown if shown.startswith("_") else shown


def legend_outside(figure: Any, axes: Any, **options: Any) -> None:
    """The axes' legend to the right of the plot (constrained layout makes room for it), never over a curve."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right upper", frameon=False, **options)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def robustness_curves(cells: Sequence[Mapping[str, Any]], *, worst_case: str) -> list[Plot]:
    """One figure per dataset and norm: worst-case robust accuracy against eps, a line per model/defense.

    Each line starts at eps = 0 with the clean accuracy, as RobustBench and ARES
    draw them; an eps whose worst case failed leaves a gap, never a made-up point.
    """
    import matplotlib
    from matplotlib.figure import Figure

    plots = []
    for section in sections(cells, worst_case=worst_case):
        lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for row in section.rows:
            points = lines.setdefault((row.model, row.defense), [])
            worst = row.by_attack.get(worst_case)
            value = worst.get("robust_accuracy") if worst is not None and worst.get("status") == "ok" else None
            points.append((row.eps, math.nan if value is None else 100 * value))
            if row.clean_accuracy is not None and not any(eps == 0 for eps, _ in points):
                points.append((0.0, 100 * row.clean_accuracy))
        if not lines:
            continue
        norm = NORM_TITLES.get(section.norm, section.norm or "")
        with matplotlib.rc_context(_STYLE):
            figure = Figure(figsize=(7.2, 4.0), layout="constrained")
            axes = figure.add_subplot()
            single_defense = len({defense for _, defense in lines}) == 1
            for (model, defense), points in lines.items():
                points.sort()
                label = model if single_defense else f"{model} + {defense}"
                axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4, linewidth=1.6, label=plain(label))
            axes.set_xlabel(f"eps ({norm})")
            axes.set_ylabel("robust accuracy, worst case over attacks (%)")
            axes.set_ylim(-2, 102)
            axes.set_xlim(left=0)
            axes.grid(True, alpha=0.3)
            axes.set_title(plain(f"{section.dataset}, {norm}"))
            legend_outside(figure, axes)
        plots.append(Plot(f"robustness-{slug(section.dataset)}-{slug(norm)}", f"Robustness curve: {section.dataset}, {norm}", figure))
    return plots


def to_svg(plot: Plot) -> str:
    """The figure as SVG text (text kept as text, so the page stays small and searchable)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        plot.figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def save_pdf(plot: Plot, folder: Path) -> Path:
    """Write ``<folder>/<name>.pdf`` (no creation date, so the file is reproducible) and return its path."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plot.name}.pdf"
    with matplotlib.rc_context({**_STYLE, "pdf.fonttype": 42}):
        plot.figure.savefig(path, format="pdf", metadata={"CreationDate": None}, bbox_inches="tight")
    return path


def save_png(plot: Plot, folder: Path) -> Path:
    """Write ``<folder>/<name>.png`` (no metadata dates) and return its path."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plot.name}.png"
    with matplotlib.rc_context(_STYLE):
        plot.figure.savefig(path, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight")
    return path
