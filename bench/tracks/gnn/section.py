"""The GNN track's spec section: its models, attacks and defenses, and what each pairing of them gets.

``GNNSection`` is what ``GNNTrack.parse`` returns. The planning rules live
here too, because they read only the spec's components: which defense applies
to which model (``applies``), which models gradient attacks on the structure
can reach directly (``differentiable``), and which surrogate a transfer
attack runs on (``surrogate_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bench import fields
from bench.errors import UserError
from bench.fields import _param_suffix
from bench.spec import RunSpec
from bench.tracks.gnn.attacks import GRAPH_ATTACKS, GraphAttack
from bench.tracks.gnn.defenses import GRAPH_DEFENSES, GraphDefense
from bench.tracks.gnn.models import GRAPH_MODELS, differentiable_in_edges, graph_free

BUDGETS = [0.01, 0.05, 0.1, 0.25]  # fractions of the edges (Geisler et al. 2021; Mujkanovic et al. 2022)
ADAPTIVE, TRANSFER = "adaptive", "transfer"


@dataclass(frozen=True)
class GraphModel:
    """A graph model of the spec: a registered name (or ``module:factory`` / ``file.py:factory``) with parameters,
    optionally starting from a checkpoint (``train = false``: evaluated as it is)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    train: bool = True
    target: str = field(default="", metadata=fields.LOCAL)  # the resolved reference of a user's factory
    checkpoint_path: str | None = field(default=None, metadata=fields.LOCAL)
    checkpoint_sha256: str | None = field(default=None, metadata=fields.LOCAL)
    code: str = field(default="", metadata=fields.LOCAL)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)

    @property
    def identity(self) -> list[Any]:
        return [self.name, dict(self.params), self.checkpoint_sha256, self.train, self.code]

    def build(self, in_features: int, classes: int, graph_level: bool, extra: Mapping[str, Any] | None = None) -> nn.Module:
        return GRAPH_MODELS.create(
            self.target or self.name, context={"in_features": in_features, "classes": classes, "graph_level": graph_level}, **{**self.params, **(extra or {})}
        )


@dataclass(frozen=True)
class GraphAttackSpec:
    """A registered graph attack at each budget of its grid."""

    name: str
    budgets: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    code: str = field(default="", metadata=fields.LOCAL)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)

    def create(self) -> GraphAttack:
        return GRAPH_ATTACKS.create(self.name, **self.params)


@dataclass(frozen=True)
class GNNSection:
    """The GNN track's part of a spec."""

    models: tuple[GraphModel, ...]
    defenses: tuple[fields.ComponentSpec, ...]
    attacks: tuple[GraphAttackSpec, ...]
    poisoning: bool = False  # retrain on the perturbed graph (the attack still runs on the clean-trained model)
    transfer: bool = True  # defended models also get the perturbation transferred from their undefended surrogate
    surrogate: str = "gcn"  # the surrogate of models not differentiable in their edges (gat, median, ...)


def graph_model(item: Mapping[str, Any], path: str, base_dir: Path) -> GraphModel:
    from bench.catalog import registry

    found = fields._model(item, path, base_dir, registry("graph-models"))
    return GraphModel(found.name, dict(found.params), found.checkpoint, found.train, found.target, found.checkpoint_path, found.checkpoint_sha256, found.code)


def attacks_field(raw: Any) -> tuple[GraphAttackSpec, ...]:
    """``[[attacks]]``: each a registered graph attack with a ``budget`` grid (fractions of edges or points, or eps)."""
    found = []
    for i, item in enumerate(fields._table_list(raw, "spec.attacks")):
        path = f"spec.attacks[{i}]"
        name, grid, params = fields._graded({"budget": BUDGETS, **item}, path, "budget", "a graph attack name")
        try:
            made = GRAPH_ATTACKS.create(name, **params)
        except UserError as error:
            raise fields._component_error(path, error) from None
        for budget in grid:
            if budget < 0 or (made.budget_unit != "eps" and budget > 1):
                raise fields.fail(f"{path}.budget", f"must be {'>= 0' if made.budget_unit == 'eps' else 'fractions in [0, 1]'}, got {budget}")
        found.append(GraphAttackSpec(name, tuple(float(b) for b in grid), params, fields._code(GRAPH_ATTACKS, name)))
    fields._unique("spec.attacks", [a.label for a in found])
    return tuple(found)


def make_defense(spec: fields.ComponentSpec) -> GraphDefense:
    return GRAPH_DEFENSES.create(spec.name, **spec.params)


def probe(model: GraphModel, defense: fields.ComponentSpec | None = None) -> nn.Module | None:
    """A small instance of ``model`` (with ``defense``'s model change) to read what it declares; None: the change does not apply."""
    extra = dict(make_defense(defense).model_params) if defense is not None else {}
    try:
        return model.build(4, 2, False, extra)
    except (UserError, TypeError):
        return None


def applies(model: GraphModel, defense: fields.ComponentSpec) -> bool:
    """A defense applies to a model that reads the graph, takes the defense's model change (if any) and, for a defense
    whose graph carries weights (svd), reads edge weights."""
    if defense.name == "none":
        return True
    built = probe(model, defense)
    if built is None or graph_free(built):
        return False
    return differentiable_in_edges(built) or not make_defense(defense).needs_edge_weights


def is_graph_free(model: GraphModel, built: nn.Module | None = None) -> bool:
    return graph_free(built if built is not None else probe(model))


def differentiable(model: GraphModel, defense: fields.ComponentSpec) -> bool:
    built = probe(model, defense)
    return built is not None and differentiable_in_edges(built) and make_defense(defense).differentiable


def surrogate_of(model: GraphModel, spec: RunSpec) -> GraphModel:
    """The undefended model itself when it is differentiable in its edges, else the section's surrogate (a GCN)."""
    if differentiable(model, fields.ComponentSpec("none")):
        return model
    from bench.catalog import registry

    return GraphModel(spec.surrogate, code=fields._code(registry("graph-models"), spec.surrogate))
