"""The random-labels track's reports from hand-made records: means and t-intervals over seeds, slowdown, summary lines, page, figures, exports."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

import reports.random_labels_plots as figures
from bench.baseline import cell_metrics
from bench.store import Record
from reports.csv_export import to_csv
from reports.json_export import to_json
from reports.plots import to_svg
from reports.random_labels import aggregate, random_labels_markdown, summary_lines, tables

T_975_2 = 4.302652729911275  # t_{0.975, 2}: the 95 % interval over 3 seeds
MLP, LINEAR = "mlp(hidden=512)", "linear"
MAX_EPOCHS = 20


def record(model, corruption, p, seed, train, test, fit_at, *, status="ok", clean=None, corrupted=None, position=0):
    """One job's record as the track stores it; training stops at ``fit_at`` (None: ran the whole budget without fitting)."""
    labels = {"model": model, "regularizers": "none", "corruption": corruption, "p": p, "dataset": "cifar10", "seed": seed}
    key = f"{model}-{corruption}-{p}-{seed}"
    if status != "ok":
        return Record(key, "random-labels", position, labels, status, {}, [], error="CUDA out of memory", seconds=1.0)
    epochs = fit_at or MAX_EPOCHS
    ramp = [(e / epochs) for e in range(1, epochs + 1)]
    curve = {
        "epoch": list(range(1, epochs + 1)),
        "loss": [2.3 * (1 - r) + 0.01 * seed for r in ramp],
        "train_accuracy": [train * r for r in ramp],
        "test_accuracy": [test * r for r in ramp],
        "clean_fit": None if clean is None else [clean * min(1.0, 2 * r) for r in ramp],
        "corrupted_fit": None if corrupted is None else [corrupted * r * r for r in ramp],
        "seconds": [0.5 * e for e in range(1, epochs + 1)],
    }
    metrics = {
        "seed": seed,
        "n_train": 1000,
        "n_test": 500,
        "threshold": 0.99,
        "train_accuracy": train,
        "test_accuracy": test,
        "generalization_gap": train - test,
        "fit": fit_at is not None,
        "epochs_to_fit": fit_at,
        "seconds_to_fit": None if fit_at is None else 0.5 * fit_at,
        "epochs": epochs,
        "max_epochs": MAX_EPOCHS,
        "train_seconds": 0.5 * epochs,
        "epochs_per_second": 2.0,
        "corrupted": round(p * 1000),
        "changed": round(0.9 * p * 1000),
        "clean_fit": clean,
        "corrupted_fit": corrupted,
        "curve": curve,
    }
    return Record(key, "random-labels", position, labels, status, metrics, [], seconds=0.5 * epochs + 1)


@pytest.fixture(scope="module")
def records():
    found = [
        record(MLP, "labels", 0.0, 0, 1.0, 0.52, 4, clean=1.0),
        record(MLP, "labels", 0.0, 1, 0.995, 0.50, 5, clean=0.995),
        record(MLP, "labels", 0.0, 2, 0.999, 0.54, 6, clean=0.999),
        record(MLP, "labels", 0.5, 0, 0.99, 0.30, 10, clean=0.995, corrupted=0.985),
        record(MLP, "labels", 0.5, 1, 0.992, 0.31, 12, clean=0.996, corrupted=0.988),
        record(MLP, "labels", 0.5, 2, 0.994, 0.32, 14, clean=0.997, corrupted=0.991),
        record(MLP, "labels", 0.5, 3, 0, 0, None, status="failed"),
        record(MLP, "labels", 1.0, 0, 0.999, 0.10, 14, clean=1.0, corrupted=0.999),
        record(MLP, "labels", 1.0, 1, 0.999, 0.102, 15, clean=1.0, corrupted=0.999),
        record(MLP, "labels", 1.0, 2, 0.999, 0.104, 16, clean=1.0, corrupted=0.999),
        record(MLP, "shuffled-pixels", 1.0, 0, 0.995, 0.1, 18),
        record(MLP, "shuffled-pixels", 1.0, 1, 0.97, 0.1, None),
        record(MLP, "shuffled-pixels", 1.0, 2, 0.993, 0.1, 19),
        record(MLP, "random-pixels", 1.0, 0, 0, 0, None, status="failed"),
        record(LINEAR, "labels", 0.0, 0, 0.991, 0.4, 8),
        record(LINEAR, "labels", 1.0, 0, 0.873, 0.101, None, clean=0.9, corrupted=0.86),
    ]
    return [Record(**{**r.__dict__, "position": i}) for i, r in enumerate(found)]


@pytest.fixture(scope="module")
def cells(records):
    return aggregate(records)


def cell_of(cells, corruption, p, model=MLP):
    (found,) = [c for c in cells if c["model"] == model and c["corruption"] == corruption and c["p"] == p]
    return found


def test_one_cell_per_model_regularizers_corruption_p_in_plan_order(cells):
    assert [(c["model"], c["corruption"], c["p"]) for c in cells] == [
        (MLP, "labels", 0.0),
        (MLP, "labels", 0.5),
        (MLP, "labels", 1.0),
        (MLP, "shuffled-pixels", 1.0),
        (MLP, "random-pixels", 1.0),
        (LINEAR, "labels", 0.0),
        (LINEAR, "labels", 1.0),
    ]
    half = cell_of(cells, "labels", 0.5)
    assert half["attack"] == "labels p=0.5" and half["defense"] == "none" and half["n"] == 500 and half["status"] == "ok"
    assert half["seeds"] == [0, 1, 2] and half["params"] == {"seeds": [0, 1, 2]} and len(half["keys"]) == 4
    assert half["flags"] == ["seeds-incomplete"] and half["error"] == "CUDA out of memory"
    assert half["seconds"] == pytest.approx(sum(0.5 * e + 1 for e in (10, 12, 14)) + 1.0)
    assert cell_of(cells, "shuffled-pixels", 1.0)["flags"] == ["not-fit"]
    failed = cell_of(cells, "random-pixels", 1.0)
    assert failed["status"] == "failed" and failed["metrics"] == {} and failed["series"] == {} and failed["n"] is None


def test_means_and_t_intervals_over_seeds_are_the_hand_computed_ones(cells):
    metrics = cell_of(cells, "labels", 0.0)["metrics"]
    test = [0.52, 0.50, 0.54]
    half = T_975_2 * statistics.stdev(test) / math.sqrt(3)
    assert metrics["test_accuracy"] == pytest.approx(0.52)
    assert metrics["interval"]["test_accuracy"] == pytest.approx([0.52 - half, 0.52 + half])
    assert metrics["std"]["test_accuracy"] == pytest.approx(0.02)
    assert metrics["train_accuracy"] == pytest.approx(0.998)
    low, high = metrics["interval"]["train_accuracy"]
    assert high == 1.0 and low == pytest.approx(0.998 - T_975_2 * statistics.stdev([1.0, 0.995, 0.999]) / math.sqrt(3))  # clipped into [0, 1]
    assert metrics["generalization_gap"] == pytest.approx(0.998 - 0.52)
    assert metrics["epochs_to_fit"] == 5 and metrics["interval"]["epochs_to_fit"] == pytest.approx([5 - T_975_2 / math.sqrt(3), 5 + T_975_2 / math.sqrt(3)])
    assert metrics["fit_rate"] == 1.0 and metrics["clean_fit"] == pytest.approx(0.998) and metrics["corrupted_fit"] is None
    assert metrics["timing"]["seconds_to_fit"] == pytest.approx(2.5) and metrics["timing"]["epochs_per_second"] == 2.0
    assert metrics["training"] == {
        "threshold": 0.99, "max_epochs": MAX_EPOCHS, "epochs": 5, "n_train": 1000, "classes": None, "corrupted": 0, "changed": 0,
    }  # fmt: skip
    shuffled = cell_of(cells, "shuffled-pixels", 1.0)["metrics"]
    assert shuffled["fit_rate"] == pytest.approx(2 / 3)
    assert shuffled["epochs_to_fit"] is None and shuffled["interval"]["epochs_to_fit"] is None and shuffled["timing"]["seconds_to_fit"] is None
    unmeasured = record(MLP, "labels", 0.0, 0, 1.0, 0.5, 1)
    unmeasured.metrics.update(epochs_per_second=None, train_seconds=0.0)  # an epoch too fast for the clock
    assert aggregate([unmeasured])[0]["metrics"]["timing"]["epochs_per_second"] is None
    single = cell_of(cells, "labels", 1.0, model=LINEAR)["metrics"]
    assert single["interval"]["test_accuracy"] is None and single["std"]["test_accuracy"] == 0.0  # one seed: no spread


def test_slowdown_is_epochs_to_fit_over_the_true_label_cells(cells):
    assert cell_of(cells, "labels", 0.0)["metrics"]["slowdown"] == 1.0
    assert cell_of(cells, "labels", 0.5)["metrics"]["slowdown"] == pytest.approx(12 / 5)
    assert cell_of(cells, "labels", 1.0)["metrics"]["slowdown"] == pytest.approx(15 / 5)
    assert cell_of(cells, "shuffled-pixels", 1.0)["metrics"]["slowdown"] is None  # a seed did not fit
    assert cell_of(cells, "labels", 1.0, model=LINEAR)["metrics"]["slowdown"] is None
    alone = aggregate([record(MLP, "labels", 1.0, 0, 0.999, 0.1, 14)])  # no true-label cell to compare with
    assert alone[0]["metrics"]["slowdown"] is None


def test_series_average_each_epoch_over_the_seeds_still_training(cells, records):
    series = cell_of(cells, "labels", 0.0)["series"]
    assert series["epoch"] == [1, 2, 3, 4, 5, 6] and series["running"] == [3, 3, 3, 3, 2, 1]
    curves = [r.metrics["curve"] for r in records[:3]]
    assert series["loss"][0] == pytest.approx(statistics.fmean(c["loss"][0] for c in curves))
    assert series["loss"][4] == pytest.approx(statistics.fmean(c["loss"][4] for c in curves[1:]))  # seed 0 stopped at epoch 4
    assert series["loss"][5] == pytest.approx(curves[2]["loss"][5])
    assert series["corrupted_fit"] is None and series["epochs_to_fit"] == [4, 5, 6] and series["seeds"] == [0, 1, 2]


def test_only_deterministic_numbers_are_gated(cells):
    gated = set(cell_metrics(cell_of(cells, "labels", 0.5)))
    assert {"train_accuracy", "test_accuracy", "generalization_gap", "fit_rate", "epochs_to_fit", "slowdown", "clean_fit", "corrupted_fit"} <= gated
    assert not gated & {"seconds_to_fit", "epochs_per_second", "train_seconds", "threshold", "seconds"}


def test_summary_lines_say_whether_and_how_fast_each_model_fits_random_labels(cells):
    assert summary_lines(cells) == [
        "mlp(hidden=512) fits random labels (99.9 % train, 10.2 % test), 3.0x slower than true labels",
        f"linear does not fit random labels within {MAX_EPOCHS} epochs (87.3 % train, 10.1 % test)",
    ]
    partial = aggregate([record(MLP, "labels", 0.5, s, 0.99, 0.3, 10 if s else None) for s in range(3)])
    assert summary_lines(partial) == ["mlp(hidden=512) fits 50 % random labels in 2 of 3 seeds (99.0 % train, 30.0 % test)"]
    assert summary_lines(aggregate([record(MLP, "gaussian", 1.0, 0, 1.0, 0.1, 3)])) == []  # no label noise: nothing to say


def test_tables_have_a_row_per_corruption_and_p_with_intervals(cells):
    found = tables(cells)
    assert [t.title for t in found] == ["mlp(hidden=512) on cifar10", "linear on cifar10"]
    mlp = found[0]
    assert all(len(row) == len(mlp.headers) for row in mlp.rows) and all(len(v) == len(mlp.headers) for v in mlp.values)
    assert [row[:2] for row in mlp.rows] == [("labels", "0"), ("labels", "0.5"), ("labels", "1"), ("shuffled-pixels", "1"), ("random-pixels", "1")]
    true_labels = dict(zip(mlp.headers, mlp.rows[0], strict=True))
    half = 100 * T_975_2 * 0.02 / math.sqrt(3)
    assert true_labels["test acc %"] == f"52.0 [{52 - half:.1f}–{52 + half:.1f}]"
    assert true_labels["fit (seeds)"] == "3/3" and true_labels["slowdown"] == "1.0x" and true_labels["corrupted fit %"] == "n/a"
    assert true_labels["epochs to fit"] == f"5.0 [{5 - T_975_2 / math.sqrt(3):.1f}–{5 + T_975_2 / math.sqrt(3):.1f}]"
    assert dict(zip(mlp.headers, mlp.rows[1], strict=True))["fit (seeds)"] == "3/3 (1 not ok)"  # its fourth seed failed
    shuffled = dict(zip(mlp.headers, mlp.rows[3], strict=True))
    assert shuffled["fit (seeds)"] == "2/3" and shuffled["epochs to fit"] == "not fit" and shuffled["slowdown"] == "n/a"
    assert mlp.rows[4][2:] == ("failed",) * 9
    assert "95 % t-interval over seeds" in mlp.note and "≥ 99 %" in mlp.note and "epochs to fit true labels (labels, p = 0)" in mlp.note


def test_markdown_page_holds_the_summary_the_tables_and_the_failed_jobs(cells):
    page = random_labels_markdown(cells)
    assert page.startswith("# Leaderboard: random-labels track\n")
    assert "- mlp(hidden=512) fits random labels (99.9 % train, 10.2 % test), 3.0x slower than true labels" in page
    for table in tables(cells):
        assert table.markdown() in page
    assert "## Failed jobs" in page and "random-pixels p=1: CUDA out of memory" in page
    assert random_labels_markdown([]) == "# Leaderboard: random-labels track\n\nNo results yet.\n"


def test_figures_build_and_render_to_svg(cells):
    plots = figures.figures(cells)
    names = [p.name for p in plots]
    assert names == [
        "learning-curves-cifar10-mlp-hidden-512-none",
        "learning-curves-cifar10-linear-none",
        "time-to-fit-cifar10",
        "test-error-cifar10",
        "clean-vs-corrupted-cifar10-mlp-hidden-512-none",
    ]
    for plot in plots:
        svg = to_svg(plot)
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    error = next(p for p in plots if p.name == "test-error-cifar10")
    assert "chance (10 classes)" in to_svg(error)
    assert figures.clean_vs_corrupted(aggregate([record(MLP, "labels", 0.0, 0, 1.0, 0.5, 4, clean=1.0)])) == []  # no 0 < p < 1: nothing to draw
    assert figures.figures([]) == []


def test_chance_level_follows_the_number_of_classes_when_stored():
    found = record(MLP, "labels", 1.0, 0, 1.0, 0.01, 30)
    found.metrics["classes"] = 100
    cells = aggregate([found])
    assert cells[0]["metrics"]["training"]["classes"] == 100
    assert "chance (100 classes)" in to_svg(figures.error_vs_p(cells)[0])


def test_csv_has_no_per_epoch_columns_and_json_is_standard(cells):
    rows = list(csv.reader(io.StringIO(to_csv(cells))))
    header, body = rows[0], rows[1:]
    assert len(body) == len(cells) and all(len(row) == len(header) for row in body)
    assert not [c for c in header if c.startswith("series") or "curve" in c]
    assert {"model", "regularizers", "corruption", "p", "metrics.slowdown", "metrics.timing.seconds_to_fit", "metrics.interval.test_accuracy"} <= set(header)
    document = json.loads(to_json(cells), parse_constant=lambda constant: pytest.fail(f"not standard JSON: {constant}"))
    exported = document["cells"]
    assert len(exported) == len(cells) and exported[0]["series"]["running"] == [3, 3, 3, 3, 2, 1]
    assert exported[1]["metrics"]["slowdown"] == pytest.approx(2.4)
