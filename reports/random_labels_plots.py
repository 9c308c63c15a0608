"""Plots of the random-labels track, from its cells: Zhang et al.'s (2017) Figure 1 and Arpit et al.'s (2017) clean-first fitting.

- ``learning_curves``: training loss against epoch, a line per corruption and p (Zhang, Fig. 1a).
- ``time_to_fit``: epochs to fit against the label-noise level p, a line per
  model, input corruptions as their own markers (Fig. 1b).
- ``error_vs_p``: test error against p, with the chance level (Fig. 1c).
- ``clean_vs_corrupted``: with part of the labels corrupted, the share of clean
  and of corrupted training points fit, epoch by epoch (Arpit et al.).

Curves are the cells' ``series`` (per-epoch means over the seeds still
training); points and error bars are the cells' means and t-intervals over
seeds. A figure with nothing to draw is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from reports.plots import _STYLE, Plot, legend_outside, plain, slug
from reports.random_labels import DEFAULT_CLASSES, groups, is_labels, name

_MARKERS = ("s", "^", "D", "v", "P", "X", "*")  # input corruptions, in first-seen order
_NOT_FIT = {"title": "*: not fit in every seed, drawn at the epoch budget", "title_fontsize": 8}


def _percent(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else 100 * v for v in values]


def _ok(cells: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in cells if c["status"] == "ok"]


def _datasets(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    found: dict[str, list[Mapping[str, Any]]] = {}
    for cell in _ok(cells):
        found.setdefault(cell["dataset"], []).append(cell)
    return found


def _lines(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Label-noise cells as lines: one per model x regularizers (x label-noise variant when there are several), points sorted by p."""
    noisy = [c for c in cells if is_labels(c["corruption"])]
    variants = len({c["corruption"] for c in noisy}) > 1
    found: dict[str, list[Mapping[str, Any]]] = {}
    for cell in noisy:
        label = name(cell["model"], cell["regularizers"], cell["dataset"], with_dataset=False)
        found.setdefault(f"{label}, {cell['corruption']}" if variants else label, []).append(cell)
    return {label: sorted(points, key=lambda c: c["p"]) for label, points in found.items()}


def _errors(means: Sequence[float], intervals: Sequence[Sequence[float] | None]) -> list[list[float]]:
    """Matplotlib's [[below], [above]] from intervals in the means' units (0 where a point has none)."""
    below = [m - i[0] if i is not None and not math.isnan(m) else 0.0 for m, i in zip(means, intervals, strict=True)]
    above = [i[1] - m if i is not None and not math.isnan(m) else 0.0 for m, i in zip(means, intervals, strict=True)]
    return [below, above]


@contextmanager
def _frame(title: str, *, height: float = 4.0, epochs: bool = False) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """A one-axes figure in the page's style; after the caller draws: integer epochs on x (``epochs``), a grid, the title,
    and the legend outside, with the options the caller left in the yielded dict."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(7.2, height), layout="constrained")
        axes = figure.add_subplot()
        legend: dict[str, Any] = {"fontsize": 8}
        yield figure, axes, legend
        if epochs:
            axes.set_xlabel("epoch")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        axes.set_title(plain(title), fontsize=10)
        legend_outside(figure, axes, **legend)


def learning_curves(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per model x regularizers x dataset: training loss against epoch, a line per corruption and p (mean over the seeds still training)."""
    plots = []
    for (model, regularizers, dataset), members in groups(cells).items():
        drawn = [c for c in _ok(members) if (c.get("series") or {}).get("loss")]
        if not drawn:
            continue
        who = name(model, regularizers, dataset, with_dataset=True)
        with _frame(f"{who}: training loss", epochs=True) as (figure, axes, _):
            for cell in drawn:
                series = cell["series"]
                loss = [math.nan if v is None else v for v in series["loss"]]
                axes.plot(series["epoch"], loss, linewidth=1.4, label=plain(cell["attack"]))
            axes.set_ylabel("training loss (mean over the seeds still training)")
            axes.set_ylim(bottom=0)
        plots.append(Plot(f"learning-curves-{slug(dataset)}-{slug(model)}-{slug(regularizers)}", f"Learning curves: {who}", figure))
    return plots


def time_to_fit(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per dataset: epochs to fit against label noise p, a line per model with t-intervals; input corruptions as markers at their p.

    A point where some seed did not fit is drawn as an x at the epoch budget (a lower bound, not a measurement).
    """
    plots = []
    for dataset, members in _datasets(cells).items():
        if all(c["metrics"]["fit_rate"] == 0 for c in members):
            continue
        lines = _lines(members)
        inputs = [c for c in members if not is_labels(c["corruption"])]
        markers = {corruption: _MARKERS[i % len(_MARKERS)] for i, corruption in enumerate(dict.fromkeys(c["corruption"] for c in inputs))}
        single = len({(c["model"], c["regularizers"]) for c in members}) == 1
        colors: dict[tuple[str, str], str] = {}
        unfit = False  # a label-noise point not fit: one legend entry for its x
        with _frame(f"{dataset}: time to fit the training set", height=4.2) as (figure, axes, legend):
            for label, points in lines.items():
                means = [math.nan if c["metrics"]["epochs_to_fit"] is None else c["metrics"]["epochs_to_fit"] for c in points]
                errors = _errors(means, [c["metrics"]["interval"]["epochs_to_fit"] for c in points])
                drawn = axes.errorbar([c["p"] for c in points], means, yerr=errors, marker="o", markersize=4, linewidth=1.5, capsize=2, label=plain(label))
                color = drawn.lines[0].get_color()
                colors.setdefault((points[0]["model"], points[0]["regularizers"]), color)
                budget = [c for c in points if c["metrics"]["epochs_to_fit"] is None]
                if budget:
                    unfit = True
                    legend.update(_NOT_FIT)  # the legend's title, when a point was not fit
                    axes.plot([c["p"] for c in budget], [c["metrics"]["training"]["max_epochs"] for c in budget], "x", color=color, markersize=7)
            for cell in inputs:
                color = colors.setdefault((cell["model"], cell["regularizers"]), f"C{len(colors) % 10}")
                who = name(cell["model"], cell["regularizers"], dataset, with_dataset=False)
                label = cell["corruption"] if single else f"{who}: {cell['corruption']}"
                epochs = cell["metrics"]["epochs_to_fit"]
                style = {"marker": markers[cell["corruption"]], "linestyle": "none", "markersize": 7, "color": color, "markerfacecolor": "none"}
                if epochs is None:
                    legend.update(_NOT_FIT)
                    budget = cell["metrics"]["training"]["max_epochs"]
                    axes.plot([cell["p"]], [budget], **style, label=plain(f"{label} (p = {cell['p']:g}), not fit*"))
                    continue
                errors = _errors([epochs], [cell["metrics"]["interval"]["epochs_to_fit"]])
                axes.errorbar([cell["p"]], [epochs], yerr=errors, capsize=2, **style, label=plain(f"{label} (p = {cell['p']:g})"))
            if unfit:
                axes.plot([], [], "x", color="#5b6475", label="label noise, not fit*")
            axes.set_xlabel("label noise p (share of training labels replaced at random)")
            axes.set_ylabel("epochs to fit (mean over seeds)")
            axes.set_xlim(-0.05, 1.05)
            axes.set_ylim(bottom=0)
        plots.append(Plot(f"time-to-fit-{slug(dataset)}", f"Time to fit against label noise: {dataset}", figure))
    return plots


def error_vs_p(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per dataset: test error (against true labels) against label noise p, a line per model with t-intervals, chance level dashed."""
    plots = []
    for dataset, members in _datasets(cells).items():
        lines = _lines(members)
        if not lines:
            continue
        classes = next((c["metrics"]["training"]["classes"] for c in members if c["metrics"]["training"]["classes"]), DEFAULT_CLASSES)
        with _frame(f"{dataset}: test error against label noise", height=4.2) as (figure, axes, _):
            for label, points in lines.items():
                errors = [100 * (1 - c["metrics"]["test_accuracy"]) for c in points]
                intervals = [None if (i := c["metrics"]["interval"]["test_accuracy"]) is None else [100 * (1 - i[1]), 100 * (1 - i[0])] for c in points]
                axes.errorbar([c["p"] for c in points], errors, yerr=_errors(errors, intervals), marker="o", markersize=4, linewidth=1.5, capsize=2,
                              label=plain(label))  # fmt: skip
            axes.axhline(100 * (1 - 1 / classes), linestyle="--", color="#5b6475", linewidth=1, label=f"chance ({classes} classes)")
            axes.set_xlabel("label noise p (share of training labels replaced at random)")
            axes.set_ylabel("test error on true labels (%)")
            axes.set_xlim(-0.05, 1.05)
            axes.set_ylim(0, 100)
        plots.append(Plot(f"test-error-{slug(dataset)}", f"Test error against label noise: {dataset}", figure))
    return plots


def clean_vs_corrupted(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per model x regularizers x dataset, for each 0 < p < 1: the share of clean (solid) and corrupted (dashed) training points fit, by epoch."""
    plots = []
    for (model, regularizers, dataset), members in groups(cells).items():
        drawn = [c for c in _ok(members) if 0 < c["p"] < 1 and c["series"].get("clean_fit") and c["series"].get("corrupted_fit")]
        if not drawn:
            continue
        who = name(model, regularizers, dataset, with_dataset=True)
        with _frame(f"{who}: clean points first?", epochs=True) as (figure, axes, _):
            for index, cell in enumerate(drawn):
                series, color = cell["series"], f"C{index % 10}"
                for key, style, group in (("clean_fit", "-", "clean"), ("corrupted_fit", "--", "corrupted")):
                    values = _percent(series[key])
                    axes.plot(series["epoch"], values, style, color=color, linewidth=1.5, label=plain(f"{cell['attack']}: {group} points"))
            axes.set_ylabel("training points predicted as their training label (%)")
            axes.set_ylim(-2, 102)
        plots.append(Plot(f"clean-vs-corrupted-{slug(dataset)}-{slug(model)}-{slug(regularizers)}", f"Clean and corrupted points fit: {who}", figure))
    return plots


def figures(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Every figure of the track, in page order."""
    return learning_curves(cells) + time_to_fit(cells) + error_vs_p(cells) + clean_vs_corrupted(cells)
