"""Plots: the legend never covers a curve, and user-chosen names are shown as they are."""

from __future__ import annotations

from reports.plots import robustness_curves, save_png
from tests.reports.test_leaderboard import HOSTILE, cell


def curve_cells():
    """Four lines (model x defense) over three eps, with names long enough to crowd the plot, one of them full of '$'."""
    cells = []
    for model, defense in [(HOSTILE, "jpeg"), ("small-cnn", "none"), ("cost $5 model", "pgd-at"), ("_private", "none")]:
        for eps, robust in ((0.05, 0.9), (0.1, 0.6), (0.3, 0.1)):
            cells += [cell(model, "pgd", "linf", eps, robust, defense=defense), cell(model, "worst-case", "linf", eps, robust, defense=defense)]
    return cells


def test_the_linf_legend_sits_outside_the_axes_and_inside_the_figure(tmp_path):
    (plot,) = robustness_curves(curve_cells(), worst_case="worst-case")
    figure = plot.figure
    figure.draw_without_rendering()
    (axes,) = figure.axes
    (legend,) = figure.legends
    box, plot_area, whole = legend.get_window_extent(), axes.get_window_extent(), figure.bbox
    assert not box.overlaps(plot_area)
    assert box.x0 >= plot_area.x1  # to the right of the curves
    assert whole.x0 - 1 <= box.x0 and box.x1 <= whole.x1 + 1  # and not cut off
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == 4 and any("cost \\$5 model" in label for label in labels) and any(label.endswith("_private + none") for label in labels)
    assert save_png(plot, tmp_path).stat().st_size > 0  # '$' drawn as text, not parsed as mathtext
