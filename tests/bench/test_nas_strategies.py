"""The NAS track's search strategies and the ``Search`` around them: they find the optimum of a lookup table, spend
exactly their budget on distinct architectures (isomorphs and invalid proposals are free), replay identically (a resume),
stop when they have nothing new to propose or an evaluation failed, and do all of it through ``bench run``.

Most tests drive ``Search`` directly the way the harness does: advance it with the results known so far, evaluate
what it proposed (a table lookup), advance again, until it stops running.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from bench import runner
from bench import spec as specs
from bench.store import Store
from bench.tracks import TRACKS
from bench.tracks.nas.search import FAILED, MAX_FREE, MISSING, Search
from bench.tracks.nas.strategies import STRATEGIES, Arch, Strategy

ALL = ("random", "reinforce", "evolution", "tpe", "local")
SIZES = (4, 4, 4, 4)  # 256 architectures


def _table() -> dict[Arch, float]:
    """Additive per-dimension effects plus a small interaction of the first two dimensions: learnable, one optimum."""
    rng = np.random.default_rng(0)
    effects = rng.uniform(0.0, 0.1, size=(4, 4))
    interaction = rng.uniform(0.0, 0.02, size=(4, 4))
    return {
        arch: 0.5 + sum(float(effects[i, o]) for i, o in enumerate(arch)) + float(interaction[arch[0], arch[1]])
        for arch in itertools.product(range(4), repeat=4)
    }


def key_of(arch: Arch) -> str:
    return "-".join(map(str, arch))


VALUES = {key_of(arch): value for arch, value in _table().items()}
OPTIMUM = max(VALUES, key=VALUES.get)


def make(name: str, seed: int, sizes: tuple[int, ...] = SIZES, **params) -> Strategy:
    return STRATEGIES.create(name, context={"sizes": sizes, "seed": seed}, **params)


def drive(search: Search, values: Mapping[str, float | None], *, known: dict | None = None, stop_at: str | None = None, max_rounds: int = 100_000) -> dict:
    """Advance ``search`` as the harness does, evaluating (looking up in ``values``) each new proposal between rounds, until it
    stops running (or proposes ``stop_at``); returns the results it was given, by key."""
    known = {} if known is None else known
    for _ in range(max_rounds):
        search.advance(lambda key: known.get(key, MISSING))
        if search.state != "running" or (stop_at is not None and any(p.key == stop_at for p in search.proposals)):
            return known
        new = [p.key for p in search.proposals if p.key not in known]
        assert new, "a running search waits for an evaluation it never proposed"
        known.update({key: values[key] for key in new})
    raise AssertionError(f"the search still runs after {max_rounds} rounds")


def run_search(name: str, seed: int, budget: int, **kwargs) -> tuple[Search, dict]:
    search = Search(make(name, seed), key_of, budget)
    return search, drive(search, VALUES, **kwargs)


def sequence(search: Search) -> list[tuple[int, Arch, str, int]]:
    """A search's proposals without their wall-clock time."""
    return [(p.step, p.arch, p.key, p.asks) for p in search.proposals]


def test_the_synthetic_table_has_one_optimum():
    ranked = sorted(VALUES.values())
    assert len(VALUES) == 256 and ranked[-1] - ranked[-2] > 1e-3 and OPTIMUM == "0-1-1-0"


# -- they find the optimum ------------------------------------------------------------
# The step at which each strategy first proposed the optimum of this table (seeds 0..19, measured with these defaults):
#   tpe        5..40  (seeds 0-2: 19, 28, 30)
#   local     19..37  (seeds 0-2: 34, 35, 26)
#   evolution 20..84  (seeds 0-2: 32, 30, 37; its first 20 are random)
#   reinforce 31..142 (seeds 0-2: 102, 100, 96; seed 3 needs 131, so half the space is too tight for it)
# Random search without replacement finds it at a uniform step (seeds 0-2: 46, 49, 105); a strategy that learnt nothing
# would pass a budget of 64 on all three seeds with probability (1/4)^3.
FIND_BUDGETS = {"tpe": 64, "local": 64, "evolution": 128, "reinforce": 192}


@pytest.mark.parametrize("name", sorted(FIND_BUDGETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_model_based_strategy_finds_the_optimum_within_its_budget(name, seed):
    budget = FIND_BUDGETS[name]
    search, _ = run_search(name, seed, budget, stop_at=OPTIMUM)
    found = [p.step for p in search.proposals if p.key == OPTIMUM]
    assert found and found[0] <= budget, f"{name} (seed {seed}) did not find the optimum within {budget} evaluations"
    assert len(search.proposals) <= budget


@pytest.mark.parametrize("name", ["evolution", "local", "tpe"])
def test_after_their_start_the_strategies_propose_better_than_random_architectures(name):
    # mean value of evaluations 21-40 minus the table's mean (0.714), seeds 0..9 measured: tpe >= 0.021 (seeds 0-2 mean
    # 0.060), local >= 0.062 (0.069), evolution >= 0.045 (0.060); random search (and evolution that ignores what it is
    # told, which is random search) -0.019..0.031, its 3-seed mean within about 0.007 of 0.
    table_mean = statistics.fmean(VALUES.values())
    gains = []
    for seed in range(3):
        search, _ = run_search(name, seed, 40)
        gains.append(statistics.fmean(VALUES[p.key] for p in search.proposals[20:]) - table_mean)
    assert statistics.fmean(gains) > 0.03, gains


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_search_samples_without_replacement_and_covers_the_space_at_its_size(seed):
    # sampling the product of the options (no ``restrict``): 192 of seeds 0..199 cover all 256; the other 8 draw
    # MAX_FREE repeats in a row while one architecture is left and end exhausted at 255 (seeds 0-2 cover it)
    search, known = run_search("random", seed, 256)
    assert search.state == "done" and len(search.proposals) == 256 and search.evaluated == 256
    assert {p.key for p in search.proposals} == set(VALUES) == set(known)  # every architecture once, the optimum among them
    assert search.asks > 256 and search.free == search.asks - 256  # the repeats it drew were served, not evaluated again


def test_random_search_given_the_spaces_architectures_proposes_a_permutation_of_them():
    rows = [arch for arch in itertools.product(range(4), repeat=4) if sum(arch) % 5 == 0]  # a table that fills 51 of the 256 combinations
    strategy = make("random", 0)
    strategy.restrict(rows)
    search = Search(strategy, lambda arch: key_of(arch) if arch in rows else None, len(rows))
    drive(search, VALUES)
    assert search.state == "done" and sorted(p.arch for p in search.proposals) == sorted(rows)
    assert search.asks == len(rows) and search.free == 0  # never a repeat, never a combination without a row


def test_the_reinforce_controller_learns():
    # measured at budget 128 (seeds 0-3): last-50 minus first-50 mean reward 0.114, 0.103, 0.103, 0.040 (mean 0.090);
    # the table's mean is 0.714 and its standard deviation 0.057
    gains = []
    for seed in range(4):
        search, _ = run_search("reinforce", seed, 128)
        controller = search.strategy
        rewards = controller.rewards
        assert search.state == "done" and len(rewards) == search.asks >= 128  # every ask was told its reward, repeats included
        assert controller.updates == len(rewards) // controller.batch > 0
        gains.append(statistics.fmean(rewards[-50:]) - statistics.fmean(rewards[:50]))
    assert min(gains) > 0.02 and statistics.fmean(gains) > 0.05, gains


# -- equal budgets ----------------------------------------------------------------------
ISO_SIZES = (4, 4, 4)
FLOOR = -1.0


def iso_canonical(arch: Arch) -> str | None:
    """Order does not matter (permutations are isomorphs); two or more 3s is no architecture: 16 distinct keys of 64."""
    if arch.count(3) >= 2:
        return None
    return key_of(tuple(sorted(arch)))


ISO_KEYS = sorted({key for key in map(iso_canonical, itertools.product(range(4), repeat=3)) if key is not None})
ISO_VALUES = {key: 0.3 + 0.1 * sum(map(int, key.split("-"))) + 0.001 * i for i, key in enumerate(ISO_KEYS)}


class Spy:
    """Records what the search asks of a strategy and tells it."""

    def __init__(self, strategy: Strategy) -> None:
        self.asked: list[Arch] = []
        self.told: list[tuple[Arch, float]] = []
        ask, tell = strategy.ask, strategy.tell

        def asking() -> Arch:
            arch = ask()
            self.asked.append(tuple(int(i) for i in arch))
            return arch

        def telling(arch: Arch, value: float) -> None:
            self.told.append((arch, value))
            tell(arch, value)

        strategy.ask, strategy.tell = asking, telling


@pytest.mark.parametrize("name", ALL)
def test_a_budget_buys_exactly_that_many_distinct_architectures_and_isomorphs_and_invalid_ones_are_free(name):
    assert len(ISO_VALUES) == 16
    budget = 12
    strategy = make(name, 0, ISO_SIZES)
    spy = Spy(strategy)
    search = Search(strategy, iso_canonical, budget, floor=FLOOR)
    known = drive(search, ISO_VALUES)
    keys = [p.key for p in search.proposals]
    assert search.state == "done" and search.evaluated == budget == len(known)
    assert [p.step for p in search.proposals] == list(range(1, budget + 1)) and len(set(keys)) == budget
    assert all(p.key is not None and p.key == iso_canonical(p.arch) for p in search.proposals)
    assert [p.asks for p in search.proposals] == sorted({p.asks for p in search.proposals}) and search.proposals[-1].asks <= search.asks
    # every ask was told, in order: an isomorph its key's value, an invalid one the floor, neither evaluated again
    assert [arch for arch, _ in spy.told] == spy.asked and len(spy.asked) == search.asks == budget + search.free
    for arch, value in spy.told:
        key = iso_canonical(arch)
        assert value == (FLOOR if key is None else ISO_VALUES[key])
    seen: dict[str, Arch] = {}
    isomorphs, invalid, free = [], [], 0
    for arch in spy.asked:
        key = iso_canonical(arch)
        if key is None:
            invalid.append(arch)
        elif key in seen and seen[key] != arch:
            isomorphs.append(arch)
        free += key is None or key in seen
        seen.setdefault(key, arch)
    assert isomorphs and invalid and search.free == free


@pytest.mark.parametrize("name", ALL)
def test_on_a_tiny_space_every_strategy_evaluates_each_architecture_once_and_repeats_cost_nothing(name):
    values = {key_of(arch): 0.1 * (1 + 3 * arch[0] + arch[1]) for arch in itertools.product(range(3), repeat=2)}
    search = Search(make(name, 0, (3, 3)), key_of, 9)
    drive(search, values)
    assert search.state == "done" and search.evaluated == 9 and {p.key for p in search.proposals} == set(values)
    assert search.asks > search.evaluated


# -- determinism and replay ---------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_a_search_is_a_function_of_its_seed_and_replays_identically_from_stored_results(name):
    budget = 40
    first, results = run_search(name, 0, budget)
    again, _ = run_search(name, 0, budget)
    other, _ = run_search(name, 1, budget)
    assert first.state == "done" and len(first.proposals) == budget
    assert sequence(again) == sequence(first)
    assert [p.arch for p in other.proposals] != [p.arch for p in first.proposals]  # the seed matters

    replayed = Search(make(name, 0), key_of, budget)  # a resume: every stored result at hand, one advance
    replayed.advance(lambda key: results.get(key, MISSING))
    assert replayed.state == "done" and sequence(replayed) == sequence(first) and replayed.asks == first.asks

    for k in (1, 15, budget - 1):  # killed after k evaluations: replays those, then continues as if never interrupted
        stored = {p.key: results[p.key] for p in first.proposals[:k]}
        resumed = Search(make(name, 0), key_of, budget)
        resumed.advance(lambda key, stored=stored: stored.get(key, MISSING))
        assert resumed.state == "running" and sequence(resumed) == sequence(first)[: len(resumed.proposals)]
        assert len(resumed.proposals) > k
        drive(resumed, VALUES, known=dict(stored))
        assert sequence(resumed) == sequence(first)


# -- a search ends ----------------------------------------------------------------------------
class Repeats(Strategy):
    """Always proposes the first architecture: after it, nothing new."""

    def ask(self) -> Arch:
        return tuple(0 for _ in self.sizes)


class Invalid(Strategy):
    """Always proposes an architecture that is no architecture of the space."""

    def ask(self) -> Arch:
        return tuple(n - 1 for n in self.sizes)


def test_a_strategy_that_only_repeats_ends_exhausted_short_of_its_budget():
    search = Search(Repeats((4, 4), 0), key_of, 5)
    drive(search, {"0-0": 0.5}, max_rounds=10)
    assert search.state == "exhausted" and [p.key for p in search.proposals] == ["0-0"] and search.evaluated == 1
    assert search.asks == 1 + MAX_FREE
    search.advance(lambda key: pytest.fail("an exhausted search asks for nothing"))
    assert search.state == "exhausted" and search.asks == 1 + MAX_FREE

    nothing = Search(Invalid((4, 4), 0), lambda arch: None, 5)
    nothing.advance(lambda key: MISSING)
    assert nothing.state == "exhausted" and nothing.proposals == [] and nothing.asks == MAX_FREE


def test_a_budget_beyond_the_space_ends_exhausted_with_every_architecture_evaluated():
    values = {key_of(arch): 0.1 * (1 + 3 * arch[0] + arch[1]) for arch in itertools.product(range(3), repeat=2)}
    search = Search(make("random", 0, (3, 3)), key_of, 20)
    drive(search, values, max_rounds=50)
    assert search.state == "exhausted" and search.evaluated == 9 and len(search.proposals) == 9


@pytest.mark.parametrize("name", ALL)
def test_a_failed_evaluation_blocks_the_search_until_its_result_is_there(name):
    budget, failing = 20, 7
    reference, _ = run_search(name, 0, budget)
    search = Search(make(name, 0), key_of, budget)
    known: dict = {}
    while len(search.proposals) < failing:
        search.advance(lambda key: known.get(key, MISSING))
        known.update({p.key: VALUES[p.key] for p in search.proposals if p.key not in known})
    lost = search.proposals[failing - 1].key
    known[lost] = FAILED
    for _ in range(3):  # however often the harness replans, nothing new while the evaluation is lost
        search.advance(lambda key: known.get(key, MISSING))
        asks, proposed = search.asks, len(search.proposals)
        if search.state == "blocked":
            break
        known.update({p.key: VALUES[p.key] for p in search.proposals if p.key not in known})
    assert search.state == "blocked"
    search.advance(lambda key: known.get(key, MISSING))
    assert search.state == "blocked" and search.asks == asks and len(search.proposals) == proposed
    known[lost] = VALUES[lost]  # retried, and this time it finished
    drive(search, VALUES, known=known)
    assert search.state == "done" and sequence(search) == sequence(reference)


# -- through the harness -----------------------------------------------------------------
DEPTHS, WIDTHS, ACTIVATIONS = (1, 2, 3), (16, 32, 64, 128), ("gelu", "relu", "tanh")


def write_table(path: Path) -> dict[str, float]:
    """30 of the 36 combinations (every sixth has no row: no architecture); returns val_accuracy by the space's key."""
    rng = np.random.default_rng(7)
    rows, values = [], {}
    for i, (depth, width, activation) in enumerate(itertools.product(DEPTHS, WIDTHS, ACTIVATIONS)):
        if i % 6 == 5:
            continue
        val, test = 0.5 + 0.4 * rng.random(), 0.5 + 0.4 * rng.random()
        rows.append(f"{depth},{width},{activation},{val:.4f},{test:.4f}")
        values[f"depth={depth} width={width} activation={activation}"] = round(val, 4)
    path.write_text("depth,width,activation,val_accuracy,test_accuracy\n" + "\n".join(rows) + "\n")
    ranked = sorted(values.values())
    assert len(values) == 30 and ranked[-1] > ranked[-2]
    return values


def nas_spec(folder: Path, strategies: list, budgets: list[int]):
    raw = {"track": "nas", "seeds": 2, "budgets": budgets, "strategies": strategies, "spaces": [{"name": "table", "path": "table.csv"}], "executor": "serial"}
    return specs.build(raw, base_dir=folder)


def stored(out: Path) -> list:
    with Store(out / "results.db", read_only=True) as store:
        return store.records()


def test_bench_run_searches_the_table_at_equal_budgets_and_reports_the_best_found(tmp_path):
    values = write_table(tmp_path / "table.csv")
    spec = nas_spec(tmp_path, ["random", "evolution", "tpe"], [5, 10])
    summary = runner.run(spec, tmp_path / "run")
    assert summary.failed == [] and summary.ran > 0
    records = stored(tmp_path / "run")
    assert all(r.status == "ok" for r in records)

    [optimum] = [r for r in records if r.labels["role"] == "optimum"]
    assert optimum.metrics["value"] == max(values.values()) and optimum.metrics["arch_key"] == max(values, key=values.get)
    assert optimum.metrics["n_archs"] == 30

    searches: dict[tuple[str, int], list] = {}
    for record in records:
        if record.labels["role"] == "search":
            searches.setdefault((record.labels["strategy"], record.labels["seed"]), []).append(record)
    assert sorted(searches) == [(s, seed) for s in ("evolution", "random", "tpe") for seed in (0, 1)]
    from bench.tracks.nas.spaces import SEARCH_SPACES

    space = SEARCH_SPACES.create("table", context={"header_dataset": "digits"}, path=str(tmp_path / "table.csv"))
    for (strategy, seed), found in searches.items():
        found.sort(key=lambda r: r.labels["step"])
        keys = [r.metrics["arch_key"] for r in found]
        assert [r.labels["step"] for r in found] == list(range(1, 11)) and len(set(keys)) == 10
        assert all(r.metrics["value"] == values[r.metrics["arch_key"]] and r.metrics["budget"] == 10 for r in found)
        # the harness's rounds of plan and run make the same search as driving it directly (sampling the table's rows)
        made = make(strategy, seed, space.sizes)
        made.restrict([arch for _, arch in space.architectures()])
        direct = Search(made, space.canonical, 10)
        drive(direct, values)
        assert [p.key for p in direct.proposals] == keys, (strategy, seed)

    again = runner.run(spec, tmp_path / "run")
    assert again.ran == 0 and again.failed == []
    assert len(stored(tmp_path / "run")) == len(records)

    cells = TRACKS.create("nas").cells(stored(tmp_path / "run"), {})
    for strategy in ("random", "evolution", "tpe"):
        for budget in (5, 10):
            [cell] = [c for c in cells if c["role"] == "search" and c["strategy"] == strategy and c["budget"] == budget]
            bests = [max(r.metrics["value"] for r in searches[(strategy, seed)][:budget]) for seed in (0, 1)]
            assert cell["status"] == "ok" and cell["metrics"]["best_value"] == pytest.approx(statistics.fmean(bests))
            assert cell["metrics"]["evaluations"] == budget and "budget-not-reached" not in cell["flags"]
    [exhaustive] = [c for c in cells if c["role"] == "optimum"]
    assert exhaustive["metrics"]["best_value"] == max(values.values())


def test_bench_run_ends_a_search_whose_strategy_only_repeats_and_says_so(tmp_path):
    write_table(tmp_path / "table.csv")
    spec = nas_spec(tmp_path, [f"{__name__}:Repeats"], [5])
    summary = runner.run(spec, tmp_path / "run")
    assert summary.failed == []
    searches = [r for r in stored(tmp_path / "run") if r.labels["role"] == "search"]
    assert sorted((r.labels["seed"], r.labels["step"]) for r in searches) == [(0, 1), (1, 1)]  # one evaluation each, then exhausted
    [cell] = [c for c in TRACKS.create("nas").cells(stored(tmp_path / "run"), {}) if c["role"] == "search"]
    assert cell["metrics"]["evaluations"] == 1 and "budget-not-reached" in cell["flags"]
    assert runner.run(spec, tmp_path / "run").ran == 0
