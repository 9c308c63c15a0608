"""Random search: every proposal uniform over the space, independent of results (Li & Talwalkar 2019; Sciuto et al. 2019).

Given the space's architectures (``restrict``), it proposes them in a random
permutation: sampling without replacement, uniform over distinct
architectures, never a repeat. Otherwise it samples the product of the
options, and the search serves repeats without a new evaluation. The baseline
every other strategy is judged against.
"""

from __future__ import annotations

from bench.tracks.nas.strategies import Arch, Strategy


class RandomSearch(Strategy):
    batch = None  # proposals never depend on results: the whole budget is proposed at once

    def __init__(self, sizes, seed: int) -> None:
        super().__init__(sizes, seed)
        self.order: list[int] = []

    def ask(self) -> Arch:
        if not self.candidates:
            return self.sample()
        if not self.order:  # a random permutation of the space's architectures: no repeat until every one was proposed
            self.order = [int(i) for i in self.rng.permutation(len(self.candidates))][::-1]
        return tuple(self.candidates[self.order.pop()])
