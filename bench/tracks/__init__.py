"""The track contract: what a benchmark track declares and does, and the registry of tracks.

A track is one package plus one registration (here, or through the
``frontier_bench.tracks`` entry-point group). The harness (spec header, store,
runner, executors, gate, reports) never special-cases a track; a track never
touches the store. A track:

* parses its own spec section (``fields`` and ``parse``); the harness parses
  only the common header (``bench.spec.HEADER``);
* declares the labels that identify a job (``dimensions``) and a leaderboard
  cell (``cell_dimensions``), and its ``metrics`` with their direction, which
  the gate, ``compare`` and the reports read;
* plans jobs (``plan(spec, finished)``, called until it returns nothing new);
* runs one job as a pure function of a picklable ``Task`` (``run(task, cache)``:
  the cache is the worker's memo, keyed by content hashes, never needed for
  correctness);
* renders cells, tables and figures from stored records.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.registry import Registry

HIGHER, LOWER, EITHER = "higher", "lower", "either"


@dataclass(frozen=True)
class Metric:
    """A metric a track reports: which way is better, and its unit (``fraction`` prints as a percentage)."""

    direction: str = EITHER  # higher | lower | either (a change either way is a regression)
    unit: str = ""
    description: str = ""
    scope: tuple[str, ...] | None = None  # the cell dimensions it depends on, when fewer than all (clean accuracy: model, defense, dataset)


@dataclass(frozen=True)
class Job:
    """One unit of measurement: ``labels`` (the track's dimensions) go into the store, ``payload`` is the track's own."""

    key: str
    position: int
    labels: Mapping[str, Any]
    payload: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()  # keys of jobs that must be stored first; their outcomes come with the task
    gpu: bool = True  # may use a GPU share from the executor spec (False: a CPU-only job)
    local: bool = False  # run in the driver, never shipped to a worker: a job cheaper than its task's trip (a table lookup)


@dataclass(frozen=True)
class Dependency:
    """What a job it depends on stored: status, metrics and per-example outcomes (in example order)."""

    key: str
    status: str
    metrics: Mapping[str, Any]
    outcomes: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Task:
    """Everything one job needs, picklable: the job, the run's spec (its section included) and its dependencies."""

    track: str
    job: Job
    spec: Any  # bench.spec.RunSpec
    dependencies: Mapping[str, Dependency] = field(default_factory=dict)

    def dependency(self, key: str) -> Dependency:
        return self.dependencies[key]


@dataclass
class JobResult:
    """What running a job measured; the driver stores it beside the job's labels."""

    status: str = "ok"  # ok | invalid | failed
    metrics: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)
    outcomes: Sequence[Mapping[str, Any]] = ()  # per example, in example order: the values the track chose
    artifacts: Mapping[str, bytes] = field(default_factory=dict)  # gallery images, curves, ...
    error: str | None = None


class Track(ABC):
    """Base class of tracks: ``default_spec``, ``fields``/``parse``, ``plan``, ``run`` and ``cells`` are the track's; the rest has defaults."""

    name = ""
    plots_title = "Plots"  # the heading of its figures in leaderboard.html
    fields: tuple[str, ...] = ()  # the top-level spec fields of its section (beside bench.spec.HEADER)
    replicates = False  # reads the header's ``seeds`` (replicates); other tracks reject it
    dimensions: tuple[str, ...] = ()  # the labels that identify a job
    cell_dimensions: tuple[str, ...] | None = None  # the labels that identify a leaderboard cell (None: ``dimensions``)
    metrics: Mapping[str, Metric] = {}  # name (or fnmatch pattern) -> declaration
    explanations: Mapping[str, str] = {}  # flag -> one-line explanation (legend, `bench list flags`)
    advisory: frozenset[str] = frozenset()  # flags the gate reports but does not fail on
    datasets = "datasets"  # the catalog kind (``bench.catalog``) whose registry the header's ``dataset`` names

    # -- the spec ---------------------------------------------------------------
    @abstractmethod
    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The raw spec that runs offline on the embedded data; ``user``'s fields replace its fields."""

    @abstractmethod
    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> Any:
        """The track's section (a frozen dataclass) from its raw fields; errors are ``UserError('spec.<path>: ...')``."""

    def validate(self, spec: Any, cache: Any) -> None:
        """Checks that need the data in hand (shapes, classes), run before anything is written; none by default
        (the runner has already built and run every model of the spec on one batch: ``bench.preflight``)."""
        return None

    def run_meta(self, spec: Any, cache: Any) -> dict[str, Any]:
        """Run metadata stored beside the results (e.g. class names for the gallery); none by default."""
        return {}

    # -- jobs -----------------------------------------------------------------------
    @abstractmethod
    def plan(self, spec: Any, finished: Mapping[str, Any]) -> list[Job]:
        """The jobs to run; called again with the stored records (key -> Record) until it returns no new key."""

    @abstractmethod
    def run(self, task: Task, cache: Any) -> JobResult:
        """Run one job; a pure function of ``task`` (``cache``: the worker's memo of data and models)."""

    # -- rendering ----------------------------------------------------------------
    @abstractmethod
    def cells(self, records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """Leaderboard cells (dicts) rendered from stored records; never recomputes a measurement."""

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        """The leaderboard in markdown; by default the track's tables."""
        from reports.leaderboard import tables_markdown

        return tables_markdown(self.tables(cells) or [], title=f"Leaderboard: {self.name} track")

    def derive(self, records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> dict[str, list[str]]:
        """Flags that only several jobs together show (job key -> flags); stored after every run."""
        return {}

    def paired(
        self, cells: Sequence[Mapping[str, Any]], records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]], *, fields: Sequence[str]
    ) -> dict[tuple, Any]:
        """Per cell (keyed by its values of ``fields``), per accuracy metric, the per-example outcomes behind it
        (example index -> correct): ``bench compare`` tests a change on them paired (exact McNemar). None kept: {}."""
        return {}

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The track's own plots (``reports.plots.Plot``), rendered from cells into the HTML page and as PDF; none by default."""
        return []

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Plots saved as ``<name>.png`` in the run folder whenever its reports are written; none by default."""
        return []

    def summary(self, cells: Sequence[Mapping[str, Any]]) -> list[str]:
        """Sentences a reader can quote, shown above the tables of the HTML page; none by default."""
        return []

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        """The leaderboard as ``reports.leaderboard.Table`` values (HTML, LaTeX, markdown); None: the robustness tables."""
        return None

    def gallery(self, records: Sequence[Any], artifacts: Mapping[str, Mapping[str, bytes]]) -> list[Any]:
        """``reports.gallery.GalleryGroup`` blocks from stored artifacts; none by default."""
        return []

    # -- what the harness reads -------------------------------------------------------
    def declares(self, name: str) -> bool:
        return name in self.metrics or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.metrics)

    def metric(self, name: str) -> Metric:
        """The declaration of ``name`` (exact, else the first matching pattern); undeclared: either way is a change."""
        if name in self.metrics:
            return self.metrics[name]
        for pattern, declared in self.metrics.items():
            if fnmatch.fnmatchcase(name, pattern):
                return declared
        return Metric()

    def cell_label(self, cell: Mapping[str, Any]) -> str:
        """A cell named for people: its dimensions' values joined by ' / '."""
        return " / ".join(str(cell.get(d)) for d in (self.cell_dimensions or self.dimensions) if cell.get(d) is not None)

    def cell_key(self, cell: Mapping[str, Any]) -> tuple:
        """What identifies a cell across runs (the gate and ``compare`` match cells by it)."""
        return (cell.get("track"), *(cell.get(d) for d in (self.cell_dimensions or self.dimensions)))


TRACKS: Registry = Registry("track", entry_points="frontier_bench.tracks")
TRACKS.register("adversarial", "bench.tracks.adversarial.track:AdversarialTrack", description="robust accuracy of models x defenses under attacks x eps")
TRACKS.register(
    "uncertainty",
    "bench.tracks.uncertainty.track:UncertaintyTrack",
    description="calibration, shift, OOD and adversarial detection of uncertainty estimators",
)
TRACKS.register(
    "gnn",
    "bench.tracks.gnn.track:GNNTrack",
    description="graph networks under structure, feature and point-cloud attacks; graph defenses attacked adaptively",
)
TRACKS.register(
    "random-labels",
    "bench.tracks.random_labels.track:RandomLabelsTrack",
    description="memorization: fitting random labels, shuffled and random pixels and noise (Zhang et al. 2017)",
)
TRACKS.register(
    "nas",
    "bench.tracks.nas.track:NASTrack",
    description="architecture search strategies at equal budgets over seeds: regret against the exhaustive table, verdict against random search",
)
