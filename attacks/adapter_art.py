"""Every ART evasion attack on image classifiers by name (``art:ProjectedGradientDescent``).

The model is wrapped in ART's ``PyTorchClassifier`` (clip values [0, 1], on
the inputs' device); labels are always passed, so ART attacks the true
labels rather than the model's own predictions; ``batch_size`` defaults to the
whole batch (ART's default of 32 is about 1.5x slower here).

``eps_step`` follows eps (``STEP_RULES``): ``2.5 * eps / max_iter`` for the
projected-gradient family, ``2 * eps`` for the auto-PGD family (its first step,
halved as it goes: Croce & Hein 2020), ``eps / 4`` for FastGradientMethod
(used only with ``minimal=True``).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from attacks import ATTACKS
from attacks.adapter import LibraryAttack, StepRule, ThreatModel, number_of_classes, unsupported

LINF, L2, BOTH = ("linf",), ("l2",), ("linf", "l2")
_NORM_VALUES = {"linf": np.inf, "l2": 2}
_NOT_IMAGE_CLASSIFICATION = "not an evasion attack on image classifiers (patches, speech, detection, trees, malware, video or feature-space attacks)"

THREAT_MODELS = {
    **{
        n: ThreatModel(BOTH)
        for n in (
            "FastGradientMethod",
            "ProjectedGradientDescent",
            "ProjectedGradientDescentNumpy",
            "ProjectedGradientDescentPyTorch",
            "MomentumIterativeMethod",
            "AutoProjectedGradientDescent",
            "AutoConjugateGradient",
            "RescalingAutoConjugateGradient",
            "AutoAttack",
            "SquareAttack",
        )
    },
    "BasicIterativeMethod": ThreatModel(LINF),
    **{n: ThreatModel(BOTH, "minimum-norm") for n in ("HopSkipJump", "GeoDA")},
    "CarliniLInfMethod": ThreatModel(LINF, "minimum-norm"),
    **{
        n: ThreatModel(L2, "minimum-norm")
        for n in ("CarliniL2Method", "DeepFool", "NewtonFool", "ElasticNet", "BoundaryAttack", "SimBA", "SignOPTAttack", "ZooAttack")
    },
    "VirtualAdversarialMethod": ThreatModel(L2, "minimum-norm"),
    **{
        n: unsupported("an L0 (few-pixel) attack; this harness evaluates Linf and L2 balls")
        for n in ("CarliniL0Method", "PixelAttack", "ThresholdAttack", "SaliencyMapMethod")
    },
    **{n: unsupported("a universal perturbation for a whole data set, not per example") for n in ("UniversalPerturbation", "TargetedUniversalPerturbation")},
    "SpatialTransformation": unsupported("a rotation/translation attack, not an Lp ball (use eot for transformations)"),
    "Wasserstein": unsupported("a Wasserstein-ball attack; this harness evaluates Linf and L2 balls"),
    "ShadowAttack": unsupported("an unbounded colour-shadow attack"),
    "LowProFool": unsupported("an attack on tabular data"),
    "CompositeAdversarialAttackPyTorch": unsupported("a composite semantic attack (hue, saturation, rotation), not an Lp ball"),
}


STEP_RULES = {
    **{
        n: StepRule("eps_step", "max_iter", 2.5)
        for n in (
            "ProjectedGradientDescent",
            "ProjectedGradientDescentNumpy",
            "ProjectedGradientDescentPyTorch",
            "BasicIterativeMethod",
            "MomentumIterativeMethod",
        )
    },
    **{n: StepRule("eps_step", None, 2.0) for n in ("AutoProjectedGradientDescent", "AutoConjugateGradient", "RescalingAutoConjugateGradient", "AutoAttack")},
    "FastGradientMethod": StepRule("eps_step", None, 0.25),
}


def art_classes() -> dict[str, type]:
    import art.attacks.evasion as evasion
    from art.attacks.attack import EvasionAttack

    return {n: c for n, c in vars(evasion).items() if inspect.isclass(c) and issubclass(c, EvasionAttack)}


@dataclass(frozen=True, kw_only=True)
class ARTAttack(LibraryAttack):
    library: ClassVar[str] = "art"
    THREAT_MODELS: ClassVar[dict[str, ThreatModel]] = THREAT_MODELS
    RESERVED: ClassVar[tuple[str, ...]] = ("estimator", "classifier", "eps", "norm")
    BLACK_BOX: ClassVar[frozenset[str]] = frozenset({"SquareAttack", "HopSkipJump", "GeoDA", "BoundaryAttack", "SimBA", "SignOPTAttack", "ZooAttack"})
    SINGLE_STEP: ClassVar[frozenset[str]] = frozenset({"FastGradientMethod"})
    STEP_RULES: ClassVar[dict[str, StepRule]] = STEP_RULES
    FILLED: ClassVar[dict[str, tuple[Any, str]]] = {"batch_size": (None, "the whole batch"), "verbose": (False, "")}

    def threat_model(self) -> ThreatModel:
        if self.name in THREAT_MODELS:
            return THREAT_MODELS[self.name]
        return unsupported(_NOT_IMAGE_CLASSIFICATION) if self.name in self.classes() else super().threat_model()

    def classes(self) -> dict[str, type]:
        return art_classes()

    def build(self, model: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> Any:
        from art.estimators.classification import PyTorchClassifier

        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():  # ART takes the current CUDA device and moves the model there
            classifier = PyTorchClassifier(
                model=_FloatInputs(model, x.dtype),
                loss=nn.CrossEntropyLoss(),
                input_shape=tuple(x.shape[1:]),
                nb_classes=number_of_classes(model, x),
                clip_values=(0.0, 1.0),
                device_type="gpu" if x.is_cuda else "cpu",
            )
        accepted = self.accepted()
        if "eps" in accepted:
            kwargs["eps"] = self.eps
        if "norm" in accepted:
            kwargs["norm"] = _NORM_VALUES[self.norm]
        if "batch_size" in accepted:
            kwargs.setdefault("batch_size", max(1, x.shape[0]))
        if "verbose" in accepted:
            kwargs.setdefault("verbose", False)
        first = "estimator" if "estimator" in accepted else "classifier"
        return self.classes()[self.name](**{first: classifier}, **kwargs)

    def generate(self, attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = attack.generate(x=x.detach().cpu().numpy(), y=y.cpu().numpy())
        return torch.as_tensor(np.asarray(x_adv))


class _FloatInputs(nn.Module):
    """Some ART attacks (HopSkipJump) feed float64 arrays: cast them to the model's dtype."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype))


def art_attack(name: str, *, eps: float, norm: str = "linf", **params: Any) -> ARTAttack:
    """``art:<Class>`` with the class's own keyword arguments."""
    return ARTAttack(eps=eps, norm=norm, name=name, params=params)


def list_art(pattern: str) -> list[str]:
    import fnmatch

    return [n for n, t in THREAT_MODELS.items() if t.kind != "unsupported" and n in art_classes() and fnmatch.fnmatchcase(n, pattern)]


ATTACKS.register_prefix("art", art_attack, lister=list_art, description="any ART evasion attack on image classifiers, with its own arguments")
