"""Every registered attack, defense, estimator and model keeps inputs, outputs and model on the caller's device.

On the CPU a tensor made without ``device=`` lands on the CPU as well, so a hidden host tensor passes unnoticed
there and fails only on CUDA. ``host_tensors_fail()`` makes it fail here: inside ``torch.device("meta")`` a factory
call without a device (``torch.zeros(n)``, ``torch.randn(shape)``, ``torch.tensor(v)``) makes a meta tensor, and
``MetaMeetsReal`` raises wherever one meets a real tensor; ``zeros_like``, ``x.new_zeros`` and ``device=x.device``
pass. (Without it, indexing a CPU tensor with a meta index returns garbage instead of raising.) The check is shown
to fail on purpose in ``test_the_meta_check_catches_a_hidden_host_tensor``.

Exempt from the meta check, each checked instead through the library object the adapter builds:

* ART attacks: ART runs in numpy and makes its tensors with ``torch.tensor(..., device=classifier._device)``,
  so the ``PyTorchClassifier`` must be on the inputs' device.
* the torchattacks classes in ``HOST_BUILT``: each builds a tensor on the host and moves it with
  ``.to(self.device)``, or indexes with it (reason per class), so the attack object's ``device`` must be the model's.
"""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from attacks import ATTACKS
from attacks.adapter import LibraryAttack
from attacks.adapter_art import ARTAttack
from attacks.adapter_torchattacks import TorchattacksAttack
from attacks.base import Attack
from attacks.bpda import BPDAAttack, bpda_mode
from attacks.presets import PRESETS, Preset
from attacks.threat_model import violations
from bench.guard import ModelWatch, preserved_modes
from defenses import DEFENSES
from models import ESTIMATORS, MODELS
from tests.helpers import host_tensors_fail

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]  # gpu: skipped without CUDA (tests/conftest.py)
SHAPE = (3, 8, 8)  # three channels: torchattacks' PI-FGSM and TI-FGSM kernels are RGB only
EPS = {"linf": 0.1, "l2": 1.0}

ADAPTERS: dict[str, type[LibraryAttack]] = {"torchattacks": TorchattacksAttack, "art": ARTAttack}
HOST_BUILT = {  # torchattacks class: where it makes a host tensor (then moved with ``.to(self.device)``, or a host index)
    "APGD": "apgd.py: torch.rand(x.shape).to(self.device) for the random start",
    "APGDT": "apgdt.py: torch.rand(x.shape).to(self.device) for the random start",
    "AutoAttack": "runs APGD, APGDT, FAB and Square (host-built, listed here)",
    "CW": "cw.py: 1e10 * torch.ones(len(images)).to(self.device)",
    "DeepFool": "deepfool.py: torch.tensor([True] * batch_size) as a host mask of the examples left",
    "DIFGSM": "difgsm.py: torch.randint(..., size=(1,)) host scalars for the random resize and padding",
    "FAB": "fab.py: 1e10 * torch.ones([bs]).to(self.device)",
    "PIFGSM": "pifgsm.py: torch.tensor(numpy kernel).to(self.device)",
    "PIFGSMPP": "pifgsmpp.py: torch.tensor(numpy kernel).to(self.device)",
    "SINIFGSM": "sinifgsm.py: torch.arange(self.m) host scale factors",
    "Square": "square.py: torch.rand(shape).to(self.device) for its random squares",
    "SPSA": "spsa.py: logits[torch.arange(n), targets] indexes with a host arange (legal on CUDA)",
    "TIFGSM": "tifgsm.py: torch.randint(..., size=(1,)) host scalars, a numpy kernel moved with .to(self.device)",
}
ART_CANNOT_RUN = {  # attack: (why it cannot run here, whether that holds now); its classifier's device is still checked
    "art:AutoAttack": ("ART's AutoAttack.generate imports the 'multiprocess' package, not installed", importlib.util.find_spec("multiprocess") is None),
    "art:GeoDA": ("ART's GeoDA calls np.mat, removed in NumPy 2", not hasattr(np, "mat")),
    "art:SimBA": ("ART's SimBA reads one-hot labels (the adapter passes class indices) and refuses batch_size > 1", True),
}
PROBABILITIES = {"art:SimBA", "art:VirtualAdversarialMethod"}  # ART refuses these on a model that returns logits

CHEAP = {  # few steps, draws and queries: the device does not depend on them
    "pgd": {"steps": 2},
    "pgd-l2": {"steps": 2},
    "eot": {"steps": 2, "samples": 2, "eval_draws": 2},
    "bpda": {"steps": 2},
    "noise": {"draws": 2},
    "apgd-ce": {"steps": 2},
    "apgd-dlr": {"steps": 2},
    "apgd-t": {"steps": 2, "n_target_classes": 2},
    "fab": {"steps": 2, "n_classes": 3},
    "fab-t": {"steps": 2, "n_target_classes": 2},
    "cw": {"steps": 2},
    "deepfool": {"steps": 2},
    "square": {"n_queries": 10},
    "autoattack": {"n_classes": 3},
    "autoattack-rand": {"n_classes": 3},
    **{f"torchattacks:{n}": {"steps": 2} for n in ("BIM", "RFGSM", "PGD", "EOTPGD", "TPGD", "MIFGSM", "UPGD", "DIFGSM", "Jitter", "NIFGSM", "PGDL2")},
    **{f"torchattacks:{n}": {"steps": 2} for n in ("APGD", "CW", "DeepFool")},
    "torchattacks:TIFGSM": {"steps": 2, "len_kernel": 3},
    "torchattacks:PGDRS": {"steps": 2, "noise_batch_size": 2},
    "torchattacks:PGDRSL2": {"steps": 2, "noise_batch_size": 2},
    "torchattacks:SINIFGSM": {"steps": 2, "m": 2},
    "torchattacks:VMIFGSM": {"steps": 2, "N": 2},
    "torchattacks:VNIFGSM": {"steps": 2, "N": 2},
    "torchattacks:SPSA": {"nb_sample": 4, "max_batch_size": 4},
    "torchattacks:PIFGSM": {"num_iter_set": 2},
    "torchattacks:PIFGSMPP": {"num_iter_set": 2},
    "torchattacks:APGDT": {"steps": 2, "n_classes": 3},
    "torchattacks:FAB": {"steps": 2, "n_classes": 3},
    "torchattacks:Square": {"n_queries": 10},
    "torchattacks:AutoAttack": {"n_classes": 3},
    **{f"art:{n}": {"max_iter": 2} for n in ("ProjectedGradientDescent", "ProjectedGradientDescentNumpy", "ProjectedGradientDescentPyTorch")},
    **{f"art:{n}": {"max_iter": 2} for n in ("MomentumIterativeMethod", "BasicIterativeMethod", "SquareAttack", "NewtonFool", "VirtualAdversarialMethod")},
    **{f"art:{n}": {"max_iter": 2, "nb_random_init": 1} for n in ("AutoProjectedGradientDescent", "AutoConjugateGradient", "RescalingAutoConjugateGradient")},
    "art:HopSkipJump": {"max_iter": 1, "max_eval": 10, "init_eval": 5, "init_size": 5},
    "art:GeoDA": {"max_iter": 300, "sub_dim": 2},  # fewer than about 250 iterations leave GeoDA no query schedule
    "art:CarliniLInfMethod": {"max_iter": 2, "batch_size": 4},
    "art:CarliniL2Method": {"max_iter": 2, "binary_search_steps": 1},
    "art:ElasticNet": {"max_iter": 2, "binary_search_steps": 1},
    "art:DeepFool": {"max_iter": 2, "nb_grads": 3},
    "art:BoundaryAttack": {"max_iter": 2, "num_trial": 2, "sample_size": 2, "init_size": 5, "targeted": False},
    "art:SignOPTAttack": {"max_iter": 2, "num_trial": 2, "query_limit": 50, "k": 5, "targeted": False},
    "art:SimBA": {"max_iter": 5, "batch_size": 1},
    "art:ZooAttack": {"max_iter": 2, "nb_parallel": 4},
}


def tiny_model(seed: int = 0, *, probabilities: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS.create("small-cnn", input_shape=SHAPE, num_classes=10, width=4, hidden=16, dropout=0.25)
    return (nn.Sequential(model, nn.Softmax(dim=1)) if probabilities else model).eval()


def setup(device: str, *, probabilities: bool = False) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny random model on ``device``, 4 inputs and, as labels, its own predictions: every input starts correct."""
    model = tiny_model(probabilities=probabilities).to(device)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def on(device: torch.device, *tensors: torch.Tensor | None) -> bool:
    return all(t.device == device for t in tensors if t is not None)


def model_on(model: nn.Module, device: torch.device) -> bool:
    return on(device, *model.parameters(), *model.buffers())


# -- attacks --------------------------------------------------------------------------
def attack_cases():
    for name in ATTACKS.names():
        for norm in ATTACKS.meta(name).get("norms", ("linf",)):
            yield pytest.param(name, norm, id=f"{name}-{norm}")
    for prefix in ATTACKS.prefixes():
        for name in ATTACKS.list(f"{prefix}:*"):
            for norm in ADAPTERS[prefix].THREAT_MODELS[name.partition(":")[2]].norms:
                yield pytest.param(name, norm, id=f"{name}-{norm}")


def library_attacks(attack: Attack) -> list[LibraryAttack]:
    """The torchattacks and ART attacks that ``attack`` runs, itself included."""
    if isinstance(attack, LibraryAttack):
        return [attack]
    if isinstance(attack, Preset):
        return [inner for _, member in attack.members() for inner in library_attacks(member)]
    if isinstance(attack, BPDAAttack):
        return library_attacks(attack.inner)
    return []


def meta_exemption(attack: Attack) -> str | None:
    """Why ``attack`` cannot run under ``host_tensors_fail()`` (a library that builds on the host), or None."""
    for inner in library_attacks(attack):
        if isinstance(inner, ARTAttack):
            return "ART works in numpy"
        if inner.name in HOST_BUILT:
            return HOST_BUILT[inner.name]
    return None


def check_library_objects(attack: Attack, model: nn.Module, x: torch.Tensor) -> None:
    """The object each adapter builds runs on the inputs' device: ART's classifier, torchattacks' ``device``."""
    for inner in library_attacks(attack):
        with preserved_modes(model):
            built = inner.build(model, x, {**inner.derived_params(), **inner.params})
        if isinstance(inner, ARTAttack):
            assert built.estimator.device == x.device, f"{inner.describe()}: ART classifier on {built.estimator.device}"
        else:
            for obj in [built, *getattr(getattr(built, "_autoattack", None), "attacks", [])]:
                assert obj.device == x.device, f"{inner.describe()}: {type(obj).__name__}.device is {obj.device}"
        assert model_on(model, x.device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "norm"), list(attack_cases()))
def test_attacks_keep_the_callers_device(name, norm, device):
    model, x, y = setup(device, probabilities=name in PROBABILITIES)
    eps = EPS[norm] * (3 if "autoattack" in name.lower() else 1)  # AutoAttack is cheap once nothing survives
    attack = ATTACKS.create(name, eps=eps, norm=norm, **CHEAP.get(name, {}))
    check_library_objects(attack, model, x)
    reason, blocked = ART_CANNOT_RUN.get(name, ("", False))
    if blocked:
        pytest.skip(f"classifier device checked; the attack cannot run: {reason}")
    watch = ModelWatch(model)
    with nullcontext() if meta_exemption(attack) else host_tensors_fail():
        result = attack.run(model, x, y)
        metrics = attack.example_metrics(model, result.x_adv, y)
    x_adv = result.x_adv
    assert (x_adv.device, x_adv.shape, x_adv.dtype) == (x.device, x.shape, x.dtype)
    assert on(x.device, result.loss_start, result.loss_end, result.found, *metrics.values())
    assert violations(x, x_adv, norm=norm, eps=attack.eps) == []
    assert model_on(model, x.device) and watch.changes() == []


@pytest.mark.parametrize("device", DEVICES)
def test_a_preset_cascade_keeps_the_device(device, monkeypatch):
    """Presets' members are torchattacks attacks (exempt above): the cascade's own code, over members of ours, under the check."""
    monkeypatch.setitem(PRESETS, "device-test", (("pgd", {"steps": 2}, "a"), ("noise", {"draws": 2}, "b")))
    model, x, y = setup(device)
    watch = ModelWatch(model)
    with host_tensors_fail():
        x_adv = Preset(eps=0.1, name="device-test")(model, x, y)
    assert (x_adv.device, x_adv.shape, x_adv.dtype) == (x.device, x.shape, x.dtype)
    assert violations(x, x_adv, norm="linf", eps=0.1) == [] and model_on(model, x.device) and watch.changes() == []


def test_every_attack_library_has_its_adapter():
    assert set(ATTACKS.prefixes()) <= set(ADAPTERS)


@dataclass(frozen=True, kw_only=True)
class HostZeros(Attack):
    """Steps along ``torch.zeros(n)`` made on the host: right on the CPU, a device error on CUDA."""

    def perturb(self, model, x, y):
        return (x + torch.zeros(x.shape[0]).view(-1, 1, 1, 1)).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class HostNoise(Attack):
    def perturb(self, model, x, y):
        return (x + self.eps * torch.randn(x.shape).sign()).clamp(0, 1)


@dataclass(frozen=True, kw_only=True)
class HostIndex(Attack):
    """Indexes with a host ``torch.arange``: legal on CUDA too, but a host tensor and a sync."""

    def perturb(self, model, x, y):
        return x[torch.arange(x.shape[0])].clone()


@dataclass(frozen=True, kw_only=True)
class DeviceNoise(Attack):
    """HostNoise written device-aware."""

    def perturb(self, model, x, y):
        return (x + self.eps * torch.randn_like(x).sign() + x.new_zeros(x.shape[0]).view(-1, 1, 1, 1)).clamp(0, 1)


@pytest.mark.parametrize("leaky", [HostZeros, HostNoise, HostIndex])
def test_the_meta_check_catches_a_hidden_host_tensor(leaky):
    model, x, y = setup("cpu")
    assert leaky(eps=0.1)(model, x, y).device == x.device  # unnoticed on the CPU
    with pytest.raises(RuntimeError, match="meta"), host_tensors_fail():
        leaky(eps=0.1)(model, x, y)
    with host_tensors_fail():
        assert DeviceNoise(eps=0.1)(model, x, y).device == x.device


# -- defenses -------------------------------------------------------------------------
CHEAP_DEFENSES = {
    "randomized-smoothing": {"samples": 2, "n0": 4, "n": 8},
    "pgd-at": {"steps": 2},
    "trades": {"steps": 2},
    "art:FeatureSqueezing": {"bit_depth": 2},
}


def defense_cases():
    yield from DEFENSES.names()
    for prefix in DEFENSES.prefixes():
        yield from DEFENSES.list(f"{prefix}:*")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(defense_cases()))
def test_defenses_keep_the_callers_device(name, device):
    model, x, y = setup(device)
    defense = DEFENSES.create(name, **CHEAP_DEFENSES.get(name, {}))
    defense.check(x.shape[1:])
    watch = ModelWatch(model)
    with host_tensors_fail():
        wrapped = defense.wrap(model)
        logits = wrapped(x)
        with bpda_mode(), torch.enable_grad():  # the straight-through path BPDA attacks take
            inputs = x.clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(wrapped(inputs).sum(), inputs)
    assert logits.device == x.device and logits.shape == (len(x), 10) and gradient.device == x.device
    assert model_on(wrapped, x.device) and model_on(model, x.device)
    if defense.trains:
        with preserved_modes(model), host_tensors_fail():
            loss = defense.training_loss(model.train(), x, y)
            loss.backward()
        assert loss.device == x.device and on(x.device, *(p.grad for p in model.parameters()))
        model.zero_grad(set_to_none=True)
    if defense.certifies:
        with host_tensors_fail():
            radius = defense.certify(wrapped, x, y)
            predicted = defense.predict(wrapped, x, draws=4)
        assert radius.device == x.device and radius.shape == (len(x),)
        assert predicted.device == x.device and predicted.shape == (len(x),)
    assert watch.changes() == []


# -- uncertainty estimators -------------------------------------------------------------
CHEAP_ESTIMATORS = {"mc-dropout": {"samples": 2}, "ensemble": {"size": 2}, "temperature": {"max_iter": 5}}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_estimators_keep_the_callers_device(name, device):
    _, x, y = setup(device)
    estimator = ESTIMATORS.create(name, **CHEAP_ESTIMATORS.get(name, {}))
    members = [tiny_model(seed).to(device) for seed in range(estimator.members())]
    for i, member in enumerate(members):
        estimator.check(member, f"member {i}")
    watches = [ModelWatch(member) for member in members]
    with host_tensors_fail():
        fitted = estimator.fit(members, x, y)
        predictive = fitted.predict(members, x, batch_size=3)
        target = fitted.attack_model(members)
        logits = target(x)
    assert on(x.device, predictive.probs, predictive.total, predictive.aleatoric, predictive.epistemic)
    assert predictive.probs.shape == (len(x), 10) and predictive.total.shape == (len(x),)
    assert logits.device == x.device and logits.shape == (len(x), 10)
    assert model_on(target, x.device)
    assert all(model_on(member, x.device) and watch.changes() == [] for member, watch in zip(members, watches, strict=True))


# -- models -----------------------------------------------------------------------------
FAMILY_EXAMPLES = {"timm": ("test_resnet", SHAPE), "torchvision": ("squeezenet1_1", (3, 32, 32))}  # one small architecture per family


def model_cases():
    for name in MODELS.names():
        yield pytest.param(name, SHAPE, id=name)
    for prefix in MODELS.prefixes():
        arch, shape = FAMILY_EXAMPLES[prefix]
        yield pytest.param(f"{prefix}:{arch}", shape, id=f"{prefix}:{arch}")


def test_every_model_family_has_an_example():
    assert set(MODELS.prefixes()) <= set(FAMILY_EXAMPLES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "shape"), list(model_cases()))
def test_models_answer_on_the_inputs_device(name, shape, device):
    torch.manual_seed(0)
    model = MODELS.create(name, input_shape=shape, num_classes=10).eval().to(device)
    x = torch.rand(2, *shape).to(device)
    watch = ModelWatch(model)
    with torch.no_grad(), host_tensors_fail():
        logits = model(x)
    assert (logits.device, logits.shape, logits.dtype) == (x.device, (2, 10), x.dtype)
    assert model_on(model, x.device) and watch.changes() == []
