"""One search: a strategy, a budget and the results so far, replayed into the next proposals.

The track's ``plan`` is called again and again with the stored results; a
``Search`` turns them into the architectures still to evaluate. It asks the
strategy, maps each proposal to the space's canonical key (isomorphic
architectures share one) and tells the strategy every value in the order it
asked. The budget counts distinct evaluations: a proposal whose key was
evaluated (or is being evaluated) by this search is told the known value and
costs nothing; a proposal that is no architecture of the space (``canonical``
gives None) is told the floor value and costs nothing either. A strategy that
makes ``MAX_FREE`` free proposals in a row has nothing new to propose: the
search ends there, short of its budget, and says so.

Everything is a pure function of the strategy's seed and the results: the
same results replay into the same proposals, so a killed search resumes where
it stopped (the stored evaluations are replayed, the next ones proposed) and
two runs of a spec give the same searches. A ``Search`` kept between calls of
``plan`` only saves the replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.tracks.nas.strategies import Arch, Strategy

MAX_FREE = 1000  # free proposals in a row after which a strategy is taken to have nothing new to propose
MISSING, FAILED = object(), object()  # what ``result`` answers for an evaluation not stored yet, and for a failed one
RUNNING, DONE, EXHAUSTED, BLOCKED = "running", "done", "exhausted", "blocked"


@dataclass(frozen=True)
class Proposal:
    """One architecture to evaluate: its 1-based step among the search's distinct evaluations, and the asks made so far."""

    step: int
    arch: Arch
    key: str
    asks: int
    strategy_seconds: float  # the strategy's own time (asks and tells) up to this proposal


class Search:
    """Replays results into a strategy and proposes what to evaluate next, within ``budget`` distinct evaluations."""

    def __init__(self, strategy: Strategy, canonical: Callable[[Arch], str | None], budget: int, *, floor: float = 0.0) -> None:
        self.strategy, self.canonical, self.budget, self.floor = strategy, canonical, budget, floor
        self.proposals: list[Proposal] = []
        self.values: dict[str, float | None] = {}  # evaluated key -> value (None: infeasible, told as the floor)
        self.proposed: set[str] = set()
        self.waiting: list[tuple[Arch, str | None]] = []  # asked, not told yet, in the order asked
        self.asks = self.free = self.free_in_row = 0
        self.seconds = 0.0
        self.state = RUNNING

    def advance(self, result: Callable[[str], Any]) -> None:
        """Tell what ``result(key)`` knows (a value, None for infeasible, ``MISSING`` or ``FAILED``) and ask until the
        search waits for evaluations, has spent its budget, or its strategy has nothing new to propose."""
        if self.state in (DONE, EXHAUSTED):
            return
        self.state = RUNNING
        while True:
            if not self._tell(result):
                return
            if len(self.proposals) >= self.budget:
                self.state = DONE
                return
            if not self._ask():
                self.state = EXHAUSTED
                return

    def _tell(self, result: Callable[[str], Any]) -> bool:
        """Tell the waiting asks in order while their values are known; False when one waits for (or lost) its evaluation."""
        while self.waiting:
            arch, key = self.waiting[0]
            if key is None:
                value = None
            elif key in self.values:
                value = self.values[key]
            else:
                found = result(key)
                if found is MISSING:
                    return False
                if found is FAILED:
                    self.state = BLOCKED
                    return False
                value = self.values[key] = found
            started = time.perf_counter()
            self.strategy.tell(arch, self.floor if value is None else float(value))
            self.seconds += time.perf_counter() - started
            self.waiting.pop(0)
        return True

    def _ask(self) -> bool:
        """One batch of asks (the strategy's ``batch``, or the rest of the budget); False when it has nothing new to propose."""
        room = self.budget - len(self.proposals)
        for _ in range(room if self.strategy.batch is None else self.strategy.batch):
            if len(self.proposals) >= self.budget:
                break
            started = time.perf_counter()
            arch = tuple(int(i) for i in self.strategy.ask())
            self.seconds += time.perf_counter() - started
            self.asks += 1
            key = self.canonical(arch)
            self.waiting.append((arch, key))
            if key is None or key in self.proposed:
                self.free += 1
                self.free_in_row += 1
                if self.free_in_row >= MAX_FREE:
                    return False
                continue
            self.free_in_row = 0
            self.proposed.add(key)
            self.proposals.append(Proposal(len(self.proposals) + 1, arch, key, self.asks, self.seconds))
        return True

    @property
    def evaluated(self) -> int:
        return len(self.values)
