"""Search spaces, registered by name (``bench list search-spaces``): what a strategy searches and how an architecture scores.

A space is categorical: ``dimensions`` lists (name, options) pairs, and an
architecture is one option index per dimension. ``canonical`` maps an
architecture to its key (isomorphic architectures share one; None for a
combination that is no architecture of the space); ``label`` names it for
people. A space is either

* ``tabular``: every architecture's results are known (a lookup table such as
  NAS-Bench-Graph, or a user's CSV): ``lookup(key)`` gives them, ``entries()``
  the whole table; or
* trained live (``tabular = False``, the ``cells`` space): ``architectures()``
  lists every distinct architecture and ``measure(key, seed, spec, cache)``
  trains and scores one; the track builds the exhaustive table from these,
  one job per architecture and training seed.

Results are plain dicts of the space's ``measures``: ``val_accuracy`` and
``test_accuracy`` always, ``robust_val_accuracy`` / ``robust_test_accuracy``
("robust"), ``params`` (a count) and ``latency_ms`` where the space has them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bench.registry import Registry

SEARCH_SPACES: Registry = Registry("search space", entry_points="frontier_bench.search_spaces", import_paths=True)

Arch = tuple[int, ...]
MEASURES = ("accuracy", "robust", "params", "latency")


class SearchSpace:
    """Base class: ``dimensions``, ``canonical``, ``label``, ``size``; then ``lookup``/``entries`` or ``architectures``/``measure``."""

    tabular = True
    measures: frozenset[str] = frozenset({"accuracy"})
    dimensions: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    dataset = ""  # what the architectures are trained on (the leaderboard's dataset column)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(options) for _, options in self.dimensions)

    def canonical(self, arch: Arch) -> str | None:
        raise NotImplementedError

    def label(self, arch: Arch) -> str:
        return " ".join(f"{name}={options[i]}" for (name, options), i in zip(self.dimensions, arch, strict=True))

    def size(self) -> int:
        """The number of distinct architectures (canonical keys)."""
        return len(self.architectures())

    def identity(self) -> Any:
        """What besides its name, parameters and code determines the space's results (a table's contents); for job keys."""
        return None

    # -- tabular spaces ---------------------------------------------------------
    def lookup(self, key: str) -> dict[str, Any]:
        raise NotImplementedError

    def entries(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(key, label, results) of every architecture of the table."""
        raise NotImplementedError

    def architectures(self) -> list[tuple[str, Arch]]:
        """Every distinct architecture: (canonical key, one architecture with that key), in a fixed order; by enumeration
        of the options' product unless the space knows better (a table's rows)."""
        if not hasattr(self, "_distinct"):
            self._distinct = architectures_of(self)
        return self._distinct

    # -- spaces trained live ------------------------------------------------------

    def measure(self, arch: Arch, seed: int, spec: Any, cache: Any) -> dict[str, Any]:
        raise NotImplementedError

    def training_identity(self, spec: Any, cache: Any) -> Any:
        """What else determines a live measurement (data, training settings), for the table jobs' keys."""
        return None


def architectures_of(space: SearchSpace) -> list[tuple[str, Arch]]:
    """Every distinct architecture of a space by enumeration: the first architecture (in index order) of each key."""
    import itertools

    found: dict[str, Arch] = {}
    for arch in itertools.product(*(range(n) for n in space.sizes)):
        key = space.canonical(arch)
        if key is not None and key not in found:
            found[key] = arch
    return list(found.items())


def finite(value: Any) -> float | None:
    """A table's number as a float; None for a missing or non-finite one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def checked_options(values: Any, name: str, allowed: Sequence[Any] | None = None) -> tuple[Any, ...]:
    """A space parameter listing options: a non-empty list of distinct values (of ``allowed`` when given)."""
    from bench.errors import require

    require(isinstance(values, list | tuple) and len(values) > 0, name, f"must be a non-empty list, got {values!r}")
    require(len(set(map(repr, values))) == len(values), name, f"lists an option twice: {values!r}")
    if allowed is not None:
        for value in values:
            require(value in allowed, name, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
    return tuple(values)


SEARCH_SPACES.register(
    "nas-bench-graph",
    "bench.tracks.nas.spaces.nas_bench_graph:NASBenchGraph",
    description="NAS-Bench-Graph (Qin et al. 2022): 26,206 GNN architectures trained on 9 graph datasets, a lookup table (offline)",
)
SEARCH_SPACES.register(
    "cells",
    "bench.tracks.nas.spaces.cells:Cells",
    description="small CNN/MLP cells (depth, width, kernel, activation, skip, pooling) trained live on the run's images; exhaustive table",
)
SEARCH_SPACES.register("table", "bench.tracks.nas.spaces.table:CSVTable", description="your own tabular benchmark: a CSV of architectures and results")
