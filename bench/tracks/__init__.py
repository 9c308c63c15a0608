"""Benchmark tracks: each plans jobs from a spec, runs one job, and summarizes records.

The runner is generic: it never special-cases a track, and a track never
touches the store. Register a new track as a file here or through the
``frontier_bench.tracks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.registry import Registry

if TYPE_CHECKING:
    from bench.runner import Context
    from bench.spec import RunSpec
    from bench.store import Example, Outcome, Record


@dataclass(frozen=True)
class Job:
    """One unit of measurement: ``columns`` go into the record, ``payload`` is the track's own."""

    key: str
    position: int
    columns: Mapping[str, Any]  # model, defense, attack, dataset, norm, eps (labels)
    payload: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()  # keys of jobs whose outcomes this one reads (planned before it)


@dataclass
class JobResult:
    """What running a job measured; the runner turns it into a stored record."""

    status: str = "ok"  # ok | invalid
    n: int | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    outcomes: Sequence[Outcome] = ()
    examples: Sequence[Example] = ()  # a few inputs kept for the report's gallery (clean beside adversarial)


class Track:
    """Base class of tracks; subclasses fill in the four methods."""

    name = ""
    plots_title = "Plots"  # the heading of its figures in leaderboard.html
    sections: tuple[str, ...] = ()  # the optional spec sections it reads (estimators, shifts, ood, seeds); others are an error

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The raw spec that runs offline on the embedded data; ``user``'s sections replace its sections.

        ``user`` (the user's raw spec) lets a track tie defaults together.
        """
        raise NotImplementedError

    def plan(self, spec: RunSpec) -> list[Job]:
        raise NotImplementedError

    def run(self, job: Job, context: Context) -> JobResult:
        raise NotImplementedError

    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        """Leaderboard cells (dicts) rendered from stored records; never recomputes a measurement."""
        raise NotImplementedError

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        raise NotImplementedError

    def derive(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[str, list[str]]:
        """Flags that only several jobs together show (job key -> flags); stored after every run."""
        return {}

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The track's own plots (``reports.plots.Plot``), rendered from cells into the HTML page and as PDF; none by default."""
        return []

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Plots saved as ``<name>.png`` in the run folder whenever its reports are written; none by default."""
        return []

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        """The leaderboard as ``reports.leaderboard.Table`` values for the HTML and LaTeX pages; None: the robustness tables."""
        return None


TRACKS: Registry = Registry("track", entry_points="frontier_bench.tracks")
TRACKS.register("adversarial", "bench.tracks.adversarial:AdversarialTrack", description="robust accuracy of models x defenses under attacks x eps")
TRACKS.register(
    "uncertainty", "bench.tracks.uncertainty:UncertaintyTrack", description="calibration, shift, OOD and adversarial detection of uncertainty estimators"
)
