"""Local search (White, Nolen, Savani 2021: "local search is state of the art for NAS benchmarks").

From a uniformly random architecture, evaluate its whole neighbourhood (every
architecture one option away), in a random order; move to the best neighbour
if it beats the current architecture, else restart from a new random one. A
neighbour already evaluated is served its known value (no evaluation spent).
"""

from __future__ import annotations

from bench.tracks.nas.strategies import Arch, Strategy


class LocalSearch(Strategy):
    batch = 1

    def __init__(self, sizes, seed: int) -> None:
        super().__init__(sizes, seed)
        self.current: tuple[Arch, float] | None = None
        self.queue: list[Arch] = []
        self.best_neighbour: tuple[Arch, float] | None = None

    def _neighbours(self, arch: Arch) -> list[Arch]:
        found = [arch[:i] + (j,) + arch[i + 1 :] for i, n in enumerate(self.sizes) for j in range(n) if j != arch[i]]
        order = self.rng.permutation(len(found))
        return [found[int(k)] for k in order]

    def ask(self) -> Arch:
        if self.current is None:
            return self.sample()
        return self.queue[0]

    def tell(self, arch: Arch, value: float) -> None:
        if self.current is None:  # a (re)start
            self.current, self.queue, self.best_neighbour = (arch, value), self._neighbours(arch), None
        else:
            self.queue.pop(0)
            if self.best_neighbour is None or value > self.best_neighbour[1]:
                self.best_neighbour = (arch, value)
            if not self.queue:  # the neighbourhood is done: climb to its best, or restart from a local optimum
                climb = self.best_neighbour[1] > self.current[1]
                self.current = self.best_neighbour if climb else None
                self.queue, self.best_neighbour = (self._neighbours(self.current[0]) if climb else []), None
        if self.current is not None and not self.queue:  # a space of one architecture
            self.current = None
