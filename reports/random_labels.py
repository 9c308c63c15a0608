"""The random-labels track's leaderboard: how fast each model fits a corrupted training set, and what it then gets right on true test labels.

Zhang et al. (2017) train one network on true labels, on labels replaced by
random classes with probability p, and on corrupted inputs (shuffled pixels,
random pixels, Gaussian noise): it fits them all, random labels slower "by a
small constant factor", and its test error climbs to chance as p goes to 1.
Arpit et al. (2017): with part of the labels corrupted, the clean points are
fit first. From the stored records (one per model x regularizers x corruption
x p x dataset x seed) this module builds those numbers:

- ``aggregate``: one cell per model x regularizers x corruption x p x dataset,
  in plan order: means over the seeds that finished (``ok``), their Student-t
  intervals over seeds (``bench.stats.mean_interval``), the share of seeds
  that fit, the slowdown against true labels, and per-epoch curves averaged
  over seeds (``series``, for the plots; never a CSV column).
- ``tables``, ``summary_lines`` and ``random_labels_markdown``: the page.

Only numbers a re-run reproduces are top-level in a cell's ``metrics`` (the CI
gate holds every one of them); wall-clock time sits under
``metrics["timing"]``, the run's setup under ``metrics["training"]``.
Everything here reads stored numbers; nothing is measured again.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import mean_interval
from reports.escaping import markdown_text
from reports.leaderboard import Table, page_markdown

TRACK = "random-labels"
CELL_LABELS = ("model", "regularizers", "corruption", "p", "dataset")  # a cell: every label of a record but its seed
MEANS = ("train_accuracy", "test_accuracy", "generalization_gap")
FITS = ("clean_fit", "corrupted_fit")  # None in a seed where that group of training points is empty
INTERVALS = ("train_accuracy", "test_accuracy", "generalization_gap", "epochs_to_fit")
SERIES = ("loss", "train_accuracy", "test_accuracy", "clean_fit", "corrupted_fit")
BOUNDS = {  # where an interval over seeds is clipped: a t-interval knows nothing of a number's range
    "train_accuracy": (0.0, 1.0),
    "test_accuracy": (0.0, 1.0),
    "generalization_gap": (-1.0, 1.0),
    "epochs_to_fit": (1.0, None),
    "seconds_to_fit": (0.0, None),
}
DEFAULT_CLASSES = 10  # chance level when the records do not say how many classes there are
HEADERS = (
    "corruption",
    "p",
    "train acc %",
    "test acc %",
    "gap (points)",
    "fit (seeds)",
    "epochs to fit",
    "slowdown",
    "seconds to fit",
    "clean fit %",
    "corrupted fit %",
)


def is_labels(corruption: str) -> bool:
    """Whether a corruption label names label noise (``labels``, ``labels(exclude_true=True)``), not an input corruption."""
    return corruption == "labels" or corruption.startswith("labels(")


def group_key(cell: Mapping[str, Any]) -> tuple[str, str, str]:
    """(model, regularizers, dataset): the cells one model was trained on, one table and one figure."""
    return cell["model"], cell["regularizers"], cell["dataset"]


def groups(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[Mapping[str, Any]]]:
    """Cells by ``group_key``, groups and cells in plan order."""
    found: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for cell in cells:
        found.setdefault(group_key(cell), []).append(cell)
    return found


def name(model: str, regularizers: str, dataset: str, *, with_dataset: bool) -> str:
    """'mlp(hidden=512) with dropout=0.5 on cifar10': the regularizers unless none, the dataset when asked."""
    text = model if regularizers == "none" else f"{model} with {regularizers}"
    return f"{text} on {dataset}" if with_dataset else text


# -- cells ---------------------------------------------------------------------
def aggregate(records: Sequence[Any]) -> list[dict[str, Any]]:
    """One cell per model x regularizers x corruption x p x dataset, in plan order, from the records of its seeds; then each cell's slowdown."""
    members: dict[tuple, list[Any]] = {}
    for record in records:
        members.setdefault(tuple(record.labels.get(k) for k in CELL_LABELS), []).append(record)
    cells = [_cell(found) for found in members.values()]
    for found in groups(cells).values():
        reference = true_labels_cell(found)
        for cell in found:
            if cell["status"] == "ok":
                cell["metrics"]["slowdown"] = _slowdown(cell, reference)
    return cells


def _cell(members: Sequence[Any]) -> dict[str, Any]:
    first = members[0]
    ok = [r for r in members if r.status == "ok"]
    fits = [bool(r.metrics.get("fit")) for r in ok]
    flags = {f for r in members for f in r.flags}
    if ok and len(ok) < len(members):
        flags.add("seeds-incomplete")
    if not all(fits):
        flags.add("not-fit")
    seeds = [r.labels.get("seed") for r in ok]
    corruption, p = first.labels["corruption"], first.labels["p"]
    return {
        "track": first.track,
        **{k: first.labels[k] for k in CELL_LABELS},
        "defense": first.labels["regularizers"],  # for harness code that reads a defense
        "attack": f"{corruption} p={p:g}",  # text only
        "norm": None,
        "eps": None,
        "n": ok[0].metrics.get("n_test") if ok else None,
        "clean_accuracy": None,
        "robust_accuracy": None,
        "flags": sorted(flags),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok" if ok else first.status,
        "error": next((r.error for r in members if r.error), None),
        "params": {"seeds": seeds},
        "seeds": seeds,
        "key": None,
        "keys": [r.key for r in members],
        "metrics": _metrics(ok) if ok else {},
        "series": _series(ok) if ok else {},
    }


def _interval(metric: str, low: float | None, high: float | None) -> list[float] | None:
    """[low, high] clipped into the metric's range (an accuracy's interval never leaves [0, 1]); None with one seed."""
    if low is None or high is None:
        return None
    floor, ceiling = BOUNDS.get(metric, (None, None))
    low = low if floor is None else max(floor, low)
    high = high if ceiling is None else min(ceiling, high)
    return [low, high]


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values a seed has (a timing is None where a seed could not measure it); None when none has one."""
    found = [v for v in values if v is not None]
    return statistics.fmean(found) if found else None


def _metrics(ok: Sequence[Any]) -> dict[str, Any]:
    """Means over the ok seeds (``epochs_to_fit`` only when every seed fit), intervals and std over seeds, timing and setup nested."""
    values = {k: [r.metrics[k] for r in ok] for k in MEANS}
    fits = [bool(r.metrics.get("fit")) for r in ok]
    epochs = [r.metrics.get("epochs_to_fit") for r in ok]
    if all(fits) and None not in epochs:
        values["epochs_to_fit"] = epochs
    for k in FITS:
        found = [r.metrics.get(k) for r in ok]
        if None not in found:
            values[k] = found
    summary = {k: mean_interval(v) for k, v in values.items()}
    mean = {k: s[0] for k, s in summary.items()}
    seconds = [r.metrics.get("seconds_to_fit") for r in ok]
    timing = mean_interval(seconds) if "epochs_to_fit" in values and None not in seconds else (None, None, None)
    classes = [r.metrics["classes"] for r in ok if r.metrics.get("classes") is not None]
    return {
        **{k: mean[k] for k in MEANS},
        "fit_rate": sum(fits) / len(fits),
        "epochs_to_fit": mean.get("epochs_to_fit"),
        **{k: mean.get(k) for k in FITS},
        "slowdown": None,  # set by aggregate, against the true-label cell
        "interval": {k: _interval(k, *summary[k][1:]) if k in summary else None for k in INTERVALS},
        "std": {k: (statistics.stdev(values[k]) if len(values[k]) > 1 else 0.0) if k in values else None for k in (*INTERVALS, *FITS)},
        "timing": {
            "seconds_to_fit": timing[0],
            "seconds_to_fit_interval": _interval("seconds_to_fit", *timing[1:]),
            "epochs_per_second": _mean([r.metrics.get("epochs_per_second") for r in ok]),
            "train_seconds": _mean([r.metrics.get("train_seconds") for r in ok]),
        },
        "training": {
            "threshold": ok[0].metrics.get("threshold"),
            "max_epochs": max(r.metrics["max_epochs"] for r in ok),
            "epochs": statistics.fmean(r.metrics["epochs"] for r in ok),
            "n_train": ok[0].metrics.get("n_train"),
            "classes": classes[0] if classes else None,
            "corrupted": statistics.fmean(r.metrics["corrupted"] for r in ok),
            "changed": statistics.fmean(r.metrics["changed"] for r in ok),
        },
    }


def _series(ok: Sequence[Any]) -> dict[str, Any]:
    """Per-epoch means over seeds, for the plots.

    Seeds stop at different epochs (training ends when the training set is fit),
    so each epoch's value is the mean over the seeds still running at it; how
    many that is, is ``running``. The late epochs of a curve therefore average
    over the slower seeds only. A series no seed recorded is None.
    """
    curves = [r.metrics.get("curve") or {} for r in ok]
    epochs = sorted({e for c in curves for e in c.get("epoch") or ()})
    series: dict[str, Any] = {"epoch": epochs, "running": [sum(e in (c.get("epoch") or ()) for c in curves) for e in epochs]}
    for k in SERIES:
        by_epoch: dict[int, list[float]] = {}
        for curve in curves:
            if curve.get(k) is not None:
                for epoch, value in zip(curve["epoch"], curve[k], strict=True):
                    if value is not None:
                        by_epoch.setdefault(epoch, []).append(value)
        series[k] = [statistics.fmean(by_epoch[e]) if e in by_epoch else None for e in epochs] if by_epoch else None
    series["seeds"] = [r.labels.get("seed") for r in ok]
    series["epochs_to_fit"] = [r.metrics.get("epochs_to_fit") for r in ok]  # per seed, None where it did not fit
    return series


def true_labels_cell(members: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of one group's cells, the one trained on true labels (label noise at p = 0; plain ``labels`` first), or None."""
    found = [c for c in members if is_labels(c["corruption"]) and c["p"] == 0]
    return next((c for c in found if c["corruption"] == "labels"), found[0] if found else None)


def random_labels_cell(members: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of one group's cells, the one that stands for random labels: label noise at p = 1, else at the largest p > 0; None without label noise."""
    found = [c for c in members if is_labels(c["corruption"]) and c["p"] > 0]
    return max(found, key=lambda c: (c["p"], c["corruption"] == "labels")) if found else None


def _slowdown(cell: Mapping[str, Any], reference: Mapping[str, Any] | None) -> float | None:
    """Epochs to fit over the true-label cell's; None without that cell or where either did not fit in every seed."""
    if reference is None or reference["status"] != "ok":
        return None
    mine, theirs = cell["metrics"].get("epochs_to_fit"), reference["metrics"].get("epochs_to_fit")
    return mine / theirs if mine is not None and theirs else None


# -- display -------------------------------------------------------------------
def _show(value: float | None, found: Sequence[float] | None = None, *, scale: float = 100, digits: int = 1) -> str:
    """'99.9 [99.7–100.0]': a mean (as percent by default) with its interval over seeds; 'n/a' without a value."""
    if value is None:
        return "n/a"
    text = f"{scale * value:.{digits}f}"
    return text + (f" [{scale * found[0]:.{digits}f}–{scale * found[1]:.{digits}f}]" if found is not None else "")


def times(factor: float | None) -> str:
    """'31x', '3.1x'; 'n/a' for None."""
    if factor is None:
        return "n/a"
    return f"{factor:.1f}x" if factor < 10 else f"{factor:.0f}x"


def _row(cell: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[float | None, ...]]:
    head = (cell["corruption"], f"{cell['p']:g}")
    if cell["status"] != "ok":
        return (*head, *([cell["status"]] * (len(HEADERS) - 2))), (None, cell["p"], *([None] * (len(HEADERS) - 2)))
    metrics = cell["metrics"]
    interval, timing = metrics["interval"], metrics["timing"]
    seeds = len(cell["seeds"])
    epochs = metrics["epochs_to_fit"]
    rows = (
        *head,
        _show(metrics["train_accuracy"], interval["train_accuracy"]),
        _show(metrics["test_accuracy"], interval["test_accuracy"]),
        _show(metrics["generalization_gap"], interval["generalization_gap"]),
        f"{round(metrics['fit_rate'] * seeds)}/{seeds}" + (f" ({len(cell['keys']) - seeds} not ok)" if len(cell["keys"]) > seeds else ""),
        "not fit" if epochs is None else _show(epochs, interval["epochs_to_fit"], scale=1),
        times(metrics["slowdown"]),
        _show(timing["seconds_to_fit"], timing["seconds_to_fit_interval"], scale=1),
        _show(metrics["clean_fit"]),
        _show(metrics["corrupted_fit"]),
    )
    values = (None, cell["p"], metrics["train_accuracy"], metrics["test_accuracy"], metrics["generalization_gap"], metrics["fit_rate"], epochs)
    return rows, (*values, metrics["slowdown"], timing["seconds_to_fit"], metrics["clean_fit"], metrics["corrupted_fit"])


def _note(members: Sequence[Mapping[str, Any]]) -> str:
    ok = [c for c in members if c["status"] == "ok"]
    seeds = ", ".join(str(n) for n in sorted({len(c["seeds"]) for c in ok})) or "0"
    training = [c["metrics"]["training"] for c in ok]
    threshold = ", ".join(f"{100 * t:g}" for t in sorted({t["threshold"] for t in training if t["threshold"] is not None})) or "n/a"
    budget = ", ".join(str(e) for e in sorted({t["max_epochs"] for t in training})) or "n/a"
    points = ", ".join(str(n) for n in sorted({t["n_train"] for t in training if t["n_train"] is not None})) or "n/a"
    tests = ", ".join(str(n) for n in sorted({c["n"] for c in ok if c["n"]})) or "n/a"
    return (
        f"Mean over {seeds} seed{'s' if seeds != '1' else ''} ({points} training, {tests} test points), in brackets the 95 % t-interval over seeds; "
        f"fit = train accuracy ≥ {threshold} % within {budget} epochs (eval mode, against the labels trained on); "
        "fit (seeds) = seeds that fit / seeds that finished, with the seeds that failed or were invalid as 'not ok'; "
        "test accuracy is against the true test labels; gap = train - test accuracy in points; "
        "slowdown = epochs to fit / epochs to fit true labels (labels, p = 0) of the same model and regularizers; "
        "clean / corrupted fit = share of the unchanged / changed training points predicted as their training label; "
        "seconds to fit is wall-clock time (shown, never gated)."
    )


def tables(cells: Sequence[Mapping[str, Any]]) -> list[Table]:
    """One table per model x regularizers x dataset, a row per corruption x p in plan order."""
    out = []
    for (model, regularizers, dataset), members in groups(cells).items():
        rows, values = zip(*(_row(c) for c in members), strict=True)
        title = name(model, regularizers, dataset, with_dataset=True)
        out.append(Table(title, HEADERS, tuple(rows), tuple(values), _note(members)))
    return out


# -- summary -------------------------------------------------------------------
def _what(cell: Mapping[str, Any]) -> str:
    """'random labels', '50 % random labels', 'random labels (exclude_true=True)'."""
    params = cell["corruption"][len("labels(") : -1] if cell["corruption"] != "labels" else ""
    text = "random labels" if cell["p"] == 1 else f"{100 * cell['p']:g} % random labels"
    return f"{text} ({params})" if params else text


def summary_lines(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """One quotable line per model x regularizers x dataset: does it fit random labels, what it gets on the test set, how much slower than true labels."""
    found = groups(cells)
    with_dataset = len({dataset for _, _, dataset in found}) > 1
    lines = []
    for (model, regularizers, dataset), members in found.items():
        cell = random_labels_cell(members)
        if cell is None:
            continue
        who, what = name(model, regularizers, dataset, with_dataset=with_dataset), _what(cell)
        if cell["status"] != "ok":
            lines.append(f"{who}: {what}: {cell['status']}" + (f" ({cell['error']})" if cell["error"] else ""))
            continue
        metrics = cell["metrics"]
        scores = f"({100 * metrics['train_accuracy']:.1f} % train, {100 * metrics['test_accuracy']:.1f} % test)"
        seeds = len(cell["seeds"])
        fit = round(metrics["fit_rate"] * seeds)
        if fit == 0:
            lines.append(f"{who} does not fit {what} within {metrics['training']['max_epochs']} epochs {scores}")
            continue
        if fit < seeds:
            lines.append(f"{who} fits {what} in {fit} of {seeds} seeds {scores}")
            continue
        slowdown, reference = metrics["slowdown"], true_labels_cell(members)
        if slowdown is not None:
            pace = f"{times(slowdown)} slower than" if slowdown >= 1 else f"{times(1 / slowdown)} faster than"
            lines.append(f"{who} fits {what} {scores}, {pace} true labels")
        elif reference is not None and reference["status"] == "ok":
            lines.append(f"{who} fits {what} {scores}; true labels not fit in every seed")
        else:
            lines.append(f"{who} fits {what} {scores}")
    return lines


def random_labels_markdown(cells: Sequence[Mapping[str, Any]]) -> str:
    """The page: the summary lines as a list, a table per model x regularizers x dataset, then the failed jobs."""
    return page_markdown(
        f"Leaderboard: {markdown_text(cells[0]['track'] if cells else TRACK)} track",
        tables(cells) if cells else [],
        summary=summary_lines(cells) if cells else [],
        failed=[(f"{name(*group_key(c), with_dataset=True)} / {c['attack']}", c["error"]) for c in cells if c["status"] == "failed"],
        footer="Learning curves, time to fit, test error and clean-vs-corrupted fit: the figures in leaderboard.html.",
    )
