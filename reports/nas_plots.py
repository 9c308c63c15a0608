"""Plots of the NAS track, from its cells: best-so-far against evaluations, and the Pareto front of the trained table.

- ``best_so_far``: per space x dataset x objective, the best validation value
  found against the number of evaluated architectures, a line per strategy
  (the mean over seeds, its 95 % t-interval as a band), the table optimum as a
  dashed line and the reported budgets as dotted verticals.
- ``pareto``: per space x dataset with a trained table (the ``cells`` space):
  test accuracy against parameters, and robust against clean test accuracy;
  every architecture a grey dot, the Pareto front of (test accuracy, robust test
  accuracy, params) highlighted, each strategy's picks at its largest budget
  as its own marker.

Curves are the cells' ``series``; nothing is computed here. A figure with nothing to draw is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reports.nas import PARETO
from reports.nas_tables import budgets, groups, optimum, strategies, title
from reports.plots import _STYLE, Plot, legend_outside, plain, slug

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # the strategies' picks, in first-seen order
_GREY, _FRONT = "#b8bec9", "#1f3a93"
LOG_STEPS = 50  # a curve this long or longer is drawn on a log axis


def _percent(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else 100 * v for v in values]


def _curve(by_budget: Mapping[Any, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The series of a strategy's largest ok budget (it holds the curve up to that budget), or None."""
    ok = [c for b, c in by_budget.items() if b is not None and c["status"] == "ok" and (c.get("series") or {}).get("steps")]
    return max(ok, key=lambda c: c["budget"])["series"] if ok else None


def best_so_far(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per space x dataset x objective: the best validation value found against evaluations, a line per strategy, the optimum dashed."""
    import matplotlib
    from matplotlib.figure import Figure

    plots = []
    for group, members in groups(cells).items():
        lines = {strategy: series for strategy, by_budget in strategies(members).items() if (series := _curve(by_budget)) is not None}
        if not lines:
            continue
        space, dataset, objective = group
        with matplotlib.rc_context(_STYLE):
            figure = Figure(figsize=(7.2, 4.2), layout="constrained")
            axes = figure.add_subplot()
            for strategy, series in lines.items():
                drawn = axes.plot(series["steps"], _percent(series["mean"]), drawstyle="steps-post", linewidth=1.6, label=plain(strategy))
                low, high = _percent(series["low"]), _percent(series["high"])
                if not all(math.isnan(v) for v in low):
                    axes.fill_between(series["steps"], low, high, step="post", color=drawn[0].get_color(), alpha=0.15, linewidth=0)
            best = optimum(members)
            if best is not None and best["status"] == "ok":
                value = best["metrics"]["best_value"]
                axes.axhline(100 * value, linestyle="--", color="#5b6475", linewidth=1.2, label=plain(f"table optimum: {100 * value:.1f} %"))
            for budget in budgets(members):
                axes.axvline(budget, linestyle=":", color="#5b6475", linewidth=0.8, alpha=0.6)
            if max(len(s["steps"]) for s in lines.values()) >= LOG_STEPS:
                axes.set_xscale("log")
            axes.set_xlabel("evaluated architectures (dotted: the reported budgets)")
            axes.set_ylabel(f"best validation {objective} so far (%)")
            axes.grid(True, alpha=0.3)
            axes.set_title(plain(f"{title(group)}: best found against evaluations"), fontsize=10)
            legend_outside(figure, axes, fontsize=8)
        plots.append(Plot(f"nas-best-so-far-{slug(f'{space}-{dataset}-{objective}')}", f"Best found against evaluations: {title(group)}", figure))
    return plots


def _panel(axes: Any, points: Sequence[Mapping[str, Any]], picks: Sequence[Mapping[str, Any]], markers: Mapping[tuple, str], x: str, y: str) -> None:
    """All architectures grey, the front highlighted, each strategy's picks hollow in its marker."""

    def coordinates(found: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
        kept = [p for p in found if p.get(x) is not None and p.get(y) is not None]
        scale = {k: 1.0 if k == "params" else 100.0 for k in (x, y)}
        return [scale[x] * p[x] for p in kept], [scale[y] * p[y] for p in kept]

    axes.scatter(*coordinates(points), s=12, color=_GREY, label="architecture (table)", zorder=1)
    axes.scatter(*coordinates([p for p in points if p["front"]]), s=22, color=_FRONT, label="Pareto front", zorder=2)
    for index, (pair, marker) in enumerate(markers.items()):
        mine = [p for p in picks if (p["objective"], p["strategy"]) == pair]
        label = pair[1] if len({o for o, _ in markers}) == 1 else f"{pair[1]} ({pair[0]})"
        axes.scatter(*coordinates(mine), s=70, marker=marker, facecolors="none", edgecolors=f"C{index % 10}", linewidths=1.4,
                     label=plain(f"{label}: picks"), zorder=3)  # fmt: skip
    axes.grid(True, alpha=0.3)


def pareto(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per space x dataset with a trained table: test accuracy against params (log), robust against clean test accuracy."""
    import matplotlib
    from matplotlib.figure import Figure

    plots = []
    for cell in cells:
        if cell.get("role") != PARETO or cell["status"] != "ok":
            continue
        points, picks = cell["series"].get("points") or [], cell["series"].get("picks") or []
        if not points:
            continue
        markers = {pair: _MARKERS[i % len(_MARKERS)] for i, pair in enumerate(dict.fromkeys((p["objective"], p["strategy"]) for p in picks))}
        robust = any(p.get("robust_test_accuracy") is not None for p in points)
        with matplotlib.rc_context(_STYLE):
            figure = Figure(figsize=(10.5 if robust else 7.2, 4.2), layout="constrained")
            panels = figure.subplots(1, 2 if robust else 1, squeeze=False)[0]
            _panel(panels[0], points, picks, markers, "params", "test_accuracy")
            panels[0].set_xscale("log")
            panels[0].set_xlabel("parameters (log)")
            panels[0].set_ylabel("test accuracy (%)")
            if robust:
                _panel(panels[1], points, picks, markers, "test_accuracy", "robust_test_accuracy")
                panels[1].set_xlabel("test accuracy (%)")
                panels[1].set_ylabel("robust test accuracy (%)")
            where = f"{cell['space']} / {cell['dataset']}"
            figure.suptitle(plain(f"{where}: the trained table and its Pareto front"), fontsize=10)
            legend_outside(figure, panels[0], fontsize=8)
        plots.append(Plot(f"nas-pareto-{slug(where.replace(' / ', '-'))}", f"Pareto front: {where}", figure))
    return plots


def figures(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Every figure of the track, in page order."""
    return best_so_far(cells) + pareto(cells)


def images(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """The figures saved as PNG beside the run: best found against evaluations."""
    return best_so_far(cells)
