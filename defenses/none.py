"""The undefended baseline: the model as standard training leaves it."""

from __future__ import annotations

from dataclasses import dataclass

from defenses import DEFENSES
from defenses.base import Defense


@DEFENSES.register("none", description="no defense: the model as standard training leaves it")
@dataclass(frozen=True, kw_only=True)
class NoDefense(Defense):
    pass
