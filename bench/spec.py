"""Run specs: TOML (plus CLI overrides) turned once, at the edge, into frozen dataclasses.

The harness parses the common header (``HEADER``: track, dataset, seed(s),
device, batch size, training, executor); the track parses the rest, its
section, with the shared field parsers of ``bench.fields``. Every name, eps,
parameter and path is checked before any compute starts; a problem is one
``UserError`` line naming its place in the spec::

    spec.attacks[1].eps: must be > 0, got -0.03
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError, did_you_mean
from bench.fields import AttackSpec, ComponentSpec, DefenseSpec, ModelSpec, ShiftSpec, _expect, _fail, _int, spec_dict

__all__ = [
    "AttackSpec", "ComponentSpec", "DefenseSpec", "ExecutorSpec", "HEADER", "ModelSpec", "RunSpec", "ShiftSpec", "TrainingSpec",
    "build", "merge", "read_toml", "spec_from",
]  # fmt: skip

# the harness's; the rest is the track's
HEADER = ("track", "dataset", "n_examples", "seed", "seeds", "device", "precision", "memory_format", "batch_size", "training", "executor")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bf16")  # bench.accel's
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
EXECUTORS = ("serial", "processes", "ray")


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    optimizer: str = "adam"


@dataclass(frozen=True)
class ExecutorSpec:
    """Where jobs run: ``serial`` (this process), ``processes`` (worker processes here) or ``ray`` (a local cluster, or the one at ``address``)."""

    name: str = "serial"
    address: str | None = None  # ray: 'auto' or HOST:PORT joins a running cluster; None starts a local one
    workers: int | None = None  # ray, processes: tasks in flight (default: the cluster's, or this machine's, CPUs / num_cpus)
    num_cpus: float = 1.0  # ray, processes: CPUs each task asks for (its torch threads: max(1, int(num_cpus)))
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
    precision: str = "float32"  # attacks and training: "bf16" runs them under bf16 autocast (predictions stay float32)
    memory_format: str = "auto"  # convolutional models on CUDA in channels_last ("auto"), or as named

    def __getattr__(self, name: str) -> Any:
        """The section's fields read as the spec's own (``spec.models``)."""
        if name.startswith("_") or name == "section":
            raise AttributeError(name)
        return getattr(self.section, name)

    def to_dict(self) -> dict[str, Any]:
        """Header and section fields side by side (executor, device and memory format left out: they move results, never change them)."""
        header = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("section", "executor", "device", "memory_format")}
        data = {**spec_dict(self.section), **{k: asdict(v) if is_dataclass(v) else v for k, v in header.items()}}
        if data["seeds"] == 1:  # specs that do not replicate keep the text (and hash) they had before seeds existed
            data.pop("seeds")
        if data["precision"] == "float32":  # likewise for specs in float32, the default
            data.pop("precision")
        return data

    def canonical(self) -> str:
        """A stable JSON text of everything that shapes results."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw spec from a TOML file; a missing, unreadable or malformed file is a ``UserError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"spec file '{path}' does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"spec file '{path}' is not UTF-8 text") from None
    except OSError as error:  # permission denied, a folder, a device that fails to read
        raise UserError(f"spec file '{path}' cannot be read: {error.strerror or error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"spec file '{path}' is not valid TOML: {error}") from None


def merge(defaults: Mapping[str, Any], user: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields of ``user`` replace the track's defaults; CLI ``overrides`` (not None) win."""
    merged = {**defaults, **user}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def build(raw: Mapping[str, Any], *, base_dir: Path | None = None) -> RunSpec:
    """Validate a merged raw spec and freeze it: the header here, the rest by its track; ``base_dir`` anchors relative paths."""
    from bench.catalog import registry

    TRACKS = registry("tracks")
    base_dir = base_dir or Path.cwd()
    track = _expect(raw.get("track", "adversarial"), str, "spec.track", "a track name")
    if track not in TRACKS:
        raise _fail("spec.track", str(TRACKS.unknown_error(track)))
    chosen = TRACKS.create(track)
    DATASETS = registry(chosen.datasets)
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
    precision = _choice(raw.get("precision", "float32"), "spec.precision", PRECISIONS)
    memory_format = _choice(raw.get("memory_format", "auto"), "spec.memory_format", MEMORY_FORMATS)
    training = _training(raw.get("training", {}))
    executor = _executor(raw.get("executor", {}))
    section = chosen.parse({k: v for k, v in raw.items() if k not in HEADER}, base_dir=base_dir)
    return RunSpec(
        track, dataset, dataset_params, n_examples, seed, device, batch_size, training, section,
        seeds=seeds, executor=executor, precision=precision, memory_format=memory_format,
    )  # fmt: skip


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(where, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{did_you_mean(str(value), choices)}")
    return value


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


def spec_from(
    *,
    config: Path | None = None,
    track: str | None = None,
    seed: int | None = None,
    n_examples: int | None = None,
    device: str | None = None,
    precision: str | None = None,
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
    overrides: dict[str, Any] = {"track": track_name, "seed": seed, "n_examples": n_examples, "device": device, "precision": precision}
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
    if not 0 < spec.lr < math.inf:
        raise _fail("spec.training.lr", f"must be a finite number > 0, got {spec.lr}")
    _expect(spec.weight_decay, (int, float), "spec.training.weight_decay", "a number")
    if not 0 <= spec.weight_decay < math.inf:
        raise _fail("spec.training.weight_decay", f"must be a finite number >= 0, got {spec.weight_decay}")
    if spec.optimizer not in ("adam", "sgd"):
        raise _fail("spec.training.optimizer", f"must be 'adam' or 'sgd', got {spec.optimizer!r}")
    return spec
