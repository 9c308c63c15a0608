"""Plots of the uncertainty track, from its cells: reliability diagrams and metrics against shift level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.plots import _STYLE, Plot, legend_outside, plain, slug
from reports.uncertainty import SHIFT_METRICS, TITLES


def reliability_diagrams(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per model x estimator: accuracy against mean confidence per bin (seeds pooled), the diagonal, and the bins' share of points."""
    import matplotlib
    from matplotlib.figure import Figure

    plots = []
    for cell in cells:
        bins = (cell.get("metrics") or {}).get("reliability")
        if cell["status"] != "ok" or not bins:
            continue
        count, correct, confidence = bins["count"], bins["correct"], bins["confidence"]
        width = 1 / (len(count) - 1)  # the last bin holds confidence exactly 1
        filled = [i for i, c in enumerate(count) if c > 0]
        with matplotlib.rc_context(_STYLE):
            figure = Figure(figsize=(6.2, 4.2), layout="constrained")
            axes = figure.add_subplot()
            lefts = [min(i * width, 1 - width) for i in filled]
            axes.bar(lefts, [correct[i] / count[i] for i in filled], width=width, align="edge", edgecolor="#1d2330", color="#7aa2e3", label="accuracy")
            axes.plot(
                [confidence[i] / count[i] for i in filled],
                [correct[i] / count[i] for i in filled],
                "o",
                color="#a3202a",
                markersize=3,
                label="bin at its mean confidence",
            )
            axes.plot([0, 1], [0, 1], "--", color="#5b6475", linewidth=1, label="perfect calibration")
            axes.set_xlim(0, 1)
            axes.set_ylim(0, 1)
            axes.set_xlabel("confidence (max probability)")
            axes.set_ylabel("accuracy")
            ece = cell["metrics"].get("ece")
            axes.set_title(plain(f"{cell['estimator']} on {cell['dataset']}" + (f", ECE {100 * ece:.1f}%" if ece is not None else "")), fontsize=10)
            legend_outside(figure, axes, fontsize=8)
        name = f"reliability-{slug(cell['dataset'])}-{slug(cell['model'])}-{slug(cell['estimator'])}"
        plots.append(Plot(name, f"Reliability diagram: {cell['model']} / {cell['estimator']} on {cell['dataset']}", figure))
    return plots


def shift_curves(cells: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """Per dataset and shift: accuracy, NLL, Brier and ECE against the shift level (0 = clean), a line per model/estimator, std as error bars."""
    import matplotlib
    from matplotlib.figure import Figure

    plots = []
    ok = [c for c in cells if c["status"] == "ok"]
    for dataset in dict.fromkeys(c["dataset"] for c in ok):
        members = [c for c in ok if c["dataset"] == dataset]
        for shift in dict.fromkeys(name for c in members for name in c["metrics"].get("shift", {})):
            lines = [c for c in members if shift in c["metrics"]["shift"]]
            single_model = len({c["model"] for c in lines}) == 1
            with matplotlib.rc_context(_STYLE):
                figure = Figure(figsize=(10.5, 6.0), layout="constrained")
                for index, metric in enumerate(SHIFT_METRICS):
                    axes = figure.add_subplot(2, 2, index + 1)
                    scale = 100 if metric in ("accuracy", "ece") else 1
                    for cell in lines:
                        entries = cell["metrics"]["shift"][shift]
                        levels = [0.0] + [e["level"] for e in entries]
                        means = [scale * cell["metrics"][metric]] + [scale * e[metric] for e in entries]
                        stds = [scale * cell["metrics"]["std"].get(metric, 0.0)] + [scale * e[f"{metric}_std"] for e in entries]
                        label = plain(cell["estimator"] if single_model else f"{cell['model']} / {cell['estimator']}")
                        axes.errorbar(levels, means, yerr=stds, marker="o", markersize=3, linewidth=1.4, capsize=2, label=label)
                    axes.set_xlabel(f"{shift} level (0 = clean)")
                    axes.set_ylabel(TITLES[metric])
                    axes.grid(True, alpha=0.3)
                    if index == 0:
                        legend_outside(figure, axes, fontsize=8)
                figure.suptitle(plain(f"{dataset}: metrics against shift '{shift}' (mean ± std over seeds)"))
            plots.append(Plot(f"shift-{slug(dataset)}-{slug(shift)}", f"Dataset shift: {shift} on {dataset}", figure))
    return plots
