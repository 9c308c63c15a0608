"""Run specs: TOML (plus CLI overrides) turned once, at the edge, into frozen dataclasses.

Every name, eps, parameter and path is checked here, before any compute
starts; a problem is one ``UserError`` line naming its place in the spec::

    spec.attacks[1].eps: must be > 0, got -0.03
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.errors import ParamError, UserError, did_you_mean

HEADER = ("track", "dataset", "n_examples", "seed", "seeds", "device", "batch_size", "training", "executor")  # the harness's; the rest is the track's
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("serial", "ray")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # resolved path
    train: bool = True  # train with the spec's recipe (False: use the checkpoint as it is)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)


@dataclass(frozen=True)
class ComponentSpec:
    """A named component with keyword parameters: a defense, an uncertainty estimator, an OOD set."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name + _param_suffix(self.params)


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


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    optimizer: str = "adam"


@dataclass(frozen=True)
class ExecutorSpec:
    """Where jobs run: ``serial`` (this process) or ``ray`` (a local cluster, or the one at ``address``)."""

    name: str = "serial"
    address: str | None = None  # ray: 'auto' or HOST:PORT joins a running cluster; None starts a local one
    workers: int | None = None  # ray: tasks in flight (default: the cluster's CPUs / num_cpus)
    num_cpus: float = 1.0  # ray: CPUs each task asks for (its torch threads: max(1, int(num_cpus)))
    num_gpus: float = 0.0  # ray: GPUs (or a fraction) each job that may use one asks for
    retries: int = 2  # ray: how often a task whose worker died is tried again


@dataclass(frozen=True)
class RunSpec:
    """The common header, parsed by the harness, and ``section``: the track's own part, parsed by the track."""

    track: str
    dataset: str
    dataset_params: Mapping[str, Any]
    n_examples: int | None
    seed: int
    device: str
    batch_size: int
    training: TrainingSpec
    section: Any  # the track's frozen dataclass
    seeds: int = 1  # replicates (tracks with ``replicates``): seeds seed, seed + 1, ..., the spread shown in the leaderboard
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def __getattr__(self, name: str) -> Any:
        """The section's fields read as the spec's own (``spec.models``)."""
        if name.startswith("_") or name == "section":
            raise AttributeError(name)
        return getattr(self.section, name)

    def to_dict(self) -> dict[str, Any]:
        """Header and section fields side by side (executor and device left out: they move results, never change them)."""
        header = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("section", "executor", "device")}
        data = {**asdict(self.section), **{k: asdict(v) if is_dataclass(v) else v for k, v in header.items()}}
        if data["seeds"] == 1:  # specs that do not replicate keep the text (and hash) they had before seeds existed
            data.pop("seeds")
        return data

    def canonical(self) -> str:
        """A stable JSON text of everything that shapes results."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


def _param_suffix(params: Mapping[str, Any]) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw spec from a TOML file; a missing or malformed file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"spec file '{path}' is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise UserError(f"spec file '{path}' is not UTF-8 text") from None


def merge(defaults: Mapping[str, Any], user: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields of ``user`` replace the track's defaults; CLI ``overrides`` (not None) win."""
    merged = {**defaults, **user}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


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


def build(raw: Mapping[str, Any], *, base_dir: Path | None = None) -> RunSpec:
    """Validate a merged raw spec and freeze it: the header here, the rest by its track; ``base_dir`` anchors relative paths."""
    from bench.catalog import registry

    DATASETS, TRACKS = registry("datasets"), registry("tracks")
    base_dir = base_dir or Path.cwd()
    track = _expect(raw.get("track", "adversarial"), str, "spec.track", "a track name")
    if track not in TRACKS:
        raise _fail("spec.track", str(TRACKS.unknown_error(track)))
    chosen = TRACKS.create(track)
    allowed = (*HEADER, *chosen.fields)
    for key in raw:
        if key in allowed and (key != "seeds" or chosen.replicates):
            continue
        others = [name for name in TRACKS.names() if name != track and _track_reads(TRACKS, name, key)]
        if others:
            raise _fail(f"spec.{key}", f"the {track} track does not use it (tracks that do: {', '.join(others)})")
        raise _fail(f"spec.{key}", f"unknown field{did_you_mean(key, allowed)}; fields: {', '.join(allowed)}")

    dataset_raw = raw.get("dataset", "digits")
    dataset_params: dict[str, Any] = {}
    if isinstance(dataset_raw, Mapping):
        dataset_params = {k: v for k, v in dataset_raw.items() if k != "name"}
        dataset_raw = dataset_raw.get("name")
    dataset = _expect(dataset_raw, str, "spec.dataset", "a dataset name")
    try:
        DATASETS.check(dataset, dataset_params)
    except UserError as error:
        raise _fail("spec.dataset", str(error)) from None
    if "root" in dataset_params and dataset_params["root"] is not None:
        dataset_params["root"] = str((base_dir / str(dataset_params["root"])).resolve())

    n_examples = raw.get("n_examples")
    if n_examples is not None:
        n_examples = _int(n_examples, "spec.n_examples", 1)
    seed = _int(raw.get("seed", 0), "spec.seed", 0)
    seeds = _int(raw.get("seeds", 1), "spec.seeds", 1)
    device = _expect(raw.get("device", "auto"), str, "spec.device", "a device name")
    if device.split(":")[0] not in DEVICES:
        raise _fail("spec.device", f"must be one of {', '.join(DEVICES)} (or cuda:N), got '{device}'")
    batch_size = _int(raw.get("batch_size", 256), "spec.batch_size", 1)
    training = _training(raw.get("training", {}))
    executor = _executor(raw.get("executor", {}))
    section = chosen.parse({k: v for k, v in raw.items() if k not in HEADER}, base_dir=base_dir)
    return RunSpec(track, dataset, dataset_params, n_examples, seed, device, batch_size, training, section, seeds=seeds, executor=executor)


def _track_reads(tracks: Any, name: str, key: str) -> bool:
    try:
        track = tracks.create(name)
    except Exception:  # a broken plugin track must not hide the real error
        return False
    return key in track.fields or (key == "seeds" and track.replicates)


def _executor(raw: Any) -> ExecutorSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    _expect(raw, Mapping, "spec.executor", "a table or an executor name")
    known = [f.name for f in fields(ExecutorSpec)]
    for key in raw:
        if key not in known:
            raise _fail(f"spec.executor.{key}", f"unknown field{did_you_mean(key, known)}; fields: {', '.join(known)}")
    spec = ExecutorSpec(**raw)
    if spec.name not in EXECUTORS:
        raise _fail("spec.executor.name", f"must be one of {', '.join(EXECUTORS)}, got {spec.name!r}{did_you_mean(str(spec.name), EXECUTORS)}")
    if spec.address is not None:
        _expect(spec.address, str, "spec.executor.address", "'auto' or HOST:PORT")
    if spec.workers is not None:
        _int(spec.workers, "spec.executor.workers", 1)
    _int(spec.retries, "spec.executor.retries", 0)
    for name in ("num_cpus", "num_gpus"):
        value = _expect(getattr(spec, name), (int, float), f"spec.executor.{name}", "a number")
        if value < 0 or (name == "num_cpus" and value == 0):
            raise _fail(f"spec.executor.{name}", f"must be {'> 0' if name == 'num_cpus' else '>= 0'}, got {value}")
    return spec


# -- parsers of the fields several tracks share (a track's ``parse`` calls these) --------
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
    """``[[attacks]]``: each a registered attack with an eps grid and parameters, checked at every eps."""
    from bench.catalog import registry

    return _attacks(_table_list(raw, "spec.attacks"), registry("attacks"))


def shifts_field(raw: Any) -> tuple[ShiftSpec, ...]:
    """``[[shifts]]``: each a registered shift at its ``levels``."""
    from bench.catalog import registry

    shifts = _shifts(raw, registry("shifts"))
    _unique("spec.shifts", [s.name + _param_suffix(s.params) for s in shifts])
    return shifts


def spec_from(
    *,
    config: Path | None = None,
    track: str | None = None,
    seed: int | None = None,
    n_examples: int | None = None,
    device: str | None = None,
    data_root: str | None = None,
    download: bool | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> RunSpec:
    """The validated spec from its sources: the track's defaults, then the spec file, then these overrides."""
    from bench.tracks import TRACKS

    user: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config is not None:
        config = Path(config)
        user = read_toml(config)
        base_dir = config.resolve().parent
    track_name = track or user.get("track") or "adversarial"
    if track and user.get("track") not in (None, track):
        raise UserError(f"--track {track} contradicts spec.track = '{user['track']}'")
    if not isinstance(track_name, str) or track_name not in TRACKS:
        raise UserError(str(TRACKS.unknown_error(str(track_name))))
    defaults = TRACKS.create(track_name).default_spec(user)
    overrides: dict[str, Any] = {"track": track_name, "seed": seed, "n_examples": n_examples, "device": device}
    raw = merge(defaults, user, overrides)
    if data_root is not None or download:
        dataset = raw.get("dataset", "digits")
        dataset = dict(dataset) if isinstance(dataset, dict) else {"name": dataset}
        if data_root is not None:
            dataset["root"] = str(Path(data_root).resolve())
        if download:
            dataset["download"] = True
        raw["dataset"] = dataset
    if executor is not None or address is not None:
        table = raw.get("executor", {})
        table = dict(table) if isinstance(table, Mapping) else {"name": table}
        if executor is not None:
            table["name"] = executor
        if address is not None:
            table["address"] = address
            table.setdefault("name", "ray")
        raw["executor"] = table
    return build(raw, base_dir=base_dir)


def _components(raw: Any, path: str, what: str, registry: Any) -> tuple[ComponentSpec, ...]:
    """An optional list of named components, each built once to check its name and parameters."""
    if raw is None:
        return ()
    specs = []
    for i, item in enumerate(_table_list(raw, path)):
        specs.append(_component(item, f"{path}[{i}]", what, registry))
    return tuple(specs)


def _shifts(raw: Any, registry: Any) -> tuple[ShiftSpec, ...]:
    if raw is None:
        return ()
    specs = []
    for i, item in enumerate(_table_list(raw, "spec.shifts")):
        path = f"spec.shifts[{i}]"
        name = _expect(item["name"], str, f"{path}.name", "a shift name")
        if "levels" not in item:
            raise _fail(path, "needs 'levels' (a number or a list of numbers)")
        levels = item["levels"] if isinstance(item["levels"], list) else [item["levels"]]
        if not levels:
            raise _fail(f"{path}.levels", "must not be an empty list")
        params = {k: v for k, v in item.items() if k not in ("name", "levels")}
        for level in levels:
            try:
                registry.create(name, level=level, **params)
            except ParamError as error:
                raise _fail(f"{path}.{'levels' if error.field == 'level' else error.field}", error.message) from None
            except UserError as error:
                raise _component_error(path, error) from None
        if len(set(levels)) != len(levels):
            raise _fail(f"{path}.levels", f"lists a level twice: {levels}")
        specs.append(ShiftSpec(name, tuple(float(level) for level in levels), params))
    return tuple(specs)


def _unique(path: str, labels: Sequence[str]) -> None:
    seen = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise _fail(f"{path}[{i}]", f"'{label}' is listed twice")
        seen.add(label)


def _model(item: Mapping[str, Any], path: str, base_dir: Path, registry: Any) -> ModelSpec:
    from models.checkpoint import read_state_dict

    name = _expect(item["name"], str, f"{path}.name", "a model name")
    checkpoint = item.get("checkpoint")
    params = {k: v for k, v in item.items() if k not in ("name", "checkpoint", "train")}
    try:
        registry.check(name, params)
    except UserError as error:
        raise _component_error(path, error) from None
    if checkpoint is not None:
        _expect(checkpoint, str, f"{path}.checkpoint", "a file path")
        checkpoint = str((base_dir / checkpoint).resolve())
        try:
            read_state_dict(checkpoint)  # missing, unsafe or corrupt: fail before any compute
        except UserError as error:
            raise _fail(f"{path}.checkpoint", str(error)) from None
    train = _expect(item.get("train", checkpoint is None), bool, f"{path}.train", "true or false")
    return ModelSpec(name, params, checkpoint, train)


def _component(item: Mapping[str, Any], path: str, what: str, registry: Any) -> ComponentSpec:
    """A named component, built once to check its name and parameters (cheap: a value until a track uses it)."""
    name = _expect(item["name"], str, f"{path}.name", what)
    params = {k: v for k, v in item.items() if k != "name"}
    try:
        registry.create(name, **params)
    except UserError as error:
        raise _component_error(path, error) from None
    return ComponentSpec(name, params)


def _attacks(items: list[Mapping[str, Any]], registry: Any) -> tuple[AttackSpec, ...]:
    specs = []
    for i, item in enumerate(items):
        path = f"spec.attacks[{i}]"
        name = _expect(item["name"], str, f"{path}.name", "an attack name")
        if "eps" not in item:
            raise _fail(path, "needs 'eps' (a number or a list of numbers)")
        grid = item["eps"] if isinstance(item["eps"], list) else [item["eps"]]
        if not grid:
            raise _fail(f"{path}.eps", "must not be an empty list")
        params = {k: v for k, v in item.items() if k not in ("name", "eps")}
        eps_values = []
        for eps in grid:
            try:
                attack = registry.create(name, eps=eps, **params)
            except UserError as error:
                raise _component_error(path, error) from None
            supported = registry.meta(name).get("norms")
            norm = getattr(attack, "norm", None)
            if supported and norm not in supported:
                raise _fail(f"{path}.norm", f"attack '{name}' does not support norm '{norm}'; it supports: {', '.join(supported)}")
            eps_values.append(float(eps))
        specs.append(AttackSpec(name, tuple(eps_values), params))
    return tuple(_labelled(specs))


def _labelled(specs: list[AttackSpec]) -> list[AttackSpec]:
    """Column labels: the attack's name, plus the parameters that tell apart two uses of one name."""
    out = []
    for spec in specs:
        twins = [s for s in specs if s.name == spec.name and s.params.get("norm") == spec.params.get("norm")]
        label = spec.name
        if len(twins) > 1:  # (twins that differ only in norm sit in different tables and keep the plain name)
            differing = {k: v for k, v in spec.params.items() if any(t.params.get(k) != v for t in twins)}
            label += _param_suffix(differing) or _param_suffix(spec.params)
        out.append(AttackSpec(spec.name, spec.eps, spec.params, label))
    labels = [(s.label, s.params.get("norm")) for s in out]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise _fail(f"spec.attacks[{i}]", f"repeats attack '{label[0]}' with the same parameters; merge their eps lists")
    return out


def _training(raw: Any) -> TrainingSpec:
    _expect(raw, Mapping, "spec.training", "a table")
    fields = TrainingSpec.__dataclass_fields__
    for key in raw:
        if key not in fields:
            raise _fail(f"spec.training.{key}", f"unknown field{did_you_mean(key, fields)}; fields: {', '.join(fields)}")
    spec = TrainingSpec(**raw)
    _int(spec.epochs, "spec.training.epochs", 0)
    _int(spec.batch_size, "spec.training.batch_size", 1)
    _expect(spec.lr, (int, float), "spec.training.lr", "a number")
    if spec.lr <= 0:
        raise _fail("spec.training.lr", f"must be > 0, got {spec.lr}")
    _expect(spec.weight_decay, (int, float), "spec.training.weight_decay", "a number")
    if spec.optimizer not in ("adam", "sgd"):
        raise _fail("spec.training.optimizer", f"must be 'adam' or 'sgd', got {spec.optimizer!r}")
    return spec
