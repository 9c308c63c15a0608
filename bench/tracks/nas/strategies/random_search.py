"""Random search: every proposal uniform over the space, independent of results (Li & Talwalkar 2019; Sciuto et al. 2019).

With the search serving repeated architectures without a new evaluation, it
is sampling without replacement: the baseline every other strategy is judged
against.
"""

from __future__ import annotations

from bench.tracks.nas.strategies import Arch, Strategy


class RandomSearch(Strategy):
    batch = None  # proposals never depend on results: the whole budget is proposed at once

    def ask(self) -> Arch:
        return self.sample()
