"""The NAS track's page: a table per space x dataset x objective, sentences a reader can quote, and the markdown leaderboard.

Renders the cells of ``reports.nas.aggregate``; nothing here computes a number
that a cell does not hold. Values are shown in percent (the objectives are
accuracies in [0, 1]), regret in points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.escaping import markdown_text
from reports.leaderboard import Table, page_markdown
from reports.leaderboard import cell_value as _value
from reports.leaderboard import seed_mean as show
from reports.nas import EXHAUSTIVE, EXPLANATIONS, OPTIMUM, REFERENCE, REFERENCE_VERDICT, SEARCH, TRACK, group_key


def _found(cell: Mapping[str, Any] | None) -> str:
    """'2/5': seeds whose best is the table optimum, of the seeds at that budget."""
    share = _value(cell, "found_optimum")
    if share is None:
        return "" if cell is None or cell["status"] == "ok" else cell["status"]
    seeds = cell["metrics"]["seeds"]
    return f"{round(share * seeds)}/{seeds}"


def _verdict(cell: Mapping[str, Any] | None) -> str:
    judged = _value(cell, "verdict")
    if judged is None:
        return ""
    p = cell["metrics"].get("p_value")
    return judged if p is None else f"{judged} (p = {p:.3g})"


def groups(cells: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    """(space, dataset, objective) -> its search and optimum cells, in order; Pareto cells are left out."""
    found: dict[tuple, list[Mapping[str, Any]]] = {}
    for cell in cells:
        if cell.get("role") in (SEARCH, OPTIMUM):
            found.setdefault(group_key(cell), []).append(cell)
    return found


def strategies(members: Sequence[Mapping[str, Any]]) -> dict[str, dict[Any, Mapping[str, Any]]]:
    """strategy -> budget -> its search cell, strategies in first-seen order."""
    found: dict[str, dict[Any, Mapping[str, Any]]] = {}
    for cell in members:
        if cell.get("role") == SEARCH:
            found.setdefault(cell["strategy"], {})[cell["budget"]] = cell
    return found


def budgets(members: Sequence[Mapping[str, Any]]) -> list[int]:
    """The budgets reported for a group, ascending."""
    return sorted({c["budget"] for c in members if c.get("role") == SEARCH and c["status"] == "ok" and c["budget"] is not None})


def optimum(members: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((c for c in members if c.get("role") == OPTIMUM), None)


def title(group: tuple) -> str:
    """'nas-bench-201 / cifar10, objective accuracy'."""
    space, dataset, objective = group
    return f"{space} / {dataset}, objective {objective}"


def _table(group: tuple, members: Sequence[Mapping[str, Any]]) -> Table:
    shown_budgets = budgets(members)
    largest = shown_budgets[-1] if shown_budgets else None
    at = f" @ {largest}" if largest is not None else ""
    headers = ("strategy", *(f"best % @ {b}" for b in shown_budgets), f"regret (points){at}", f"test %{at}", f"found optimum{at}", f"verdict{at}",
               f"seeds{at}", "flags")  # fmt: skip
    rows, values = [], []
    for strategy, by_budget in strategies(members).items():
        top = by_budget.get(largest)
        failed = next((c for c in by_budget.values() if c["status"] != "ok"), None)
        cells = [by_budget.get(b) or failed for b in shown_budgets]
        flags = sorted({f for c in by_budget.values() for f in c["flags"]})
        searches = max((len(c["seeds"]) for c in by_budget.values()), default=0)
        seeds = len(top["seeds"]) if top is not None else 0
        rows.append((strategy, *(show(c, "best_value") for c in cells), show(top or failed, "regret"), show(top or failed, "test_value"),
                     _found(top or failed), _verdict(top), f"{seeds}/{searches}", ", ".join(flags)))  # fmt: skip
        values.append((None, *(_value(c, "best_value") for c in cells), _value(top, "regret"), _value(top, "test_value"), _value(top, "found_optimum"),
                       _value(top, "p_value"), seeds, None))  # fmt: skip
    best = optimum(members)
    if best is not None:
        m = best["metrics"]
        label = f"{EXHAUSTIVE} (optimum of {m['n_archs']})" if best["status"] == "ok" else EXHAUSTIVE
        rows.append((label, *(show(best, "best_value") for _ in shown_budgets), show(best, "regret"), show(best, "test_value"), "", "", "",
                     ", ".join(best["flags"])))  # fmt: skip
        values.append((None, *(_value(best, "best_value") for _ in shown_budgets), _value(best, "regret"), _value(best, "test_value"), None, None, None,
                       None))  # fmt: skip
    return Table(title(group), headers, tuple(rows), tuple(values), _note(group, members, shown_budgets))


def _note(group: tuple, members: Sequence[Mapping[str, Any]], shown_budgets: Sequence[int]) -> str:
    objective = group[2]
    searches = [c for c in members if c.get("role") == SEARCH and c["status"] == "ok"]
    seeds = ", ".join(str(n) for n in sorted({len(c["seeds"]) for c in searches})) or "0"
    text = (
        f"best % @ b: the best validation {objective} among a search's first b evaluated (distinct) architectures, in percent; "
        f"mean over {seeds} seed{'s' if seeds != '1' else ''} (independent searches) ± the half-width of the 95 % t-interval over seeds. "
        f"Budgets: {', '.join(str(b) for b in shown_budgets) or 'none'}. "
        f"Regret: the table optimum's validation {objective} - the best found, in points. Test %: the test {objective} of the architecture "
        "each search picked (its best on validation; the test split is used only for the picked architecture, never to search). "
        "Found optimum: seeds whose best is the table optimum. Seeds: the searches at the largest budget / all searches. "
        "Verdict: one-sided Mann-Whitney U test of the per-seed best values against "
        f"{REFERENCE} search at the same budget (unpaired: the seeds are independent searches), alpha 0.05."
    )
    best = optimum(members)
    if best is not None and best["status"] == "ok":
        m = best["metrics"]
        oracle = m.get("best_test_value")
        text += (
            f" {EXHAUSTIVE}: every one of the {m['n_archs']} architectures ({m.get('n_feasible', m['n_archs'])} feasible) evaluated; "
            f"its best on validation is {m.get('arch')}"
            + (f"; the best test {objective} of any architecture (an oracle upper bound) is {100 * oracle:.1f} %." if oracle is not None else ".")
        )
    return text


def tables(cells: Sequence[Mapping[str, Any]]) -> list[Table]:
    """One table per space x dataset x objective: a row per strategy (the exhaustive optimum last), a column per budget."""
    return [_table(group, members) for group, members in groups(cells).items()]


# -- summary -------------------------------------------------------------------
def _sentence(group: tuple, cell: Mapping[str, Any]) -> str:
    space, dataset, objective = group
    where = f"{space} / {dataset}, objective {objective}" + (f", budget {cell['budget']}" if cell["budget"] is not None else "")
    if cell["status"] != "ok":
        return f"{where}: {cell['strategy']} {cell['status']}" + (f" ({cell['error']})" if cell["error"] else "")
    m = cell["metrics"]
    if m["best_value"] is None:
        return f"{where}: {cell['strategy']} finds no feasible architecture"
    found = f"{show(cell, 'best_value')} % validation {objective}"
    if m["regret"] is None:
        details = "regret unknown: no exhaustive table"
    else:
        details = f"regret {100 * m['regret']:.1f} points, the optimum in {round(m['found_optimum'] * m['seeds'])} of {m['seeds']} seeds"
    line = f"{where}: {cell['strategy']} finds {found} ({details})"
    if m["verdict"] == REFERENCE_VERDICT:
        return line + ": the reference"
    if m["verdict"] is not None:
        return line + f": {m['verdict']} (p = {m['p_value']:.3g})"
    return line


def summary_lines(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """One quotable line per strategy of each space x dataset x objective, at the group's middle budget (or its largest it reached)."""
    lines = []
    for group, members in groups(cells).items():
        shown_budgets = budgets(members)
        middle = shown_budgets[len(shown_budgets) // 2] if shown_budgets else None
        for by_budget in strategies(members).values():
            reached = [b for b in by_budget if b is not None and (middle is None or b <= middle)]
            cell = by_budget[max(reached)] if reached else next(iter(by_budget.values()))
            lines.append(_sentence(group, cell))
    return lines


def cell_title(cell: Mapping[str, Any]) -> str:
    """'nas-bench-201 / cifar10 / accuracy / evolution'."""
    return " / ".join(str(cell[k]) for k in ("space", "dataset", "objective", "strategy") if cell.get(k) is not None)


def nas_markdown(cells: Sequence[Mapping[str, Any]]) -> str:
    """The page: the summary lines, a table per space x dataset x objective, the flags, the failed jobs (once per strategy)."""
    used = sorted({f for c in cells for f in c["flags"]})
    failed = list(dict.fromkeys((cell_title(c), c["error"]) for c in cells if c["error"]))
    return page_markdown(
        f"Leaderboard: {markdown_text(cells[0]['track'] if cells else TRACK)} track",
        tables(cells) if cells else [],
        summary=summary_lines(cells) if cells else [],
        flags={f: EXPLANATIONS.get(f, "") for f in used},
        failed=failed,
        footer="Best-so-far curves against evaluations and the Pareto fronts of the trained table: the figures in leaderboard.html.",
    )
