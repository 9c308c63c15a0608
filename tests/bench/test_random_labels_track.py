"""The random-label track: Zhang et al.'s (2017) findings hold through `bench run`, and the track is a harness citizen.

Memorization (random labels fit, test at chance; true labels generalize),
the corrupted subset (fixed by the seed, nested in p, recorded exactly),
shuffled pixels (invisible to an MLP, not to a CNN), regularizers (they do
not stop memorization), kill and resume (the same leaderboard), the CI gate,
and bad input as one line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.data import DATASETS
from bench.tracks.random_labels.corruptions import CORRUPTIONS
from bench.tracks.random_labels.regularizers import translate
from tests.bench.test_resume import kill_after

TINY = """
track = "random-labels"
seeds = 1
executor = "serial"
[[models]]
name = "mlp"
hidden = 512
[[corruptions]]
name = "labels"
p = [0.0, 0.5, 1.0]
[training]
epochs = 150
"""


def run(spec: Path, out: Path, *args: str) -> int:
    return main(["run", "--config", str(spec), "--out", str(out), "-q", *args])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("random-labels")
    (folder / "spec.toml").write_text(TINY)
    assert run(folder / "spec.toml", folder / "run") == 0
    return folder


def cells(run_dir: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["cells"]


def without_timing(found: list[dict]) -> list[dict]:
    """Cells minus wall-clock time (which no rerun reproduces)."""
    return [{**c, "seconds": None, "metrics": {k: v for k, v in c["metrics"].items() if k != "timing"}} for c in found]


# -- what the paper found -----------------------------------------------------------
def test_an_overparameterized_mlp_memorizes_random_labels_and_generalizes_on_true_ones(tiny, capsys):
    by_p = {c["p"]: c for c in cells(tiny / "run", capsys)}
    assert set(by_p) == {0.0, 0.5, 1.0} and all(c["status"] == "ok" for c in by_p.values())
    random, true = by_p[1.0]["metrics"], by_p[0.0]["metrics"]
    assert random["train_accuracy"] >= 0.99 and abs(random["test_accuracy"] - 0.1) <= 0.05  # fit, and at chance on the true test labels
    assert true["test_accuracy"] >= 0.95
    assert random["epochs_to_fit"] > true["epochs_to_fit"] and random["slowdown"] == pytest.approx(random["epochs_to_fit"] / true["epochs_to_fit"])
    half = by_p[0.5]["metrics"]
    assert true["test_accuracy"] > half["test_accuracy"] > random["test_accuracy"]  # test accuracy falls with the noise
    board = (tiny / "run" / "leaderboard.md").read_text()
    assert "- mlp(hidden=512) fits random labels (" in board and "slower than true labels" in board
    page = (tiny / "run" / "leaderboard.html").read_text()
    assert '<ul class="summary"><li>mlp(hidden=512) fits random labels (' in page  # the quotable line heads the HTML page too
    for figure in ("learning-curves-", "time-to-fit-", "test-error-", "clean-vs-corrupted-"):
        assert f'id="plot-{figure}' in page


def test_the_learning_curve_and_the_corrupted_subset_are_stored(tiny):
    with sqlite3.connect(tiny / "run" / "results.db") as db:
        rows = db.execute("SELECT key, json_extract(labels, '$.p'), metrics FROM jobs").fetchall()
        artifacts = dict(db.execute("SELECT job || '/' || name, blob FROM artifacts").fetchall())
    key, _, metrics = next(r for r in rows if r[1] == 0.5)
    metrics = json.loads(metrics)
    curve = artifacts[f"{key}/learning-curve.csv"].decode().splitlines()
    assert curve[0] == "epoch,loss,train_accuracy,test_accuracy,clean_fit,corrupted_fit,seconds"
    assert len(curve) == 1 + metrics["epochs"] == 1 + metrics["epochs_to_fit"]  # stopped at the epoch that fit
    recorded = json.loads(artifacts[f"{key}/corruption.json"])
    assert recorded["changed"] == metrics["changed"] and recorded["selected"] == metrics["corrupted"] == len(recorded["indices"])
    # Arpit et al.: the clean points are fit before the corrupted ones
    early = [float(v) for v in curve[len(curve) // 3].split(",")]
    assert early[4] > early[5]


def test_the_corrupted_subset_is_fixed_by_the_seed_nested_in_p_and_recorded_exactly():
    data = DATASETS.create("digits")
    labels = CORRUPTIONS.create("labels")
    half = labels.corrupt(data, 0.5, torch.Generator().manual_seed(3))
    n = len(data.y_train)
    assert abs(int(half.selected.sum()) - n / 2) <= 4 * (n * 0.25) ** 0.5  # about half is redrawn
    assert int((half.y_train != data.y_train).sum()) == half.record["changed"] == int(half.changed.sum())
    assert abs(half.record["changed"] - 0.45 * n) <= 4 * (n * 0.45 * 0.55) ** 0.5  # a redrawn label lands on the true one 1 time in 10
    assert half.record["labels"] == half.y_train.tolist() and torch.equal(half.y_test, data.y_test)
    again = labels.corrupt(data, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(again.y_train, half.y_train) and torch.equal(again.selected, half.selected)
    assert not torch.equal(labels.corrupt(data, 0.5, torch.Generator().manual_seed(4)).y_train, half.y_train)
    quarter = labels.corrupt(data, 0.25, torch.Generator().manual_seed(3))
    assert bool((quarter.selected <= half.selected).all())  # nested: p = 0.25's subset lies inside p = 0.5's
    wrong = CORRUPTIONS.create("labels", exclude_true=True).corrupt(data, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(wrong.changed, wrong.selected)  # every redrawn label is a wrong one


def test_input_corruptions_keep_labels_and_reach_the_test_set():
    data = DATASETS.create("digits")
    shuffled = CORRUPTIONS.create("shuffled-pixels").corrupt(data, 1.0, torch.Generator().manual_seed(0))
    order = torch.tensor(shuffled.record["permutation"])
    assert torch.equal(shuffled.x_train.flatten(1), data.x_train.flatten(1)[:, order])  # one permutation for every image
    assert torch.equal(shuffled.x_test.flatten(1), data.x_test.flatten(1)[:, order])  # the test set's too
    assert torch.equal(shuffled.y_train, data.y_train) and bool(shuffled.changed.all())
    randomized = CORRUPTIONS.create("random-pixels").corrupt(data, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(randomized.x_train.flatten(1).sort(1).values, data.x_train.flatten(1).sort(1).values)  # each image's own pixels
    noise = CORRUPTIONS.create("gaussian").corrupt(data, 1.0, torch.Generator().manual_seed(0))
    assert noise.x_train.mean().item() == pytest.approx(data.x_train.mean().item(), abs=0.01)
    assert noise.x_train.std().item() == pytest.approx(data.x_train.std().item(), abs=0.01)


def test_shuffled_pixels_are_invisible_to_an_mlp_but_not_to_a_cnn(tmp_path, capsys):
    """MNIST-1D (made for such questions): a fixed permutation changes nothing for an MLP and costs a 1-D CNN its locality."""
    (tmp_path / "spec.toml").write_text(
        'track = "random-labels"\ndataset = "mnist1d"\nseeds = 1\nexecutor = "serial"\ntrain_examples = 1500\n'
        '[[models]]\nname = "mlp"\nhidden = 256\n[[models]]\nname = "cnn1d"\n'
        '[[corruptions]]\nname = "labels"\np = 0.0\n[[corruptions]]\nname = "shuffled-pixels"\n'
        "[training]\nepochs = 60\nlr = 0.003\n"
    )
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    test = {(c["model"], c["corruption"]): c["metrics"]["test_accuracy"] for c in cells(tmp_path / "run", capsys)}
    assert abs(test["mlp(hidden=256)", "shuffled-pixels"] - test["mlp(hidden=256)", "labels"]) <= 0.03
    assert test["cnn1d", "labels"] - test["cnn1d", "shuffled-pixels"] >= 0.10
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "## mlp(hidden=256) on mnist1d" in board and "## cnn1d on mnist1d" in board


def test_explicit_regularizers_do_not_stop_memorization(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(
        'track = "random-labels"\nseeds = 1\nexecutor = "serial"\ntrain_examples = 300\n[[models]]\nname = "mlp"\nhidden = 512\n'
        "[[regularizers]]\nweight_decay = 5e-4\ndropout = 0.5\n[[regularizers]]\naugmentation = true\n"
        '[[corruptions]]\nname = "labels"\np = 1.0\n[training]\nepochs = 400\n'
    )
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    found = {c["regularizers"]: c["metrics"] for c in cells(tmp_path / "run", capsys)}
    assert set(found) == {"weight_decay=0.0005+dropout=0.5", "augmentation"}
    assert all(m["train_accuracy"] >= 0.99 and m["fit_rate"] == 1.0 for m in found.values())


def test_augmentation_moves_each_image_within_its_shift():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    moved = translate(x, 1, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape
    for image, original in zip(moved, x, strict=True):
        inner = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if torch.equal(image[:, 1:-1, 1:-1], original[:, 1 + dy : 7 + dy, 1 + dx : 7 + dx])]
        assert len(inner) == 1  # one offset per image, the same in every channel
    signal_1d = torch.rand(4, 1, 1, 40)
    assert translate(signal_1d, 5, torch.Generator().manual_seed(0)).shape == signal_1d.shape  # a 1-D signal moves along its length only


# -- a harness citizen ------------------------------------------------------------------
def test_kill_then_resume_gives_the_leaderboard_of_an_uninterrupted_run(tiny, tmp_path, capsys):
    killed = tmp_path / "killed"
    assert kill_after(tiny / "spec.toml", killed, 1, env={**os.environ, "OMP_NUM_THREADS": "1"}) >= 1
    assert run(tiny / "spec.toml", killed) == 0
    assert "already done" in capsys.readouterr().err
    assert without_timing(cells(killed, capsys)) == without_timing(cells(tiny / "run", capsys))


def test_the_gate_holds_the_track_to_its_baseline(tiny, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(tiny / "run"), "-o", str(baseline)]) == 0
    rows = json.loads(baseline.read_text())["rows"]
    assert all("seconds_to_fit" not in row["metrics"] for row in rows)  # wall-clock time is never gated
    check = ["check", "--baseline", str(baseline), "--config", str(tiny / "spec.toml"), "--out", str(tiny / "run"), "-q"]
    assert main(check) == 0
    assert capsys.readouterr().out.startswith("bench check passed: ")
    data = json.loads(baseline.read_text())
    data["rows"][0]["metrics"]["test_accuracy"] += 0.1  # the true-label row held to a better number than it reaches
    baseline.write_text(json.dumps(data))
    assert main(check) == 1
    assert "test_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("p = [0.0, 0.5, 1.0]", "p = [0.0, 1.5]"), "spec.corruptions[0].p: must be fractions in [0, 1], got 1.5"),
        (('name = "labels"', 'name = "label"'), "spec.corruptions[0]: unknown corruption 'label'; did you mean 'labels'?"),
        (("[training]", "[[regularizers]]\nweight_decy = 1e-4\n[training]"), "spec.regularizers[0].weight_decy: unknown field; did you mean 'weight_decay'?"),
        (("[training]", "[[regularizers]]\ndropout = 1.5\n[training]"), "spec.regularizers[0].dropout: must be a number in [0, 1), got 1.5"),
        (("seeds = 1", "seeds = 1\nthreshold = 2"), "spec.threshold: must be a number in (0, 1], got 2"),
        (("seeds = 1", "seeds = 1\ntrain_examples = 100000"), "spec.train_examples: 100000 asked for, but digits has 1437 training points"),
        (('name = "mlp"\nhidden = 512', 'name = "mlp"\nhidden = 512\ndropout = 0.1\n[[regularizers]]\ndropout = 0.5'), "sets dropout itself"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, change, message):
    (tmp_path / "spec.toml").write_text(TINY.replace(*change))
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "results.db").exists()  # refused before anything was written


def test_a_model_without_a_dropout_parameter_cannot_take_the_dropout_regularizer(tmp_path, capsys):
    (tmp_path / "plain.py").write_text(
        "from torch import nn\n\ndef make(*, input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n"
    )
    (tmp_path / "spec.toml").write_text(
        TINY.replace('name = "mlp"\nhidden = 512', 'name = "plain.py:make"').replace("[training]", "[[regularizers]]\ndropout = 0.5\n[training]")
    )
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 2
    assert "spec.regularizers[0].dropout: model 'plain.py:make' takes no dropout parameter (dropout or drop_rate)" in capsys.readouterr().err


def test_mnist1d_is_generated_offline_into_the_unit_interval():
    data = DATASETS.create("mnist1d")
    assert data.x_train.shape == (4000, 1, 1, 40) and data.x_test.shape == (1000, 1, 1, 40) and data.num_classes == 10
    for x in (data.x_train, data.x_test):
        assert float(x.min()) >= 0 and float(x.max()) <= 1
