"""Plots of the GNN track, from its cells: accuracy against the attack budget, and adaptive against transferred attacks.

- ``accuracy_vs_budget``: per dataset and budget unit, the worst-case robust
  accuracy against the budget, a line per model x defense starting at budget 0
  with its clean accuracy, the 95 % t-interval over seeds as a band, and the
  clean accuracy of the graph-free model (the MLP) as a dashed line: a graph
  network under it would do better without its graph.
- ``adaptive_vs_transfer``: per dataset and budget unit where some attack ran
  both ways, its robust accuracy adaptive (solid) and transferred from the
  surrogate (dashed), a color per model x defense x attack: a dashed line far
  above its solid one is gradient masking.

Budgets that are fractions (of edges, of points) are drawn in percent. A
figure with nothing to draw is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from reports.gnn import ADAPTIVE, PERCENT_UNITS, TRANSFER, UNIT_TITLES, graph_free_reference, is_worst_case, name, row_order
from reports.gnn_tables import sections
from reports.plots import _STYLE, Plot, legend_outside, plain, slug

X_LABELS = {
    "edges": "budget (% of the clean graph's edges flipped)",
    "points": "budget (% of each cloud's points dropped)",
    "eps": "budget (eps)",
}


def _x(budget: float, unit: str) -> float:
    return 100 * budget if unit in PERCENT_UNITS else budget


def _percent(value: float | None) -> float:
    return math.nan if value is None else 100 * value


@contextmanager
def _frame(title: str, unit: str) -> Iterator[tuple[Any, Any]]:
    """A one-axes figure in the page's style; after the caller draws: the budget axis, accuracy in percent, a grid, the title, the legend outside."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(7.2, 4.2), layout="constrained")
        axes = figure.add_subplot()
        yield figure, axes
        axes.set_xlabel(X_LABELS.get(unit, f"budget ({unit})"))
        axes.set_ylim(-2, 102)
        axes.set_xlim(left=0)
        axes.grid(True, alpha=0.3)
        axes.set_title(plain(title), fontsize=10)
        legend_outside(figure, axes, fontsize=8)


def accuracy_vs_budget(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per dataset and budget unit: worst-case robust accuracy against the budget, a line per model x defense, the graph-free model dashed."""
    order = row_order(cells)
    reference = graph_free_reference(cells)
    plots = []
    for (dataset, unit), members in sections(cells).items():
        lines: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for cell in members:
            if is_worst_case(cell) and cell["status"] == "ok":
                if unit == "edges" and cell["metrics"]["graph_free"] and cell["defense"] == "none":
                    continue  # it ignores the graph: its line is the dashed reference
                lines.setdefault((cell["model"], cell["defense"]), []).append(cell)
        if not lines and dataset not in reference:
            continue
        title = f"{dataset}, {UNIT_TITLES.get(unit, unit)}: accuracy against the budget"
        with _frame(title, unit) as (figure, axes):
            for pair, points in sorted(lines.items(), key=lambda item: order[item[0]]):
                points = sorted(points, key=lambda c: c["budget"])
                first = points[0]["metrics"]
                xs = [0.0] + [_x(c["budget"], unit) for c in points]
                ys = [_percent(first["clean_accuracy"])] + [_percent(c["metrics"]["robust_accuracy"]) for c in points]
                lows = [_percent(first["clean_accuracy_low"])] + [_percent(c["metrics"]["robust_accuracy_low"]) for c in points]
                highs = [_percent(first["clean_accuracy_high"])] + [_percent(c["metrics"]["robust_accuracy_high"]) for c in points]
                label = name(*pair) + (" (transfer only)" if any("transfer-only" in c["flags"] for c in points) else "")
                drawn = axes.plot(xs, ys, marker="o", markersize=4, linewidth=1.6, label=plain(label))
                if not all(math.isnan(v) for v in lows):
                    axes.fill_between(xs, lows, highs, color=drawn[0].get_color(), alpha=0.15, linewidth=0)
            if dataset in reference:
                model, accuracy = reference[dataset]
                axes.axhline(
                    100 * accuracy, linestyle="--", color="#5b6475", linewidth=1.2, label=plain(f"{model} (graph-free), clean: {100 * accuracy:.1f} %")
                )
            axes.set_ylabel("robust accuracy, worst case over attacks (%)")
        plots.append(Plot(f"accuracy-vs-budget-{slug(dataset)}-{slug(unit)}", f"Accuracy against the budget: {dataset}, {UNIT_TITLES.get(unit, unit)}", figure))
    return plots


def adaptive_vs_transfer(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per dataset and budget unit: each attack that ran both adaptive and transferred, robust accuracy against the budget both ways."""
    order = row_order(cells)
    plots = []
    for (dataset, unit), members in sections(cells).items():
        modes: dict[tuple[str, str, str], dict[str, list[Mapping[str, Any]]]] = {}
        for cell in members:
            if not is_worst_case(cell) and cell["status"] == "ok" and cell["mode"] in (ADAPTIVE, TRANSFER):
                modes.setdefault((cell["model"], cell["defense"], cell["attack"]), {}).setdefault(cell["mode"], []).append(cell)
        both = {key: found for key, found in modes.items() if len(found) == 2}
        if not both:
            continue
        attacks = len({attack for _, _, attack in both}) > 1
        with _frame(f"{dataset}, {UNIT_TITLES.get(unit, unit)}: adaptive against transferred", unit) as (figure, axes):
            for index, ((model, defense, attack), found) in enumerate(sorted(both.items(), key=lambda item: order[item[0][:2]])):
                color = f"C{index % 10}"
                who = name(model, defense) + (f", {attack}" if attacks else "")
                for mode, style, text in ((ADAPTIVE, "-", "adaptive"), (TRANSFER, "--", "transferred")):
                    points = sorted(found[mode], key=lambda c: c["budget"])
                    xs = [_x(c["budget"], unit) for c in points]
                    ys = [_percent(c["metrics"]["robust_accuracy"]) for c in points]
                    axes.plot(xs, ys, style, marker="o", markersize=4, linewidth=1.5, color=color, label=plain(f"{who}: {text}"))
            axes.set_ylabel("robust accuracy (%)")
        plots.append(
            Plot(
                f"adaptive-vs-transfer-{slug(dataset)}-{slug(unit)}", f"Adaptive against transferred attacks: {dataset}, {UNIT_TITLES.get(unit, unit)}", figure
            )
        )
    return plots


def figures(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Every figure of the track, in page order."""
    return accuracy_vs_budget(cells) + adaptive_vs_transfer(cells)


def images(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """The figures saved as PNG beside the run: accuracy against the budget."""
    return accuracy_vs_budget(cells)
