"""A user's own model from a folder of their own: loaded by path, fingerprinted, refused when it changed, checked before compute."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.store import Store

MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.body(x)


def make(num_classes: int = 10):
    return Net(num_classes)
"""

SPEC = """
n_examples = 60
checks = false
[training]
epochs = 3
[[models]]
name = "{name}"
{extra}
[[attacks]]
name = "fgsm"
eps = [0.1]
"""


def project(folder: Path, name: str = "mymodel.py:make", extra: str = "", model: str = MODEL, file: str = "mymodel.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(model)
    (folder / "spec.toml").write_text(SPEC.format(name=name, extra=extra))
    return folder / "spec.toml"


def run(spec: Path, out: Path, *extra: str) -> int:
    return main(["run", "--config", str(spec), "--out", str(out), "-q", *extra])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def refused_then_forced(spec: Path, out: Path, capsys, message: str) -> list:
    """Resume after an edit: refused with ``message``; then ``--force``: the folder's records once the forced run is complete."""
    capsys.readouterr()
    assert run(spec, out) == 2
    assert message in error_line(capsys)
    assert run(spec, out, "--force") == 0
    with Store(out / "results.db", create=False) as store:
        return store.records()


def clean_accuracy(out: Path) -> float:
    with Store(out / "results.db", create=False) as store:
        return next(r.clean_accuracy for r in store.records() if r.status == "ok")


@pytest.mark.parametrize(("name", "file"), [("mymodel.py:make", "mymodel.py"), ("mymodel:make", "mymodel.py"), ("models:make", "models.py")])
def test_a_model_file_next_to_the_spec_runs_from_any_folder_without_pythonpath(tmp_path, monkeypatch, capsys, name, file):
    """`file.py:make` and `module:make` are found next to the spec; a file named like our `models` package cannot shadow it."""
    spec = project(tmp_path / "proj", name=name, file=file)
    monkeypatch.chdir(tmp_path)  # elsewhere: the spec's folder is not the working folder, nor on sys.path
    assert run(spec, tmp_path / "out") == 0
    assert clean_accuracy(tmp_path / "out") > 0.5
    assert main(["list", "models", "small-cnn"]) == 0  # our own models package still works in this process


def test_editing_the_model_refuses_a_resume_then_force_reruns_it(tmp_path, capsys):
    spec = project(tmp_path)
    out = tmp_path / "run"
    assert run(spec, out) == 0
    before = clean_accuracy(out)
    (tmp_path / "mymodel.py").write_text(MODEL.replace("return self.body(x)", "return self.body(x * 0)"))  # a broken edit
    records = refused_then_forced(spec, out, capsys, "another version of model 'mymodel.py:make': its code changed")
    assert len(records) == 1  # the old model's job was dropped: one version of the model in the folder
    assert clean_accuracy(out) < before - 0.3


def test_new_checkpoint_contents_are_refused_never_mixed_and_a_moved_project_resumes(tmp_path, capsys, trained_cnn):
    from models.checkpoint import save_checkpoint

    folder = tmp_path / "proj"
    folder.mkdir()
    save_checkpoint(trained_cnn, folder / "w.safetensors")
    (folder / "spec.toml").write_text(SPEC.format(name="small-cnn", extra='checkpoint = "w.safetensors"'))
    assert run(folder / "spec.toml", folder / "run") == 0

    moved = tmp_path / "elsewhere" / "proj2"
    shutil.copytree(folder, moved)
    capsys.readouterr()
    assert run(moved / "spec.toml", moved / "run") == 0  # paths are relative to the spec, checkpoints compared by content
    assert "1 jobs: 0 ran, 1 already done" in capsys.readouterr().err

    other = copy.deepcopy(trained_cnn)  # new weights under the same file name
    other.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in trained_cnn.state_dict().items()})
    save_checkpoint(other, moved / "w.safetensors")
    assert run(moved / "spec.toml", moved / "run") == 2
    assert "its checkpoint's contents changed" in error_line(capsys)


@pytest.mark.parametrize("out", [None, "ci-run"])
def test_bench_check_measures_the_edited_model_and_fails(tmp_path, capsys, monkeypatch, out):
    """In its default folder (keyed by the code) or in a reused --out (the old model's jobs dropped), the check measures the edit."""
    monkeypatch.chdir(tmp_path)
    spec = project(tmp_path)
    assert run(spec, tmp_path / "base") == 0
    assert main(["baseline", str(tmp_path / "base"), "-o", str(tmp_path / "baseline.json")]) == 0
    check = ["check", "--config", str(spec), "--baseline", str(tmp_path / "baseline.json"), "-q", *(["--out", out] if out else [])]
    assert main(check) == 0
    capsys.readouterr()
    (tmp_path / "mymodel.py").write_text(MODEL.replace("return self.body(x)", "return self.body(x * 0)"))
    assert main(check) == 1
    assert "1 jobs ran, 0 reused" in capsys.readouterr().err


BAD_MODELS = """
import torch
from torch import nn


def fifteen(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 15))


class _Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).squeeze(1)


def flat(num_classes=10):
    return _Flat()


def raises(num_classes=10):
    raise ValueError("boom")


def number(num_classes=10):
    return 3


def mnist_sized(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))


class _Nan(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


def nan(num_classes=10):
    return _Nan(num_classes)
"""


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("bad.py:fifteen", "", r"spec\.models\[0\] \(bad\.py:fifteen\): returns shape \(8, 15\) on a batch of 8; digits has 10 classes"),
        ("bad.py:flat", "", r"returns shape \(8,\) on a batch of 8"),
        ("bad.py:raises", "", r"spec\.models\[0\] \(bad\.py:raises\): building it failed: ValueError: boom"),
        ("bad.py:number", "", r"built a int, not a torch\.nn\.Module"),
        ("bad.py:mnist_sized", "", r"fails on a batch of digits images of shape \(8, 1, 8, 8\)"),
        ("bad.py:nan", "", r"returns non-finite logits \(inf or nan\) on clean digits images"),
        ("bad.py:fiften", "", r"^error: spec\.models\[0\]: 'bad\.py' has no attribute 'fiften'; did you mean 'fifteen'\?$"),
        ("bad.py:fifteen", "widht = 3", r"model 'bad\.py:fifteen': unknown parameter 'widht'"),
        ("missing.py:make", "", r"spec\.models\[0\]: 'missing\.py:make': no file 'missing\.py'"),
        ("small-cnn", "width = 0", r"spec\.models\[0\]\.width \(small-cnn\(width=0\)\): must be an integer >= 1, got 0"),
        ("small-cnn", "dropout = 2.0", r"spec\.models\[0\]\.dropout \(small-cnn\(dropout=2\.0\)\): must be in \[0, 1\), got 2\.0"),
        ("small-cnn", "dropout = nan", r"spec\.models\[0\]\.dropout: must be a finite number, got nan"),
    ],
)
def test_bad_models_are_refused_in_one_line_before_any_compute(tmp_path, capsys, name, extra, message):
    spec = project(tmp_path, name=name, extra=extra, model=BAD_MODELS, file="bad.py")
    assert run(spec, tmp_path / "out") == 2
    import re

    assert re.search(message, error_line(capsys))
    assert not (tmp_path / "out").exists()  # nothing written


def test_bad_checkpoints_and_sizes_are_refused_in_one_line(tmp_path, capsys, trained_cnn):
    from models.checkpoint import save_checkpoint

    nan = copy.deepcopy(trained_cnn)
    nan.load_state_dict({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in trained_cnn.state_dict().items()})
    save_checkpoint(nan, tmp_path / "nan.safetensors")
    wrong = dict(trained_cnn.state_dict())
    wrong[next(k for k in wrong if k.endswith("weight"))] = torch.zeros(3, 3)
    torch.save(wrong, tmp_path / "wrong.pt")
    cases = [
        ('checkpoint = "nan.safetensors"\ntrain = false', r"spec\.models\[0\]\.checkpoint: 'nan\.safetensors' holds inf or nan"),
        ('checkpoint = "wrong.pt"\ntrain = false', r"spec\.models\[0\] \(small-cnn\): checkpoint '.*wrong\.pt' does not fit the model: size mismatch"),
    ]
    import re

    for extra, message in cases:
        (tmp_path / "spec.toml").write_text(SPEC.format(name="small-cnn", extra=extra))
        assert run(tmp_path / "spec.toml", tmp_path / "out") == 2
        assert re.search(message, error_line(capsys))
    (tmp_path / "spec.toml").write_text("n_examples = 9223372036854775807\n")
    assert run(tmp_path / "spec.toml", tmp_path / "out") == 2
    assert error_line(capsys) == "error: spec.n_examples: 9223372036854775807 asked for, but digits has 360 test points"


def test_training_that_diverges_stops_in_one_line_and_caches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    spec = project(tmp_path, name="small-cnn")
    spec.write_text(spec.read_text().replace("epochs = 3", "epochs = 1\nlr = 1e30"))
    assert run(spec, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "TrainingDiverged: training small-cnn gave non-finite weights" in err and "lower spec.training.lr" in err
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_non_finite_logits_at_run_time_are_an_invalid_flagged_job(digits):
    """A model that gives nan only on some inputs: the job is invalid with `non-finite-logits`, never 0 % robust."""
    from bench.guard import NonFiniteLogits, predict
    from bench.tracks import Job, Task
    from bench.worker import Cache, execute

    class Brittle(torch.nn.Module):
        def forward(self, x):
            out = x.flatten(1)[:, :10].clone()
            out[0] = float("nan")
            return out

    with pytest.raises(NonFiniteLogits, match="non-finite logits"):
        predict(Brittle(), digits.x_test[:4])

    class Track:
        def run(self, task, cache):
            predict(Brittle(), digits.x_test[:4])

    cache = Cache()
    cache.get(["track", "brittle"], Track)
    spec = type("Spec", (), {"device": "cpu", "seed": 0})()
    result = execute(Task("brittle", Job("a" * 24, 0, {}), spec), cache)
    assert result.status == "invalid" and result.flags == ["non-finite-logits"]


DEFENSE = """
from dataclasses import dataclass

from torch import nn

from defenses.base import Defense


class Shrink(nn.Module):
    def forward(self, x):
        return x * 1.0


@dataclass(frozen=True, kw_only=True)
class Squash(Defense):
    def wrap(self, model):
        return nn.Sequential(Shrink(), model)
"""


def test_an_edited_defense_is_refused_on_resume_and_force_keeps_one_version(tmp_path, capsys, monkeypatch):
    """Not only models: any component's code is in its jobs' keys, and a folder never mixes two versions of one."""
    spec = project(tmp_path, extra="")
    spec.write_text(spec.read_text() + '\n[[defenses]]\nname = "mydefense:Squash"\n')
    (tmp_path / "mydefense.py").write_text(DEFENSE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    assert run(spec, out) == 0
    with Store(out / "results.db", create=False) as store:
        first = len(store.records())

    (tmp_path / "mydefense.py").write_text(DEFENSE.replace("x * 1.0", "x * 0.0"))
    monkeypatch.delitem(__import__("sys").modules, "mydefense")  # a new process would import the edited file
    records = refused_then_forced(spec, out, capsys, "another version of defense 'mydefense:Squash': its code changed")
    assert len(records) == first  # the old version's jobs are gone once the forced run is complete
    assert all(r.clean_accuracy < 0.5 for r in records if r.status == "ok")  # and what is left measures the edit
