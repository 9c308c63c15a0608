"""GPU throughput (issue 15): our attacks and estimators against hardware bounds and other libraries, rerunnable.

Two settings, the same code:

* ``cuda`` (marked ``gpu``, skipped without CUDA): timm ``resnet18``
  (``pretrained=False``: offline, and trained for nothing) on random 3x32x32
  images, batch 512 (AutoAttack: 256);
* ``cpu``: the zoo's ``small-cnn`` trained briefly on 8x8 digits (the
  session's ``trained_cnn``), so every benchmark also runs inside ``make test``;
  its figures say nothing about a GPU.

Labels are the model's own predictions, so every point starts correctly
classified. Linf eps is 8/255 on cuda and 0.1 on the digits (at 8/255 the
trained digits CNN is robust on every point: PGD would never stop early and
bf16 could not change a number); PGD takes 10 steps of eps / 4 (2/255 at 8/255).
What is compared (ours / reference, goal):

1. ``pgd_bound``: PGD-10 against 10 x (forward + backward to the input); goal 1.25.
   ``ratio`` is PGD with ``early_stop=False`` (like for like: every example takes
   every step); ``ratio_early_stop`` is the default PGD, which drops fooled examples.
2. ``pgd_torchattacks``: the default PGD against torchattacks' ``PGD``; goal 1.0.
3. ``pgd_art``: the default PGD against ART's ``ProjectedGradientDescent``
   (one random start, one full batch, numpy in and out as ART's API takes); goal 0.2.
4. ``mc_dropout``: ``mc-dropout`` with T = 20 against 20 plain forward passes; goal
   1.1 (issue 5). timm's ``drop_rate`` is functional (``F.dropout`` in
   ``forward_head``), which mc-dropout cannot see, so the cuda model gets an
   ``nn.Dropout(0.2)`` before its classifier instead. ``ratio_one_chunk``: the
   same estimator with ``chunk`` large enough for one forward pass.
5. ``cascade_autoattack``: the default cascade (``evaluate``, ``checks=False``)
   against torchattacks' ``AutoAttack`` (standard); goal 0.1 (issues 3 and 10),
   one timing each; ``ratio_with_checks`` with ``checks=True``.
6. ``bf16``: the default PGD under ``accel.autocast("bf16")`` against float32; no
   goal. Robust accuracy of both (predicted in float32, outside autocast), and
   of float32 with another random start (the attack's own noise). On cuda:
   bf16's robust accuracy within 0.5 points of float32's beyond that noise.
7. ``channels_last``: the default PGD with model and input in channels_last
   against contiguous; no goal.

No time is asserted (timing lives in the JSON): under ``make benchmark`` the
references are timed round by round with ours (``interleaved_medians``; on
cuda each call ends in ``torch.cuda.synchronize()``), and the ``benchmark``
fixture times our side for ``--benchmark-json``.

``extra_info`` keys, in every test (a report script reads them):

* ``ratio`` (float): seconds of ours / seconds of the reference; below 1: ours is faster;
* ``goal`` (float or null): the ``ratio`` aimed for (met when ``ratio <= goal``); null: recorded only;
* ``reference`` (str): what ``ratio`` divides by; ``reference_seconds``, ``seconds``: the two medians;
* ``device`` (``"cpu"`` or ``"cuda"``), ``device_name``, ``setting``, ``comparison`` (the names above),
  ``model``, ``batch``, ``trained`` (bool), ``eps``, ``steps``, ``threads``;
* ``ratio_*`` (float): secondary ratios, ours (as named) / the same ``reference``, except
  ``ratio_one_chunk`` and ``ratio_with_checks`` (described above);
* accuracies as ``robust_accuracy*`` (fractions, 0 to 1), counts as ``disagreements_*``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from attacks import ATTACKS
from bench import accel
from bench.spec import ModelSpec
from bench.tracks.adversarial.evaluation import evaluate
from bench.training import build_model
from models import ESTIMATORS
from models.estimators.mc_dropout import dropout_layers
from tests.benchmarks.conftest import forward_backward, interleaved_medians, report

STEPS = 10
PASSES = 20
DROPOUT = 0.2


@dataclass(frozen=True)
class Setting:
    name: str
    device: torch.device
    model: str
    batch: int  # under `make benchmark`
    smoke_batch: int  # with benchmarks disabled (plain `make test`)
    autoattack_batch: int
    smoke_autoattack_batch: int
    trained: bool
    eps: float  # Linf; PGD steps eps / 4 (2/255 at 8/255)


SETTINGS = {
    "cpu": Setting("cpu", torch.device("cpu"), "small-cnn (digits 1x8x8)", 128, 16, 16, 2, True, 0.1),
    "cuda": Setting("cuda", torch.device("cuda"), "timm resnet18 (random 3x32x32)", 512, 512, 256, 64, False, 8 / 255),
}
PARAMS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),  # skipped without CUDA (tests/conftest.py)
]


def resnet18(*, dropout: float = 0.0) -> nn.Module:
    """timm's resnet18 for 10 classes, untrained (no download); ``dropout`` > 0: an ``nn.Dropout`` before its classifier."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    if dropout:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model.eval()


def model_and_points(request, setting: Setting, *, dropout: float = 0.0, autoattack: bool = False) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The setting's model in eval mode (its own copy) and points it classifies as labelled (its own predictions)."""
    disabled = request.getfixturevalue("benchmark").disabled
    batches = (setting.smoke_autoattack_batch, setting.autoattack_batch) if autoattack else (setting.smoke_batch, setting.batch)
    n = batches[0] if disabled else batches[1]
    if setting.name == "cpu":
        digits = request.getfixturevalue("digits")
        if dropout:  # untrained: the cost of MC dropout does not depend on the weights
            model = build_model(ModelSpec("small-cnn", {"dropout": dropout}), digits, 0).eval()
        else:
            model = copy.deepcopy(request.getfixturevalue("trained_cnn")).eval()
        x = digits.x_test[:n].clone()
    else:
        model = resnet18(dropout=dropout).to(setting.device)
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(setting.device)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def synced(device: torch.device, function: Callable[[], object]) -> Callable[[], object]:
    """``function`` that returns only once the device is done (on CUDA), so a wall clock around it measures the work."""
    if device.type != "cuda":
        return function

    def run():
        out = function()
        torch.cuda.synchronize(device)
        return out

    return run


def pgd(setting: Setting, **changes):
    return ATTACKS.create("pgd", eps=setting.eps, steps=STEPS, step_size=setting.eps / 4, **changes)


def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Fraction of points the model, in float32, still predicts as labelled; and which."""
    with torch.no_grad():
        robust = model(x_adv.float()).argmax(dim=1) == y
    return robust.float().mean().item(), robust


def record(
    benchmark, setting: Setting, comparison: str, *, ours: float, reference: str, reference_seconds: float, goal: float | None,
    trained: bool | None = None, **figures,
) -> None:  # fmt: skip
    """The keys of the module docstring, into ``extra_info`` (and printed)."""
    device = setting.device
    benchmark.extra_info.update(
        comparison=comparison,
        reference=reference,
        goal=goal,
        setting=setting.name,
        device=device.type,
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        model=setting.model,
        trained=setting.trained if trained is None else trained,
        eps=setting.eps,
        steps=STEPS,
        threads=torch.get_num_threads(),
    )
    numbers = {"ratio": ours / reference_seconds, "seconds": ours, "reference_seconds": reference_seconds, **figures}
    goal_text = f"goal <= {goal}" if goal is not None else "no goal"
    report(benchmark, f"{comparison} [{setting.name}] vs {reference} ({goal_text})", numbers)


def warm_up(device: torch.device, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    synced(device, forward_backward(model, x, y, 1))()


@pytest.mark.parametrize("name", PARAMS)
def test_pgd_against_forward_backward_bound(benchmark, rounds, request, name):
    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting)
    ours, every_step = pgd(setting), pgd(setting, early_stop=False)
    functions = {"early_stop": lambda: ours(model, x, y), "no_early_stop": lambda: every_step(model, x, y), "bound": forward_backward(model, x, y, STEPS)}
    medians = interleaved_medians({key: synced(setting.device, f) for key, f in functions.items()}, rounds)
    benchmark.pedantic(synced(setting.device, functions["no_early_stop"]), rounds=rounds, iterations=1)
    benchmark.extra_info["batch"] = len(x)
    record(
        benchmark, setting, "pgd_bound", ours=medians["no_early_stop"], reference=f"{STEPS} x (forward + backward to the input)",
        reference_seconds=medians["bound"], goal=1.25, ratio_early_stop=medians["early_stop"] / medians["bound"],
        robust_accuracy=robust_accuracy(model, ours(model, x, y), y)[0],
    )  # fmt: skip


@pytest.mark.parametrize("name", PARAMS)
def test_pgd_against_torchattacks(benchmark, rounds, request, name):
    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting)
    ours, every_step = pgd(setting), pgd(setting, early_stop=False)
    theirs = torchattacks.PGD(model, eps=setting.eps, alpha=setting.eps / 4, steps=STEPS, random_start=True)
    functions = {"ours": lambda: ours(model, x, y), "no_early_stop": lambda: every_step(model, x, y), "torchattacks": lambda: theirs(x, y)}
    medians = interleaved_medians({key: synced(setting.device, f) for key, f in functions.items()}, rounds)
    benchmark.pedantic(synced(setting.device, functions["ours"]), rounds=rounds, iterations=1)
    benchmark.extra_info["batch"] = len(x)
    record(
        benchmark, setting, "pgd_torchattacks", ours=medians["ours"], reference="torchattacks.PGD", reference_seconds=medians["torchattacks"],
        goal=1.0, ratio_no_early_stop=medians["no_early_stop"] / medians["torchattacks"],
    )  # fmt: skip


@pytest.mark.parametrize("name", PARAMS)
def test_pgd_against_art(benchmark, rounds, request, name):
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting)
    classifier = PyTorchClassifier(
        model=copy.deepcopy(model), loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0.0, 1.0),
        device_type="gpu" if setting.device.type == "cuda" else "cpu",
    )  # fmt: skip
    theirs = ProjectedGradientDescent(
        classifier, norm=np.inf, eps=setting.eps, eps_step=setting.eps / 4, max_iter=STEPS, num_random_init=1, batch_size=len(x), verbose=False
    )
    ours, every_step = pgd(setting), pgd(setting, early_stop=False)
    functions = {
        "ours": lambda: ours(model, x, y),
        "no_early_stop": lambda: every_step(model, x, y),
        "art": lambda: theirs.generate(x.cpu().numpy(), y=y.cpu().numpy()),  # ART's API: numpy in, numpy out
    }
    medians = interleaved_medians({key: synced(setting.device, f) for key, f in functions.items()}, rounds)
    benchmark.pedantic(synced(setting.device, functions["ours"]), rounds=rounds, iterations=1)
    benchmark.extra_info["batch"] = len(x)
    record(
        benchmark, setting, "pgd_art", ours=medians["ours"], reference="art ProjectedGradientDescent (PyTorchClassifier)",
        reference_seconds=medians["art"], goal=0.2, ratio_no_early_stop=medians["no_early_stop"] / medians["art"],
    )  # fmt: skip


@pytest.mark.parametrize("name", PARAMS)
def test_mc_dropout_against_forward_passes(benchmark, rounds, request, name):
    setting = SETTINGS[name]
    model, x, _ = model_and_points(request, setting, dropout=DROPOUT)
    assert dropout_layers(model), "mc-dropout must see the model's dropout, or its passes are all the same"
    estimator = ESTIMATORS.create("mc-dropout", samples=PASSES)
    one_chunk = dataclasses.replace(estimator, chunk=max(estimator.chunk, len(x) * PASSES * x[0].numel()))

    @torch.no_grad()
    def plain_passes():
        for _ in range(PASSES):
            out = torch.softmax(model(x), dim=1)
        return out

    functions = {"mc_dropout": lambda: estimator.predict([model], x), "one_chunk": lambda: one_chunk.predict([model], x), "t_forward": plain_passes}
    medians = interleaved_medians({key: synced(setting.device, f) for key, f in functions.items()}, rounds)
    predictive = benchmark.pedantic(synced(setting.device, functions["mc_dropout"]), rounds=rounds, iterations=1)
    assert float(predictive.epistemic.max()) > 0  # the passes differ: dropout sampled
    benchmark.extra_info.update(batch=len(x), passes=PASSES, chunk=estimator.chunk, one_chunk=one_chunk.chunk)
    record(
        benchmark, setting, "mc_dropout", ours=medians["mc_dropout"], reference=f"{PASSES} plain forward passes (eval mode)",
        reference_seconds=medians["t_forward"], goal=1.1, trained=False, ratio_one_chunk=medians["one_chunk"] / medians["t_forward"],
    )  # fmt: skip


@pytest.mark.parametrize("name", PARAMS)
def test_default_cascade_against_autoattack(benchmark, request, name):
    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting, autoattack=True)
    warm_up(setting.device, model, x, y)
    autoattack = torchattacks.AutoAttack(model, norm="Linf", eps=setting.eps, version="standard", n_classes=10, seed=0)

    def timed(function):
        start = time.perf_counter()
        value = synced(setting.device, function)()
        return value, time.perf_counter() - start

    x_adv, reference_seconds = timed(lambda: autoattack(x, y))
    seconds: list[float] = []

    def cascade():
        result, took = timed(lambda: evaluate(model, x, y, eps=setting.eps, norm="linf", checks=False))
        seconds.append(took)
        return result

    plain = benchmark.pedantic(cascade, rounds=1, iterations=1)
    checked, checked_seconds = timed(lambda: evaluate(model, x, y, eps=setting.eps, norm="linf", checks=True))
    benchmark.extra_info.update(batch=len(x), checks=False, cascade_seconds=dict(plain.seconds))
    record(
        benchmark, setting, "cascade_autoattack", ours=seconds[-1], reference="torchattacks AutoAttack (standard)", reference_seconds=reference_seconds,
        goal=0.1, ratio_with_checks=checked_seconds / reference_seconds, robust_accuracy=plain.robust_accuracy,
        robust_accuracy_with_checks=checked.robust_accuracy, robust_accuracy_reference=robust_accuracy(model, x_adv, y)[0],
    )  # fmt: skip


@pytest.mark.parametrize("name", PARAMS)
def test_pgd_in_bf16_against_float32(benchmark, rounds, request, name):
    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting)
    attack = pgd(setting)

    def run(precision: str, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            torch.manual_seed(seed)
        with accel.autocast(precision, setting.device):
            return attack(model, x, y)

    medians = interleaved_medians({p: synced(setting.device, lambda p=p: run(p)) for p in ("bf16", "float32")}, rounds)
    benchmark.pedantic(synced(setting.device, lambda: run("bf16")), rounds=rounds, iterations=1)
    x_bf16 = run("bf16", seed=0)
    assert x_bf16.dtype == torch.float32
    f32, robust_f32 = robust_accuracy(model, run("float32", seed=0), y)
    bf16, robust_bf16 = robust_accuracy(model, x_bf16, y)
    reseeded, robust_reseeded = robust_accuracy(model, run("float32", seed=1), y)  # the attack's own noise: another random start
    benchmark.extra_info["batch"] = len(x)
    record(
        benchmark, setting, "bf16", ours=medians["bf16"], reference="the same PGD in float32", reference_seconds=medians["float32"], goal=None,
        robust_accuracy_bf16=bf16, robust_accuracy_float32=f32, robust_accuracy_float32_reseeded=reseeded,
        disagreements_bf16=float((robust_bf16 != robust_f32).sum()), disagreements_reseeded=float((robust_reseeded != robust_f32).sum()),
    )  # fmt: skip
    if setting.device.type == "cuda":  # on the CPU only recorded: tests/bench/test_accel.py holds the accuracy claim there
        assert abs(bf16 - f32) <= 0.005 + abs(reseeded - f32), dict(benchmark.extra_info)


@pytest.mark.parametrize("name", PARAMS)
def test_pgd_channels_last_against_contiguous(benchmark, rounds, request, name):
    setting = SETTINGS[name]
    model, x, y = model_and_points(request, setting)
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    attack = pgd(setting)
    functions = {"channels_last": lambda: attack(nhwc, x_nhwc, y), "contiguous": lambda: attack(model, x, y)}
    medians = interleaved_medians({key: synced(setting.device, f) for key, f in functions.items()}, rounds)
    out = benchmark.pedantic(synced(setting.device, functions["channels_last"]), rounds=rounds, iterations=1)
    assert out.shape == x.shape
    benchmark.extra_info.update(batch=len(x), memory_format="channels_last")
    record(
        benchmark, setting, "channels_last", ours=medians["channels_last"], reference="the same PGD, model and input contiguous (NCHW)",
        reference_seconds=medians["contiguous"], goal=None,
    )  # fmt: skip


def test_the_cuda_models_build_offline_and_show_their_dropout():
    """What the cuda setting builds, checked where there is no GPU: timm's resnet18 offline, its dropout visible to mc-dropout."""
    import timm

    assert not dropout_layers(timm.create_model("resnet18", pretrained=False, num_classes=10, drop_rate=DROPOUT))  # functional: why we add one
    model = resnet18(dropout=DROPOUT)
    assert dropout_layers(model)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
