"""Intervals and tests behind every accuracy: Wilson as scipy computes it, exact McNemar by hand, ranks with their ties."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy.stats import binomtest, fisher_exact

from bench.stats import holm, mcnemar, rank, unpaired, wilson
from bench.store import Outcome, Record
from bench.tracks.adversarial.ranking import cell_vectors, rank_cells, vector_key, worst_case_vector


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 60, 200, 360, 1000, 10000])
def test_wilson_is_scipys_wilson_interval(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson(k, n)
        assert math.isclose(low, expected.low, abs_tol=1e-12) and math.isclose(high, expected.high, abs_tol=1e-12), (k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_at_the_edges_and_other_confidences():
    assert wilson(0, 0) == (0.0, 1.0)
    z2 = 1.959963984540054**2
    low, high = wilson(0, 20)
    assert low == 0.0 and math.isclose(high, z2 / (20 + z2))  # not the degenerate [0, 0] of the normal approximation
    low, high = wilson(20, 20)
    assert high == 1.0 and math.isclose(low, 20 / (20 + z2))
    expected = binomtest(7, 50).proportion_ci(confidence_level=0.99, method="wilson")
    assert all(math.isclose(a, b) for a, b in zip(wilson(7, 50, confidence=0.99), (expected.low, expected.high), strict=True))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(5, 4)


def test_mcnemar_matches_the_hand_computed_table():
    # 2x2 table: both right 30, only a right 1, only b right 9, both wrong 10
    a = [True] * 30 + [True] * 1 + [False] * 9 + [False] * 10
    b = [True] * 30 + [False] * 1 + [True] * 9 + [False] * 10
    found = mcnemar(a, b)
    assert (found.only_a, found.only_b) == (1, 9)
    assert found.p_value == 2 * (math.comb(10, 0) + math.comb(10, 1)) / 2**10 == 0.021484375
    assert found.significant() and not found.significant(alpha=0.01)
    assert mcnemar(b, a).p_value == found.p_value and mcnemar(b, a).only_a == 9
    assert mcnemar(a, a).p_value == 1.0  # no discordant pair
    for only_a, only_b in [(0, 6), (3, 4), (12, 30), (50, 70)]:
        x = [True] * only_a + [False] * only_b
        y = [False] * only_a + [True] * only_b
        assert math.isclose(mcnemar(x, y).p_value, binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    with pytest.raises(ValueError, match="same points"):
        mcnemar([True], [True, False])


def test_unpaired_is_fishers_exact_test():
    assert math.isclose(unpaired(228, 360, 180, 360), fisher_exact([[228, 132], [180, 180]]).pvalue)
    assert unpaired(228, 360, 180, 360) < 0.001 and unpaired(211, 360, 212, 360) == 1.0
    assert unpaired(0, 0, 3, 10) == 1.0


# A 80 right; B the same less two points (not significantly worse); C 50, D 50 on other points (tied with each other, both below A and B)
A = [True] * 80 + [False] * 20
B = [True] * 78 + [False] * 22
C = [True] * 50 + [False] * 50
D = [False] * 50 + [True] * 50


def test_rank_orders_by_accuracy_and_ties_what_mcnemar_cannot_tell_apart():
    ranks = rank({"c": C, "b": B, "a": A, "d": D})
    assert {k: r.position for k, r in ranks.items()} == {"a": 1, "b": 2, "c": 3, "d": 3}  # competition ranks
    assert ranks["a"].tied == ("b",) and ranks["b"].tied == ("a",)  # p = 0.5: two points apart
    assert ranks["c"].tied == ("d",) and ranks["d"].tied == ("c",)  # equal accuracy: always tied
    assert mcnemar(A, D).significant() and mcnemar(B, C).significant()
    assert list(ranks) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="same points"):
        rank({"a": A, "short": A[:10]})


def worst(model, defense, robust, *, eps=0.1, status="ok"):
    return {"model": model, "defense": defense, "dataset": "digits", "norm": "linf", "eps": eps, "attack": "worst-case", "n": 100,
            "robust_accuracy": None if robust is None else sum(robust) / len(robust), "status": status}  # fmt: skip


def test_rank_cells_ranks_per_eps_and_leaves_what_it_cannot_rank():
    cells = [worst("m", "none", A), worst("m", "jpeg", B), worst("n", "none", C), worst("n", "jpeg", None, status="failed")]
    cells += [worst("m", "none", A, eps=0.2), worst("n", "none", C, eps=0.3), worst("m", "jpeg", B, eps=0.3)]
    vectors = {vector_key(c): v for c, v in zip(cells, [A, B, C, None, A, C, B], strict=True) if v is not None}
    vectors[vector_key(cells[2])] = dict(enumerate(C))  # by example index works too
    rank_cells(cells, vectors)
    assert [(c.get("rank"), c.get("rank_of"), c.get("tied_with")) for c in cells[:4]] == [
        (1, 3, ["m / jpeg"]),
        (2, 3, ["m / none"]),
        (3, 3, []),
        (None, None, None),  # failed: no rank
    ]
    assert "rank" not in cells[4]  # alone at its eps: a rank of 1 of 1 says nothing
    assert (cells[5]["rank"], cells[6]["rank"]) == (2, 1) and cells[5]["tied_with"] == []
    wrong = [worst("m", "none", A), worst("n", "none", C)]
    with pytest.raises(ValueError, match="the cell says"):
        rank_cells(wrong, {vector_key(wrong[0]): A, vector_key(wrong[1]): B})


def record(key, attack, status="ok", **labels):
    labels = {"model": "m", "defense": "none", "dataset": "digits", "norm": "linf", "eps": 0.1, "attack": attack, **labels}
    return Record(key=key, track="adversarial", position=0, labels=labels, status=status)


def outcomes(robust, clean=None):
    clean = clean or [True] * len(robust)
    return [Outcome(i, {"clean_correct": c, "robust": r}) for i, (c, r) in enumerate(zip(clean, robust, strict=True))]


def test_worst_case_vectors_are_per_example_over_the_valid_attacks():
    records = [record("k1", "fgsm"), record("k2", "pgd"), record("k3", "square", status="invalid")]
    stored = {"k1": outcomes([True, True, False, True]), "k2": outcomes([True, False, False, True]), "k3": outcomes([False] * 4)}
    assert worst_case_vector(records, stored) == {0: True, 1: False, 2: False, 3: True}
    assert worst_case_vector(records, {"k1": stored["k1"], "k2": stored["k2"][:3]}) is None  # different points
    cells = [
        {"track": "adversarial", **records[0].labels, "key": "k1", "status": "ok"},
        {"track": "adversarial", **records[0].labels, "attack": "worst-case", "key": None, "status": "ok", "params": {"attacks": ["fgsm", "pgd"]}},
        {"track": "adversarial", **records[2].labels, "key": "k3", "status": "invalid"},
    ]
    fields = ("track", "model", "defense", "attack", "dataset", "norm", "eps")
    found = cell_vectors(cells, records, stored, fields=fields)
    assert found[("adversarial", "m", "none", "fgsm", "digits", "linf", 0.1)]["robust_accuracy"] == {0: True, 1: True, 2: False, 3: True}
    assert found[("adversarial", "m", "none", "worst-case", "digits", "linf", 0.1)] == {
        "robust_accuracy": {0: True, 1: False, 2: False, 3: True},
        "clean_accuracy": {0: True, 1: True, 2: True, 3: True},
    }
    assert len(found) == 2  # the invalid job's cell has none


def test_mean_interval_is_the_student_t_interval_over_replicates():
    from scipy.stats import t

    from bench.stats import mean_interval

    mean, low, high = mean_interval([1, 2, 3])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert mean == 2.0 and math.isclose(low, 2 - half) and math.isclose(high, 2 + half)
    values = [0.91, 0.93, 0.9, 0.95]
    expected = t.interval(0.9, len(values) - 1, loc=sum(values) / 4, scale=statistics.stdev(values) / 2)
    assert all(math.isclose(a, b) for a, b in zip(mean_interval(values, confidence=0.9)[1:], expected, strict=True))
    assert mean_interval([0.5]) == (0.5, None, None)  # one seed: no spread to measure
    assert mean_interval([0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)
    for bad in ([], [1.0, math.nan], [1.0, math.inf], [True, 1.0]):
        with pytest.raises(ValueError):
            mean_interval(bad)
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=1.0)


def test_holm_steps_down_and_counts_the_untested_family():
    # Holm (1979) by hand: m = 4, thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]  # 0.005 <= 0.0125, 0.01 <= 0.0167, 0.03 > 0.025: stop
    assert holm([0.01, 0.015, 0.02, 0.04]) == [True, True, True, True]  # each under its threshold
    assert holm([0.01, 0.02, 0.03, 0.04]) == [True, False, False, False]  # 0.02 > 0.0167: the rest stand
    assert holm([0.011, 0.02]) == [True, True]
    assert holm([0.011, 0.02], family=4) == [True, False]  # two more tests that found nothing: 0.02 > 0.05 / 3
    assert holm([0.04], family=1) == [True] and holm([0.04], family=2) == [False]
    assert holm([]) == []
    with pytest.raises(ValueError, match="family"):
        holm([0.1, 0.2], family=1)
