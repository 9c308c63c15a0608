"""Every torchattacks attack by name (``torchattacks:APGD``), and the common ones by short name.

Short names: ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``square``, ``fab``, ``fab-t``,
``cw``, ``deepfool``, ``autoattack`` (standard) and ``autoattack-rand``.

``alpha`` follows eps (``STEP_RULES``): ``2.5 * eps / steps`` for the iterative
sign-gradient attacks (at torchattacks' own eps 8/255 and 10 steps that is its
default 2/255), ``1.25 * eps`` for FFGSM (Wong et al. 2020; its default 10/255
at 8/255). ``APGDT`` and ``FAB`` also take ``n_target_classes``: targets the
``n_target_classes`` most likely other classes (AutoAttack uses 9), fewer when
the model has fewer classes; an explicit ``n_classes`` wins over it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from attacks import ATTACKS
from attacks.adapter import LibraryAttack, StepRule, ThreatModel, number_of_classes, unsupported
from bench.errors import ParamError

LINF, L2, BOTH = ("linf",), ("l2",), ("linf", "l2")
_NORM_NAMES = {"linf": "Linf", "l2": "L2"}

THREAT_MODELS = {
    **{n: ThreatModel(LINF) for n in ("FGSM", "BIM", "RFGSM", "PGD", "EOTPGD", "FFGSM", "TPGD", "MIFGSM", "UPGD", "DIFGSM", "TIFGSM")},
    **{n: ThreatModel(LINF) for n in ("Jitter", "NIFGSM", "PGDRS", "SINIFGSM", "VMIFGSM", "VNIFGSM", "SPSA", "PIFGSM", "PIFGSMPP")},
    **{n: ThreatModel(L2) for n in ("PGDL2", "PGDRSL2")},
    **{n: ThreatModel(BOTH) for n in ("APGD", "APGDT", "Square", "AutoAttack", "VANILA")},
    **{n: ThreatModel(BOTH, "minimum-norm") for n in ("FAB", "GN")},
    **{n: ThreatModel(L2, "minimum-norm") for n in ("CW", "DeepFool")},
    **{n: unsupported("an L1 / elastic-net attack; this harness evaluates Linf and L2 balls") for n in ("EADL1", "EADEN")},
    **{n: unsupported("an L0 (few-pixel) attack; this harness evaluates Linf and L2 balls") for n in ("OnePixel", "SparseFool", "Pixle", "JSMA")},
    "LGV": unsupported("it needs a training data loader to fine-tune surrogate models"),
    "MultiAttack": unsupported("it combines attack objects; list the attacks in the spec instead (they form a cascade)"),
}


_SIGN_GRADIENT = ("PGD", "PGDL2", "EOTPGD", "Jitter", "PGDRS", "PGDRSL2", "TPGD", "UPGD", "BIM", "RFGSM")
_MOMENTUM = ("MIFGSM", "NIFGSM", "SINIFGSM", "VMIFGSM", "VNIFGSM", "DIFGSM", "TIFGSM")
STEP_RULES = {
    **{n: StepRule("alpha", "steps", 2.5) for n in (*_SIGN_GRADIENT, *_MOMENTUM)},
    "FFGSM": StepRule("alpha", None, 1.25),  # random start, then one step of 1.25 eps (Wong et al. 2020)
}
TARGETED = frozenset({"APGDT", "FAB"})  # take n_target_classes


def torchattacks_classes() -> dict[str, type]:
    import torchattacks

    return {n: c for n, c in vars(torchattacks).items() if inspect.isclass(c) and issubclass(c, torchattacks.attack.Attack) and n != "Attack"}


@dataclass(frozen=True, kw_only=True)
class TorchattacksAttack(LibraryAttack):
    library: ClassVar[str] = "torchattacks"
    THREAT_MODELS: ClassVar[dict[str, ThreatModel]] = THREAT_MODELS
    RESERVED: ClassVar[tuple[str, ...]] = ("model", "eps", "max_epsilon", "norm")
    BLACK_BOX: ClassVar[frozenset[str]] = frozenset({"Square", "SPSA", "GN", "VANILA"})
    SINGLE_STEP: ClassVar[frozenset[str]] = frozenset({"FGSM", "FFGSM", "GN", "VANILA"})
    STEP_RULES: ClassVar[dict[str, StepRule]] = STEP_RULES
    FILLED: ClassVar[dict[str, tuple[Any, str]]] = {
        "n_classes": (None, "the model's number of classes (at most n_target_classes + 1 where given)"),
        "seed": (None, "drawn from the job's seeded generator"),
    }

    def __post_init__(self) -> None:
        targets = self.params.get("n_target_classes")
        if targets is not None and (not isinstance(targets, int) or isinstance(targets, bool) or targets < 1):
            raise ParamError("n_target_classes", f"must be an integer >= 1, got {targets!r}")
        super().__post_init__()

    def classes(self) -> dict[str, type]:
        return torchattacks_classes()

    def accepted(self) -> set[str]:
        return super().accepted() | ({"n_target_classes"} if self.name in TARGETED else set())

    def build(self, model: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> Any:
        accepted = self.accepted()
        for name in ("eps", "max_epsilon"):
            if name in accepted:
                kwargs[name] = self.eps
        if "norm" in accepted:
            kwargs["norm"] = _NORM_NAMES[self.norm]
        targets = kwargs.pop("n_target_classes", None)
        if "n_classes" in accepted and "n_classes" not in kwargs:
            classes = number_of_classes(model, x)
            kwargs["n_classes"] = classes if targets is None else min(classes, targets + 1)  # torchattacks targets n_classes - 1 classes
        if "seed" in accepted and kwargs.get("seed") is None:  # AutoAttack's default seeds from the clock
            kwargs["seed"] = int(torch.randint(0, 2**31 - 1, (1,), device="cpu"))  # a host scalar from the job's seeded CPU generator: repeatable
        return self.classes()[self.name](model, **kwargs)

    def generate(self, attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(x, y)


def torchattacks_attack(name: str, *, eps: float, norm: str = "linf", **params: Any) -> TorchattacksAttack:
    """``torchattacks:<Class>`` with the class's own keyword arguments."""
    return TorchattacksAttack(eps=eps, norm=norm, name=name, params=params)


def list_torchattacks(pattern: str) -> list[str]:
    import fnmatch

    return [n for n, t in THREAT_MODELS.items() if t.kind != "unsupported" and n in torchattacks_classes() and fnmatch.fnmatchcase(n, pattern)]


def _short(name: str, **fixed: Any):
    def factory(*, eps: float, norm: str = "linf", **params: Any) -> TorchattacksAttack:
        return TorchattacksAttack(eps=eps, norm=norm, name=name, params={**fixed, **params})

    return factory


ATTACKS.register_prefix("torchattacks", torchattacks_attack, lister=list_torchattacks, description="any torchattacks attack, with its own arguments")
SHORT_NAMES = {  # name: (torchattacks class, fixed arguments, norms, description)
    "apgd-ce": ("APGD", {"loss": "ce", "steps": 50}, BOTH, "auto-PGD on the cross-entropy (Croce & Hein 2020)"),
    "apgd-dlr": ("APGD", {"loss": "dlr", "steps": 50}, BOTH, "auto-PGD on the DLR loss (Croce & Hein 2020)"),
    "apgd-t": ("APGDT", {"steps": 50}, BOTH, "targeted auto-PGD on the DLR loss, over the top classes"),
    "fab": ("FAB", {"multi_targeted": True}, BOTH, "FAB, minimum-norm (Croce & Hein 2020), targeting every other class, projected onto the ball"),
    "fab-t": ("FAB", {"multi_targeted": True, "n_target_classes": 9}, BOTH, "FAB-T: FAB targeting the 9 most likely other classes, as AutoAttack does"),
    "cw": ("CW", {}, L2, "Carlini-Wagner L2, minimum-norm, projected onto the ball"),
    "deepfool": ("DeepFool", {}, L2, "DeepFool, minimum-norm L2, projected onto the ball"),
    "square": ("Square", {"n_queries": 1000}, BOTH, "Square attack, score-based black-box (Andriushchenko et al. 2020)"),
    "autoattack": ("AutoAttack", {"version": "standard"}, BOTH, "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square) from torchattacks"),
    "autoattack-rand": ("AutoAttack", {"version": "rand"}, BOTH, "AutoAttack for randomized defenses (APGD-CE and APGD-DLR with EOT)"),
}
for short, (cls, fixed, norms, description) in SHORT_NAMES.items():
    ATTACKS.register(short, _short(cls, **fixed), norms=norms, description=description)
