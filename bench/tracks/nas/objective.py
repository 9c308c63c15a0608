"""What a search maximizes: validation accuracy (the default), robust accuracy, or a weighted sum; parameters and latency as constraints.

An objective is a spec value: ``"accuracy"``, ``"robust"``, or a table
``{accuracy = 0.5, robust = 0.5, max_params = 20000, max_latency_ms = 2.0}``
(weights of the measures summed; constraints optional). Searches see its
value on the validation split; the leaderboard reports the test split's value
for the architecture a search picks, and nowhere else. An architecture over a
constraint is infeasible: its evaluation counts against the budget (the
constraint is known only once it is measured, as a latency is), its value is
None, told to the strategy as the floor (0), and it is never picked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import UserError

WEIGHTS = {"accuracy": "val_accuracy", "robust": "robust_val_accuracy"}  # measure -> its validation result
CONSTRAINTS = {"max_params": ("params", "params"), "max_latency_ms": ("latency_ms", "latency")}  # field -> (result, measure)


@dataclass(frozen=True)
class Objective:
    weights: tuple[tuple[str, float], ...] = (("accuracy", 1.0),)
    max_params: float | None = None
    max_latency_ms: float | None = None

    @property
    def label(self) -> str:
        names = {"accuracy": "accuracy", "robust": "robust accuracy"}
        single = len(self.weights) == 1 and self.weights[0][1] == 1.0
        text = names[self.weights[0][0]] if single else " + ".join(f"{w:g} {names[m]}" for m, w in self.weights)
        if self.max_params is not None:
            text += f", params <= {self.max_params:g}"
        if self.max_latency_ms is not None:
            text += f", latency <= {self.max_latency_ms:g} ms"
        return text

    @property
    def needs(self) -> set[str]:
        """The measures a space must have for this objective."""
        return {m for m, _ in self.weights} | {CONSTRAINTS[f][1] for f in CONSTRAINTS if getattr(self, f) is not None}

    def feasible(self, results: Mapping[str, Any]) -> bool:
        for field, (result, _) in CONSTRAINTS.items():
            bound = getattr(self, field)
            if bound is not None and (results.get(result) is None or results[result] > bound):
                return False
        return True

    def value(self, results: Mapping[str, Any], split: str = "val") -> float | None:
        """The objective on ``split`` (val | test); None when infeasible or a result it weighs is missing."""
        if not self.feasible(results):
            return None
        total = 0.0
        for measure, weight in self.weights:
            found = results.get(WEIGHTS[measure].replace("val", split))
            if found is None:
                return None
            total += weight * float(found)
        return total


def parse_objective(raw: Any, path: str) -> Objective:
    """An objective from its spec value (a name or a table); errors name ``path``."""
    if isinstance(raw, str):
        if raw not in WEIGHTS:
            raise UserError(f"{path}: unknown objective {raw!r}; objectives: {', '.join(WEIGHTS)}, or a table of weights and constraints")
        return Objective(((raw, 1.0),))
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: must be an objective name ({', '.join(WEIGHTS)}) or a table, got {raw!r}")
    weights, bounds = [], {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise UserError(f"{path}.{key}: must be a number, got {value!r}")
        if key in WEIGHTS:
            if value < 0:
                raise UserError(f"{path}.{key}: a weight must be >= 0, got {value}")
            if value > 0:
                weights.append((key, float(value)))
        elif key in CONSTRAINTS:
            if value <= 0:
                raise UserError(f"{path}.{key}: must be > 0, got {value}")
            bounds[key] = float(value)
        else:
            raise UserError(f"{path}.{key}: unknown field; fields: {', '.join([*WEIGHTS, *CONSTRAINTS])}")
    if not weights:
        raise UserError(f"{path}: weighs nothing; give accuracy and/or robust a weight > 0")
    return Objective(tuple(weights), bounds.get("max_params"), bounds.get("max_latency_ms"))
