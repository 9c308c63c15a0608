"""Orders in a leaderboard: attack columns in the order every row ran them, and letters for tied ranks.

``cascade_order`` merges each row's own run order into one column order; ``tie_letters`` gives a compact
letter display of ranks that a paired test cannot tell apart (ties need not be transitive).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence


def cascade_order(orders: Iterable[Sequence[str]]) -> list[str]:
    """The names of every sequence in one order that keeps each sequence's own order (a topological merge, ties by first appearance).

    Where sequences disagree (a before b in one, b before a in another), the first-seen name goes first.
    """
    first: dict[str, int] = {}
    before: dict[str, set[str]] = {}
    for order in orders:
        for i, name in enumerate(order):
            first.setdefault(name, len(first))
            before.setdefault(name, set()).update(order[:i])
    placed: list[str] = []
    remaining = sorted(first, key=first.__getitem__)
    while remaining:
        done = set(placed)
        name = next((n for n in remaining if before[n] <= done), remaining[0])
        placed.append(name)
        remaining.remove(name)
    return placed


def _cliques(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Every maximal clique of an undirected graph (Bron-Kerbosch with a pivot)."""
    found: list[set[str]] = []

    def expand(clique: set[str], candidates: set[str], excluded: set[str]) -> None:
        if not candidates and not excluded:
            found.append(clique)
            return
        pivot = max(candidates | excluded, key=lambda v: len(graph[v] & candidates))
        for v in sorted(candidates - graph[pivot]):
            expand(clique | {v}, candidates & graph[v], excluded & graph[v])
            candidates = candidates - {v}
            excluded = excluded | {v}

    expand(set(), set(graph), set())
    return found


def tie_groups(tied: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The maximal groups of mutually tied rows (two or more), in rank order; ``tied``: each row's ties (``tied_with``), rows best first."""
    order = list(tied)
    graph: dict[str, set[str]] = {name: set() for name in order}
    for name, others in tied.items():
        for other in others:
            if other in graph and other != name:
                graph[name].add(other)
                graph[other].add(name)
    groups = [sorted(c, key=order.index) for c in _cliques(graph) if len(c) > 1]
    return sorted(groups, key=lambda g: [order.index(n) for n in g])


def _letter(i: int) -> str:
    return string.ascii_lowercase[i % 26] * (1 + i // 26)


def tie_letters(tied: Mapping[str, Iterable[str]], *, first: int = 0) -> dict[str, str]:
    """A compact letter display: rows that share a letter are pairwise tied, and every tied pair shares a letter.

    A letter per group of ``tie_groups``, from the ``first``-th letter on; a
    row tied with none gets no letter. Ties need not be transitive (a ~ b and
    b ~ c, yet a and c differ: a 'a', b 'ab', c 'b'), which a single mark such
    as '=' cannot show.
    """
    letters = dict.fromkeys(tied, "")
    for i, group in enumerate(tie_groups(tied)):
        for name in group:
            letters[name] += _letter(first + i)
    return letters
