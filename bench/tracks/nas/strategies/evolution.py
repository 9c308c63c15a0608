"""Regularized (aging) evolution (Real et al. 2019, Algorithm 1).

A population of ``population`` architectures starts uniformly random. Each
cycle samples ``sample`` members uniformly, mutates the best of them (one
dimension set to another option) into a child, evaluates it, adds it to the
population and removes the *oldest* member, whatever its score: the aging
that regularizes the search. A child already evaluated keeps its known
value (the search serves it without a new evaluation) and still ages the
population, as a re-trained architecture would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bench.errors import require
from bench.tracks.nas.strategies import Arch, Strategy, positive


class RegularizedEvolution(Strategy):
    batch = 1

    def __init__(
        self,
        sizes: Sequence[int],
        seed: int,
        *,
        population: int = 20,  # members alive at once (Real et al.: 100 at 20k evaluations; 20 suits budgets of 50-200)
        sample: int = 5,  # tournament size: members compared to pick a parent
    ) -> None:
        super().__init__(sizes, seed)
        self.population_size, self.sample_size = positive(population, "population"), positive(sample, "sample")
        require(sample <= population, "sample", f"must be <= population ({population}), got {sample}")
        self.population: deque[tuple[Arch, float]] = deque()

    def ask(self) -> Arch:
        if len(self.population) < self.population_size:
            return self.sample()
        picked = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        parent = max((self.population[int(i)] for i in sorted(picked)), key=lambda member: member[1])[0]
        return self.mutate(parent)

    def tell(self, arch: Arch, value: float) -> None:
        self.population.append((arch, value))
        if len(self.population) > self.population_size:
            self.population.popleft()
