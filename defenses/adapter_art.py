"""ART's preprocessing defenses by name (``art:JpegCompression``, ``art:FeatureSqueezing``, ...).

Each runs in numpy on the forward pass (channels first, clip values [0, 1]);
none is differentiable here, so the harness attacks them through BPDA.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attacks.bpda import Preprocessing
from bench.errors import ParamError, UserError, did_you_mean
from defenses import DEFENSES
from defenses.base import PreprocessingDefense, require_images

# class: (randomized, fixed arguments)
KNOWN: dict[str, tuple[bool, dict[str, Any]]] = {
    "JpegCompression": (False, {}),
    "FeatureSqueezing": (False, {}),
    "SpatialSmoothing": (False, {}),
    "TotalVarMin": (True, {}),
    "GaussianAugmentation": (True, {"augmentation": False}),
}
_FILLED = ("clip_values", "channels_first", "apply_fit", "apply_predict", "augmentation", "verbose")


def art_preprocessors() -> dict[str, type]:
    import art.defences.preprocessor as preprocessor

    return {n: c for n, c in vars(preprocessor).items() if inspect.isclass(c) and issubclass(c, preprocessor.Preprocessor)}


class ARTModule(Preprocessing):
    def __init__(self, preprocessor: Any) -> None:
        super().__init__()
        self.preprocessor = preprocessor

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.preprocessor(x.detach().cpu().numpy())
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)


@dataclass(frozen=True, kw_only=True)
class ARTPreprocessingDefense(PreprocessingDefense):
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = art_preprocessors()
        if self.name not in classes:
            raise UserError(f"art has no preprocessing defense '{self.name}'{did_you_mean(self.name, classes)}")
        if self.name not in KNOWN:
            raise UserError(f"art:{self.name} is not supported as an image preprocessing defense here; supported: {', '.join(KNOWN)}")
        accepted = {p for p in inspect.signature(classes[self.name].__init__).parameters if p != "self"} - set(_FILLED)
        for key in self.params:
            if key not in accepted:
                raise ParamError(key, f"art:{self.name} does not take '{key}'; it takes: {', '.join(sorted(accepted))}")

    @property
    def randomized(self) -> bool:
        return KNOWN[self.name][0]

    def check(self, input_shape: Sequence[int]) -> None:
        require_images(f"art:{self.name}", input_shape)

    def module(self) -> ARTModule:
        cls = art_preprocessors()[self.name]
        accepted = inspect.signature(cls.__init__).parameters
        kwargs: dict[str, Any] = {**KNOWN[self.name][1], **self.params}
        for key, value in (("clip_values", (0.0, 1.0)), ("channels_first", True), ("apply_fit", False), ("apply_predict", True), ("verbose", False)):
            if key in accepted:
                kwargs.setdefault(key, value)
        return ARTModule(cls(**kwargs))


def art_defense(name: str, **params: Any) -> ARTPreprocessingDefense:
    return ARTPreprocessingDefense(name=name, params=params)


def list_art(pattern: str) -> list[str]:
    return [n for n in KNOWN if fnmatch.fnmatchcase(n, pattern)]


DEFENSES.register_prefix("art", art_defense, lister=list_art, description="ART preprocessing defenses (JpegCompression, FeatureSqueezing, ...)")
