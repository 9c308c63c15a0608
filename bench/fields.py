"""Parsers of the spec fields several tracks share, and the one-line spec error.

A track's ``parse`` calls these for its section; each problem is one
``UserError`` naming its place in the spec::

    spec.attacks[1].eps: must be > 0, got -0.03

Components named in a field are looked up in ``bench.catalog``'s registries
and built once, so a wrong name or parameter fails before any compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from bench.errors import ParamError, UserError

LOCAL = {"local": True}  # field metadata: a machine's own value (an absolute path, a fingerprint), left out of the spec's text


@dataclass(frozen=True)
class ModelSpec:
    """A model as the spec names it, and what this machine resolved it to (``LOCAL`` fields, not in the spec's text)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # as the spec gives it (relative to the spec's folder): a moved project keeps its spec
    train: bool = True  # train with the spec's recipe (False: use the checkpoint as it is)
    checkpoint_path: str | None = field(default=None, metadata=LOCAL)  # the checkpoint's absolute path here
    target: str = field(default="", metadata=LOCAL)  # the factory reference here ("": ``name``), e.g. /abs/mymodel.py:make
    code: str = field(default="", metadata=LOCAL)  # fingerprint of the factory's source (``bench.fingerprint``)
    checkpoint_sha256: str | None = field(default=None, metadata=LOCAL)  # the checkpoint's contents

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)

    @property
    def factory(self) -> str:
        """The name to build it from in this process."""
        return self.target or self.name

    @property
    def identity(self) -> list[Any]:
        """What determines the model's weights and outputs, for job keys: name, parameters, checkpoint contents, code."""
        return [self.name, dict(self.params), self.checkpoint_sha256, self.train, self.code]


def spec_models(value: Any) -> list[ModelSpec]:
    """Every ``ModelSpec`` in a section (or any value), in field order."""
    if isinstance(value, ModelSpec):
        return [value]
    if is_dataclass(value) and not isinstance(value, type):
        return [m for f in fields(value) for m in spec_models(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [m for item in value for m in spec_models(item)]
    return []


def fingerprints(spec: Any) -> dict[str, dict[str, str | None]]:
    """Every component the spec's section names, as ``"<dimension>:<label>"`` (``model:small-cnn``, ``defense:jpeg``,
    ``attack:pgd``; the dimension is its field's name in the singular): the fingerprint of its code, and a model's
    checkpoint contents. Run folders store them; a resume compares them (``bench.runner``)."""
    found: dict[str, dict[str, str | None]] = {}
    section = spec.section
    for item in fields(section) if is_dataclass(section) else ():
        values = getattr(section, item.name)
        dimension = item.name[:-3] + "y" if item.name.endswith("ies") else item.name[:-1] if item.name.endswith("s") else item.name
        for value in values if isinstance(values, tuple) else ():
            if isinstance(value, ModelSpec):
                found[f"{dimension}:{value.label}"] = {"code": value.code, "checkpoint": value.checkpoint_sha256}
            elif isinstance(getattr(value, "code", None), str) and hasattr(value, "label"):  # defenses, attacks, a track's own components
                found[f"{dimension}:{value.label}"] = {"code": value.code}
    return found


def spec_dict(value: Any) -> Any:
    """A section (or any value) as plain data, like ``dataclasses.asdict`` but without ``LOCAL`` fields."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: spec_dict(getattr(value, f.name)) for f in fields(value) if not f.metadata.get("local")}
    if isinstance(value, Mapping):
        return {k: spec_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(spec_dict(v) for v in value)
    return value


@dataclass(frozen=True)
class ComponentSpec:
    """A named component with keyword parameters: a defense, an uncertainty estimator, an OOD set."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    code: str = field(default="", metadata=LOCAL)  # fingerprint of its source (``bench.fingerprint``)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)

    @property
    def identity(self) -> list[Any]:
        """What determines its behaviour, for job keys: name, parameters, code."""
        return [self.name, dict(self.params), self.code]


DefenseSpec = ComponentSpec


@dataclass(frozen=True)
class ShiftSpec:
    """A dataset shift at each of its ``levels`` (degrees, fractions of the width, ...)."""

    name: str
    levels: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    eps: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    code: str = field(default="", metadata=LOCAL)  # fingerprint of its source (``bench.fingerprint``)


def _param_suffix(params: Mapping[str, Any]) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def _fail(path: str, message: str) -> UserError:
    return UserError(f"{path}: {message}")


def _expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        raise _fail(path, f"must be {what}, got {value!r}")
    return value


def _int(value: Any, path: str, minimum: int) -> int:
    _expect(value, int, path, "an integer")
    if value < minimum:
        raise _fail(path, f"must be >= {minimum}, got {value}")
    return value


def _table_list(raw: Any, path: str) -> list[Mapping[str, Any]]:
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _fail(path, "must be a non-empty list of tables ([[...]] in TOML)")
    for i, item in enumerate(raw):
        if isinstance(item, str):
            raw[i] = {"name": item}
        elif not isinstance(item, Mapping):
            raise _fail(f"{path}[{i}]", f"must be a table or a name, got {item!r}")
        elif "name" not in item:
            raise _fail(f"{path}[{i}]", "needs a 'name'")
    return [dict(item) for item in raw]


def _component_error(path: str, error: UserError) -> UserError:
    if isinstance(error, ParamError):
        return _fail(f"{path}.{error.field}", error.message)
    return _fail(path, str(error))


def fail(path: str, message: str) -> UserError:
    """The one-line spec error: ``spec.attacks[1].eps: must be > 0, got -0.03``."""
    return _fail(path, message)


def boolean(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    return _expect(raw.get(name, default), bool, f"spec.{name}", "true or false")


def integer(raw: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    return _int(raw.get(name, default), f"spec.{name}", minimum)


def models_field(raw: Any, base_dir: Path) -> tuple[ModelSpec, ...]:
    """``[[models]]``: each a registered model name with parameters, an optional checkpoint (checked now) and ``train``."""
    from bench.catalog import registry

    models = tuple(_model(item, f"spec.models[{i}]", base_dir, registry("models")) for i, item in enumerate(_table_list(raw, "spec.models")))
    _unique("spec.models", [m.label for m in models])
    return models


def components_field(raw: Any, name: str, what: str, kind: str | None = None) -> tuple[ComponentSpec, ...]:
    """An optional list of named components (``[[defenses]]``, ``[[estimators]]``, ...) of a ``bench.catalog`` kind, each built once to check it."""
    from bench.catalog import registry

    specs = _components(raw, f"spec.{name}", what, registry(kind or name))
    _unique(f"spec.{name}", [c.label for c in specs])
    return specs


def attacks_field(raw: Any) -> tuple[AttackSpec, ...]:
    """``[[attacks]]``: each a registered attack with an eps grid and parameters, checked at every eps.

    An entry naming a preset (``autoattack-standard``) becomes one entry per
    member attack, with the entry's eps grid, its parameters (``norm``) passed
    on, and the member's label (``aa-apgd-ce``, ...) as its column.
    """
    from bench.catalog import registry

    return _attacks(_table_list(raw, "spec.attacks"), registry("attacks"))


def shifts_field(raw: Any) -> tuple[ShiftSpec, ...]:
    """``[[shifts]]``: each a registered shift at its ``levels``."""
    from bench.catalog import registry

    shifts = _shifts(raw, registry("shifts"))
    _unique("spec.shifts", [s.name + _param_suffix(s.params) for s in shifts])
    return shifts


def _components(raw: Any, path: str, what: str, registry: Any) -> tuple[ComponentSpec, ...]:
    """An optional list of named components, each built once to check its name and parameters."""
    if raw is None:
        return ()
    specs = []
    for i, item in enumerate(_table_list(raw, path)):
        specs.append(_component(item, f"{path}[{i}]", what, registry))
    return tuple(specs)


def _graded(item: Mapping[str, Any], path: str, grid: str, what: str) -> tuple[str, list[Any], dict[str, Any]]:
    """A component with a grid of values (an attack's ``eps``, a shift's ``levels``): its name, the grid, the other parameters."""
    name = _expect(item["name"], str, f"{path}.name", what)
    if grid not in item:
        raise _fail(path, f"needs '{grid}' (a number or a list of numbers)")
    values = item[grid] if isinstance(item[grid], list) else [item[grid]]
    if not values:
        raise _fail(f"{path}.{grid}", "must not be an empty list")
    for value in values:
        _expect(value, (int, float), f"{path}.{grid}", "a number or a list of numbers")
        if not math.isfinite(value):
            raise _fail(f"{path}.{grid}", f"must be finite numbers, got {value}")
    if len({float(v) for v in values}) != len(values):
        raise _fail(f"{path}.{grid}", f"lists a value twice: {values}")
    params = {k: v for k, v in item.items() if k not in ("name", grid)}
    _finite_numbers(params, path)
    return name, values, params


def _shifts(raw: Any, registry: Any) -> tuple[ShiftSpec, ...]:
    if raw is None:
        return ()
    specs = []
    for i, item in enumerate(_table_list(raw, "spec.shifts")):
        path = f"spec.shifts[{i}]"
        name, levels, params = _graded(item, path, "levels", "a shift name")
        for level in levels:
            try:
                registry.create(name, level=level, **params)
            except ParamError as error:
                raise _fail(f"{path}.{'levels' if error.field == 'level' else error.field}", error.message) from None
            except UserError as error:
                raise _component_error(path, error) from None
        specs.append(ShiftSpec(name, tuple(float(level) for level in levels), params))
    return tuple(specs)


def _unique(path: str, labels: Sequence[str]) -> None:
    seen = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise _fail(f"{path}[{i}]", f"'{label}' is listed twice")
        seen.add(label)


def _model(item: Mapping[str, Any], path: str, base_dir: Path, registry: Any) -> ModelSpec:
    from bench.fingerprint import file_fingerprint
    from bench.registry import locate
    from models.checkpoint import read_state_dict

    name = _expect(item["name"], str, f"{path}.name", "a model name")
    checkpoint = item.get("checkpoint")
    params = {k: v for k, v in item.items() if k not in ("name", "checkpoint", "train")}
    _finite_numbers(params, path)
    try:
        target = locate(name, base_dir) if name not in registry else name
        registry.check(target, params, label=name)
        code = _code(registry, target)
    except UserError as error:
        raise _component_error(path, error) from None
    checkpoint_path = sha256 = None
    if checkpoint is not None:
        _expect(checkpoint, str, f"{path}.checkpoint", "a file path")
        checkpoint_path = str((base_dir / checkpoint).resolve())
        try:
            state = read_state_dict(checkpoint_path)  # missing, unsafe or corrupt: fail before any compute
        except UserError as error:
            raise _fail(f"{path}.checkpoint", str(error)) from None
        broken = [key for key, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
        if broken:
            raise _fail(f"{path}.checkpoint", f"'{checkpoint}' holds inf or nan (in {broken[0]}{' and more' if len(broken) > 1 else ''})")
        sha256 = file_fingerprint(checkpoint_path)
    train = _expect(item.get("train", checkpoint is None), bool, f"{path}.train", "true or false")
    return ModelSpec(name, params, checkpoint, train, checkpoint_path, "" if target == name else target, code, sha256)


def _finite_numbers(params: Mapping[str, Any], path: str) -> None:
    """No parameter may be inf or nan: a component would build, then give nonsense numbers."""
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(f"{path}.{key}", f"must be a finite number, got {value}")


def _component(item: Mapping[str, Any], path: str, what: str, registry: Any) -> ComponentSpec:
    """A named component, built once to check its name and parameters (cheap: a value until a track uses it)."""
    name = _expect(item["name"], str, f"{path}.name", what)
    params = {k: v for k, v in item.items() if k != "name"}
    _finite_numbers(params, path)
    try:
        registry.create(name, **params)
    except UserError as error:
        raise _component_error(path, error) from None
    return ComponentSpec(name, params, _code(registry, name))


def _code(registry: Any, name: str) -> str:
    """The fingerprint of the code behind a registered (or imported) component."""
    from bench.fingerprint import code_fingerprint

    return code_fingerprint(registry.factory(name))


def _attacks(items: list[Mapping[str, Any]], registry: Any) -> tuple[AttackSpec, ...]:
    from attacks.presets import expand

    specs, sources = [], []  # sources: the entry each spec comes from (a preset gives several)
    for i, item in enumerate(items):
        path = f"spec.attacks[{i}]"
        name, grid, params = _graded(item, path, "eps", "an attack name")
        try:
            members = expand(name, params)
        except UserError as error:
            raise _component_error(path, error) from None
        for member, member_params, label in members or [(name, params, "")]:
            eps_values = []
            for eps in grid:
                try:
                    attack = registry.create(member, eps=eps, **member_params)
                except UserError as error:
                    raise _component_error(path, error) from None
                supported = registry.meta(member).get("norms")
                norm = getattr(attack, "norm", None)
                if supported and norm not in supported:
                    raise _fail(f"{path}.norm", f"attack '{member}' does not support norm '{norm}'; it supports: {', '.join(supported)}")
                eps_values.append(float(eps))
            specs.append(AttackSpec(member, tuple(eps_values), member_params, label, _code(registry, member)))
            sources.append(i)
    return tuple(_labelled(specs, sources))


def _labelled(specs: list[AttackSpec], sources: list[int]) -> list[AttackSpec]:
    """Column labels: the attack's name, plus the parameters that tell apart two uses of one name (a preset's members keep theirs)."""
    out = []
    for spec in specs:
        if spec.label:
            out.append(spec)
            continue
        twins = [s for s in specs if not s.label and s.name == spec.name and s.params.get("norm") == spec.params.get("norm")]
        label = spec.name
        if len(twins) > 1:  # (twins that differ only in norm sit in different tables and keep the plain name)
            differing = {k: v for k, v in spec.params.items() if any(t.params.get(k) != v for t in twins)}
            label += _param_suffix(differing) or _param_suffix(spec.params)
        out.append(replace(spec, label=label))
    labels = [(s.label, s.params.get("norm")) for s in out]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise _fail(f"spec.attacks[{sources[i]}]", f"repeats attack '{label[0]}' with the same parameters; merge their eps lists")
    return out
