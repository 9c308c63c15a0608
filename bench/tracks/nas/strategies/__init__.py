"""Search strategies, registered by name (``bench list strategies``): each proposes architectures from the results so far.

A strategy works on a categorical space: an architecture is a tuple of
option indices, one per dimension of the space (``sizes[i]`` options in
dimension ``i``). It is asked for architectures (``ask``) and told what each
scored (``tell``, in the order they were asked; higher is better). The search
around it (``bench.tracks.nas.search``) keeps the budget: a repeated
architecture is told its known value without a new evaluation.

``batch`` says how many asks a strategy makes before it needs their values:
1 for a sequential strategy, the controller's batch for REINFORCE, ``None``
when its proposals never depend on results (random search). Every strategy is
deterministic given its ``seed``: replaying the same results gives the same
proposals, which is how a killed search resumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.errors import require
from bench.registry import Registry

STRATEGIES: Registry = Registry("strategy", entry_points="frontier_bench.strategies", import_paths=True)

Arch = tuple[int, ...]


class Strategy:
    """Base class: ``ask`` and ``tell``; ``sizes`` (options per dimension) and ``seed`` come from the search."""

    batch: int | None = 1

    def __init__(self, sizes: Sequence[int], seed: int) -> None:
        self.sizes = tuple(int(n) for n in sizes)
        self.rng = np.random.default_rng(seed)
        self.candidates: Sequence[Arch] | None = None  # one architecture per distinct key of the space, when the search knows them

    def ask(self) -> Arch:
        raise NotImplementedError

    def tell(self, arch: Arch, value: float) -> None:
        """The value of an architecture it asked for (higher is better); by default forgotten."""

    def restrict(self, candidates: Sequence[Arch]) -> None:
        """Sample among these architectures (one per distinct architecture of the space): a table that does not fill
        the product of its options, or isomorphic cells, are sampled uniformly over what the space holds."""
        self.candidates = candidates

    def sample(self) -> Arch:
        """A uniformly random architecture: of the space's distinct ones when known, else of the product of the options."""
        if self.candidates:
            return tuple(self.candidates[int(self.rng.integers(len(self.candidates)))])
        return tuple(int(self.rng.integers(n)) for n in self.sizes)

    def mutate(self, arch: Arch) -> Arch:
        """``arch`` with one dimension (of those with a choice) set to another of its options, uniformly."""
        free = [i for i, n in enumerate(self.sizes) if n > 1]
        if not free:
            return arch
        i = free[int(self.rng.integers(len(free)))]
        other = int(self.rng.integers(self.sizes[i] - 1))
        changed = list(arch)
        changed[i] = other if other < arch[i] else other + 1
        return tuple(changed)


def positive(value: int, name: str) -> int:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
    return value


STRATEGIES.register("random", "bench.tracks.nas.strategies.random_search:RandomSearch", description="random search (Li & Talwalkar 2019): uniform proposals")
STRATEGIES.register(
    "reinforce",
    "bench.tracks.nas.strategies.reinforce:Reinforce",
    description="REINFORCE with an LSTM controller and a moving-average baseline (Zoph & Le 2017)",
)
STRATEGIES.register("evolution", "bench.tracks.nas.strategies.evolution:RegularizedEvolution", description="regularized (aging) evolution (Real et al. 2019)")
STRATEGIES.register("tpe", "bench.tracks.nas.strategies.tpe:TPE", description="tree-structured Parzen estimator through optuna (Bergstra et al. 2011)")
STRATEGIES.register(
    "local", "bench.tracks.nas.strategies.local_search:LocalSearch", description="local search: best neighbour, random restarts (White et al. 2021)"
)
