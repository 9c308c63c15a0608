"""How sure a number is: binomial intervals and the tests that say whether two accuracies differ.

- ``wilson``: the 95 % Wilson score interval of an accuracy measured on n
  points (it stays inside [0, 1] and keeps its coverage near 0 and 1, where
  the normal approximation's ``±`` does not).
- ``mcnemar``: the exact McNemar test on paired per-example outcomes (two
  models, or two runs, on the same points): only the points where they
  disagree count.
- ``unpaired``: Fisher's exact test on two accuracies from counts, when the
  per-example outcomes are not at hand (e.g. two JSON leaderboards).
- ``holm``: which of many tests stay significant when all are read together
  (Holm's step-down: the chance of any false alarm over the family stays
  below alpha), e.g. every cell of two runs of the same spec.
- ``rank``: rows ranked by accuracy, with the rows each is not significantly
  different from (paired exact McNemar).
- ``mean_interval``: the mean of replicate measurements (one number per
  seed) and its Student-t interval over the replicates.

Pure functions over plain numbers and booleans: no torch here.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials; (0.0, 1.0) when n is 0."""
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"wilson: confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k or fewer (or as extreme the other way) successes in n fair coin flips."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar on paired outcomes: the points only A got right, those only B got right, and the p-value."""

    only_a: int  # a right, b wrong
    only_b: int  # a wrong, b right
    p_value: float

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """The two-sided exact McNemar test of two per-example outcome vectors on the same points (p = 1.0 when they never disagree)."""
    if len(a) != len(b):
        raise ValueError(f"mcnemar: paired outcomes need the same points, got {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    return McNemar(only_a, only_b, binomial_two_sided(min(only_a, only_b), only_a + only_b))


def unpaired(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test that k1 of n1 and k2 of n2 come from the same proportion."""
    from scipy.stats import fisher_exact

    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"unpaired: need 0 <= k <= n, got {k1} of {n1} and {k2} of {n2}")
    if n1 == 0 or n2 == 0:
        return 1.0
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def holm(p_values: Sequence[float], alpha: float = ALPHA, *, family: int | None = None) -> list[bool]:
    """Holm's step-down procedure: which of ``p_values`` are rejected with the family-wise error rate held at ``alpha``.

    ``family``: how many hypotheses were tested (default: the p-values given); the others, not given, count as
    tests that found nothing (p = 1), e.g. the cells of a comparison that did not change. In the input's order."""
    m = len(p_values) if family is None else family
    if m < len(p_values):
        raise ValueError(f"holm: family ({m}) must be at least the number of p-values ({len(p_values)})")
    rejected = [False] * len(p_values)
    for step, i in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - step):
            break  # step-down: this one and every larger p-value stand
        rejected[i] = True
    return rejected


@dataclass(frozen=True)
class Rank:
    """A row's competition rank by accuracy (1, 2, 2, 4, ...) and the rows it is not significantly different from."""

    position: int
    tied: tuple[str, ...]


def rank(vectors: Mapping[str, Sequence[bool]], alpha: float = ALPHA) -> dict[str, Rank]:
    """Rows ranked by accuracy, best first (in the mapping's order where equal), each with the rows it is tied with.

    ``tied``: the other rows that paired exact McNemar does not tell apart at
    ``alpha`` (p >= alpha); rows of equal accuracy are always tied. Every
    vector must hold the same points in the same order.
    """
    lengths = {len(v) for v in vectors.values()}
    if len(lengths) > 1:
        raise ValueError(f"rank: every row needs outcomes on the same points, got lengths {sorted(lengths)}")
    correct = {name: sum(map(bool, v)) for name, v in vectors.items()}
    order = sorted(vectors, key=lambda name: -correct[name])
    out = {}
    for name in order:
        position = 1 + sum(1 for other in order if correct[other] > correct[name])
        tied = tuple(
            other for other in order if other != name and (correct[other] == correct[name] or not mcnemar(vectors[name], vectors[other]).significant(alpha))
        )
        out[name] = Rank(position, tied)
    return out


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the mean of replicates (one value per seed) and its Student-t interval, mean ± t_{(1+c)/2, n-1} · s / √n.

    ``s`` is the sample standard deviation (n - 1 in the denominator). With one
    value there is no spread to measure: low and high are None. Every value must
    be a finite number; identical values give the zero-width interval.
    """
    if not values:
        raise ValueError("mean_interval: need at least one value, got none")
    if not 0 < confidence < 1:
        raise ValueError(f"mean_interval: confidence must be in (0, 1), got {confidence}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) for v in values):
        raise ValueError(f"mean_interval: values must be finite numbers, got {list(values)}")
    floats = [float(v) for v in values]
    mean = statistics.mean(floats)  # exactly rounded: identical values give that value back
    if len(floats) < 2:
        return mean, None, None
    from scipy.stats import t

    half = float(t.ppf((1 + confidence) / 2, len(floats) - 1)) * statistics.stdev(floats) / math.sqrt(len(floats))
    return mean, mean - half, mean + half
