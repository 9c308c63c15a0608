"""The NAS track's part of a spec: spaces (each with its budgets and objectives), strategies, budgets, objectives.

```toml
track = "nas"
seeds = 5                                   # searches per strategy (seeds 0..4)
budgets = [10, 25, 50, 100, 200]            # distinct evaluations the leaderboard compares at
objectives = ["accuracy"]                   # or "robust", or {accuracy = 0.5, robust = 0.5, max_params = 20000}
strategies = ["random", "reinforce", "evolution", "tpe", "local"]

[[spaces]]
name = "nas-bench-graph"
dataset = "cora"

[[spaces]]
name = "cells"                              # trained live on the header's dataset
budgets = [10, 25, 50]                      # a space's own budgets and objectives replace the top-level ones
objectives = ["accuracy", "robust"]
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fields
from bench.errors import UserError
from bench.fields import ComponentSpec, _param_suffix
from bench.tracks.nas.objective import Objective, parse_objective

DEFAULT_BUDGETS = (10, 25, 50, 100, 200)
OWN = ("budgets", "objectives")  # a space entry's fields that are not the space's parameters
HIDDEN = ("header_dataset",)  # filled in from the spec's header


@dataclass(frozen=True)
class SpaceSpec:
    """A registered search space with its parameters, the budgets its leaderboard reports and the objectives searched."""

    name: str
    params: Mapping[str, Any]
    budgets: tuple[int, ...]
    objectives: tuple[Objective, ...]
    code: str = field(default="", metadata=fields.LOCAL)
    resolved: Mapping[str, Any] = field(default_factory=dict, metadata=fields.LOCAL)  # params with paths made absolute here

    @property
    def label(self) -> str:
        return self.name + _param_suffix({k: v for k, v in self.params.items() if k not in ("dataset", "path")})


@dataclass(frozen=True)
class NASSection:
    spaces: tuple[SpaceSpec, ...]
    strategies: tuple[ComponentSpec, ...]
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    objectives: tuple[Objective, ...] = (Objective(),)


def parse(raw: Mapping[str, Any], base_dir: Path) -> NASSection:
    from bench.catalog import registry

    budgets = _budgets(raw.get("budgets", list(DEFAULT_BUDGETS)), "spec.budgets")
    objectives = _objectives(raw.get("objectives", ["accuracy"]), "spec.objectives")
    strategies = []
    for i, item in enumerate(fields._table_list(raw.get("strategies", ["random"]), "spec.strategies")):
        path = f"spec.strategies[{i}]"
        name = fields._expect(item["name"], str, f"{path}.name", "a strategy name")
        params = {k: v for k, v in item.items() if k != "name"}
        try:  # parameters checked on a space of two binary choices
            registry("strategies").create(name, context={"sizes": (2, 2), "seed": 0}, **params)
        except UserError as error:
            raise fields._component_error(path, error) from None
        strategies.append(ComponentSpec(name, params, fields._code(registry("strategies"), name)))
    fields._unique("spec.strategies", [s.label for s in strategies])
    spaces = []
    for i, item in enumerate(fields._table_list(raw.get("spaces"), "spec.spaces")):
        path = f"spec.spaces[{i}]"
        name = fields._expect(item["name"], str, f"{path}.name", "a search space name")
        params = {k: v for k, v in item.items() if k not in ("name", *OWN)}
        for hidden in HIDDEN:
            if hidden in params:
                raise fields.fail(f"{path}.{hidden}", "is filled in from the spec's header (spec.dataset); remove it")
        resolved = dict(params)
        if isinstance(params.get("path"), str):
            resolved["path"] = str((base_dir / params["path"]).resolve())
        registered = registry("search-spaces")
        try:
            space = registered.create(name, context={"header_dataset": "digits"}, **resolved)
        except UserError as error:
            raise fields._component_error(path, error) from None
        own_objectives = _objectives(item["objectives"], f"{path}.objectives") if "objectives" in item else objectives
        for j, objective in enumerate(own_objectives):
            missing = objective.needs - set(space.measures)
            if missing:
                where = f"{path}.objectives[{j}]" if "objectives" in item else f"spec.objectives[{j}]"
                raise fields.fail(where, f"the {name} space has no {' or '.join(sorted(missing))} results (it has {', '.join(sorted(space.measures))})")
        own_budgets = _budgets(item["budgets"], f"{path}.budgets") if "budgets" in item else budgets
        spaces.append(SpaceSpec(name, params, own_budgets, own_objectives, fields._code(registered, name), resolved))
    labels = [(s.label, s.params.get("dataset"), s.params.get("path")) for s in spaces]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise fields.fail(f"spec.spaces[{i}]", f"repeats the space {spaces[i].label} on the same data")
    return NASSection(tuple(spaces), tuple(strategies), budgets, objectives)


def _budgets(raw: Any, path: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise fields.fail(path, f"must be a non-empty list of evaluation counts, got {raw!r}")
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fields.fail(path, f"must list integers >= 1 (distinct evaluations), got {value!r}")
    return tuple(sorted(set(raw)))


def _objectives(raw: Any, path: str) -> tuple[Objective, ...]:
    items = [raw] if isinstance(raw, str | Mapping) else raw
    if not isinstance(items, list) or not items:
        raise fields.fail(path, f"must be a non-empty list of objectives, got {raw!r}")
    found = tuple(parse_objective(item, f"{path}[{i}]") for i, item in enumerate(items))
    labels = [o.label for o in found]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise fields.fail(f"{path}[{i}]", f"repeats the objective '{label}'")
    return found
