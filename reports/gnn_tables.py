"""The GNN track's page: tables per dataset and budget unit, sentences a reader can quote, and the markdown leaderboard.

Renders the cells of ``reports.gnn.aggregate``; nothing here computes a number
that a cell does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.escaping import markdown_text
from reports.gnn import (
    BELOW_MLP_MARK,
    EXPLANATIONS,
    TRACK,
    UNIT_TITLES,
    attack_text,
    budget_short,
    budget_text,
    is_worst_case,
    masked_pairs,
    name,
    row_order,
)
from reports.leaderboard import Table, page_markdown
from reports.leaderboard import cell_value as _value
from reports.leaderboard import seed_mean as show


def _drop(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return ""
    if cell["status"] != "ok":
        return cell["status"]
    drop = cell["metrics"].get("relative_drop")
    return "n/a" if drop is None else f"{100 * drop:.1f}"


def _seeds(cell: Mapping[str, Any], planned: int) -> str:
    ok = len(cell["seeds"])
    return f"{ok}/{planned}" + (f" ({planned - ok} not ok)" if planned > ok else "")


def sections(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """(dataset, budget unit) -> its cells, in plan order; cells whose unit is unknown (every job failed) are left out."""
    found: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for cell in cells:
        if cell.get("budget_unit") is not None:
            found.setdefault((cell["dataset"], cell["budget_unit"]), []).append(cell)
    return found


def _main_table(dataset: str, unit: str, members: Sequence[Mapping[str, Any]], order: Mapping[tuple[str, str], int]) -> Table:
    worst = [c for c in members if is_worst_case(c)]
    budgets = sorted({c["budget"] for c in worst})
    largest = budgets[-1] if budgets else None
    rows: dict[tuple[str, str], dict[float, Mapping[str, Any]]] = {}
    for cell in worst:
        rows.setdefault((cell["model"], cell["defense"]), {})[cell["budget"]] = cell
    headers = (
        "model",
        "defense",
        "clean %",
        *(f"worst case % @ {budget_short(b, unit)}" for b in budgets),
        f"relative drop % @ {budget_short(largest, unit)}" if largest is not None else "relative drop %",
        "flags",
    )
    shown, values = [], []
    for (model, defense), by_budget in sorted(rows.items(), key=lambda item: order[item[0]]):
        source = next((c for c in by_budget.values() if c["status"] == "ok"), None)
        robust = []
        for budget in budgets:
            cell = by_budget.get(budget)
            text = show(cell, "robust_accuracy")
            robust.append(f"{text} {BELOW_MLP_MARK}" if cell is not None and "below-mlp" in cell["flags"] else text)
        top = by_budget.get(largest) if largest is not None else None
        flags = sorted({f for c in by_budget.values() for f in c["flags"]})
        shown.append((model, defense, show(source, "clean_accuracy") if source else "failed", *robust, _drop(top), ", ".join(flags)))
        values.append(
            (None, None, _value(source, "clean_accuracy"), *(_value(by_budget.get(b), "robust_accuracy") for b in budgets), _value(top, "relative_drop"), None)
        )
    title = f"{dataset}, {UNIT_TITLES.get(unit, unit)}: worst case over attacks"
    return Table(title, headers, tuple(shown), tuple(values), _main_note(dataset, unit, members))


def _main_note(dataset: str, unit: str, members: Sequence[Mapping[str, Any]]) -> str:
    ok = [c for c in members if c["status"] == "ok"]
    seeds = ", ".join(str(n) for n in sorted({len(c["seeds"]) for c in ok})) or "0"
    targets = ", ".join(str(n) for n in sorted({c["n"] for c in ok if c["n"]})) or "n/a"
    level = next((c["metrics"].get("level") for c in ok if c["metrics"].get("level")), "nodes")
    what, one = ("test graphs", "test graph") if level == "graphs" else ("attacked test nodes", "node")
    budget = {
        "edges": "budget = share of the clean graph's edges that may be flipped",
        "points": "budget = share of each cloud's points that may be dropped",
    }.get(unit, "budget = eps, the radius of the perturbation ball")
    text = (
        f"Accuracy (%) on {targets} {what}, mean over {seeds} seed{'s' if seeds != '1' else ''} ± the half-width of the 95 % t-interval "
        f"over seeds; {budget}. Worst case: a {one} counts as robust only if it survived every attack "
        "(adaptive and transferred) at that budget in the same seed. Relative drop = 1 - robust / clean accuracy."
    )
    marked = [c for c in members if "below-mlp" in c["flags"] and is_worst_case(c)]
    if marked:
        reference = marked[0]
        text += (
            f" {BELOW_MLP_MARK}: below the graph-free {reference['mlp_model']} on {dataset} under the same attacks and budget"
            + (f" (edge flips cannot move it: its clean accuracy, {100 * reference['mlp_accuracy']:.1f} %)" if unit == "edges" else "")
            + ": under this attack budget the graph hurts more than it helps."
        )
    return text


DETAIL_HEADERS = ("model", "defense", "budget", "attack", "mode", "surrogate", "clean %", "robust %", "relative drop %", "changed / allowed", "seeds", "flags")


def _changed(cell: Mapping[str, Any]) -> str:
    if cell["status"] != "ok":
        return ""
    perturbation = cell["metrics"].get("perturbation") or {}
    changed, allowed = perturbation.get("changed"), perturbation.get("allowed")
    if changed is None:
        return ""
    return f"{changed:.1f}" + ("" if allowed is None else f" / {allowed:g}")


def _detail_table(dataset: str, unit: str, members: Sequence[Mapping[str, Any]], order: Mapping[tuple[str, str], int]) -> Table:
    planned: dict[tuple, int] = {}
    for cell in members:
        if not is_worst_case(cell):
            key = (cell["model"], cell["defense"], cell["budget"])
            planned[key] = max(planned.get(key, 0), len(cell["keys"]))
    position = {id(c): i for i, c in enumerate(members)}
    ranked = sorted(members, key=lambda c: (order[(c["model"], c["defense"])], c["budget"], is_worst_case(c), position[id(c)]))
    shown, values = [], []
    for cell in ranked:
        worst = is_worst_case(cell)
        total = planned.get((cell["model"], cell["defense"], cell["budget"]), len(cell["seeds"])) if worst else len(cell["keys"])
        surrogate = (cell.get("metrics") or {}).get("surrogate") or ""
        shown.append(
            (
                cell["model"],
                cell["defense"],
                budget_short(cell["budget"], unit),
                cell["attack"],
                cell["mode"],
                surrogate,
                show(cell, "clean_accuracy"),
                show(cell, "robust_accuracy") + (f" {BELOW_MLP_MARK}" if "below-mlp" in cell["flags"] else ""),
                _drop(cell),
                _changed(cell),
                _seeds(cell, max(total, len(cell["seeds"]))),
                ", ".join(cell["flags"]),
            )
        )
        values.append(
            (None, None, cell["budget"], None, None, None, _value(cell, "clean_accuracy"), _value(cell, "robust_accuracy"), _value(cell, "relative_drop"),
             None if cell["status"] != "ok" else (cell["metrics"].get("perturbation") or {}).get("changed"), None, None)
        )  # fmt: skip
    title = f"{dataset}, {UNIT_TITLES.get(unit, unit)}: every attack"
    changed = "edge flips / flips allowed" if unit == "edges" else "nodes (or points) changed"
    note = (
        "One row per attack and mode (adaptive: against the model with its defense; transfer: computed on the surrogate, then applied), "
        f"then the worst case over them; mean ± half-width of the 95 % t-interval over seeds. changed / allowed: mean {changed}. "
        "seeds: ok / planned."
    )
    return Table(title, DETAIL_HEADERS, tuple(shown), tuple(values), note)


def tables(cells: Sequence[Mapping[str, Any]]) -> list[Table]:
    """Per dataset and budget unit: the worst case per model x defense across budgets, then every attack and mode."""
    order = row_order(cells)
    out = []
    for (dataset, unit), members in sections(cells).items():
        out += [_main_table(dataset, unit, members, order), _detail_table(dataset, unit, members, order)]
    return out


# -- summary -------------------------------------------------------------------
def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def summary_lines(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """Quotable lines: per model x defense x dataset x budget unit, clean and worst-case accuracy at the largest budget (and whether it is below
    the graph-free model); then one line per adaptive/transferred pair that shows gradient masking."""
    order = row_order(cells)
    lines = []
    largest: dict[tuple, Mapping[str, Any]] = {}
    for cell in cells:
        if not is_worst_case(cell) or cell["status"] != "ok":
            continue
        key = (cell["model"], cell["defense"], cell["dataset"], cell["budget_unit"])
        if key not in largest or cell["budget"] > largest[key]["budget"]:
            largest[key] = cell
    for (model, defense, dataset, unit), cell in sorted(largest.items(), key=lambda item: order[item[0][:2]]):
        metrics = cell["metrics"]
        if metrics["graph_free"] and unit == "edges":
            continue  # it ignores the graph: no edge flip moves it
        worst = metrics["worst_case"]
        strongest = attack_text(worst["strongest_attack"], worst["strongest_mode"], worst["strongest_surrogate"])
        line = (
            f"{name(model, defense)} on {dataset}: {_pct(metrics['clean_accuracy'])} clean, {_pct(metrics['robust_accuracy'])} under the worst "
            f"attack at {budget_text(cell['budget'], unit)} ({strongest})"
        )
        if "below-mlp" in cell["flags"]:
            line += f", below the graph-free {cell['mlp_model']} ({_pct(cell['mlp_accuracy'])})"
        lines.append(line)
    for adaptive, transferred in masked_pairs(cells):
        lines.append(
            f"{name(adaptive['model'], adaptive['defense'])} on {adaptive['dataset']}: adaptive {adaptive['attack']} leaves "
            f"{_pct(adaptive['robust_accuracy'])}, transferred {_pct(transferred['robust_accuracy'])} at "
            f"{budget_text(adaptive['budget'], adaptive['budget_unit'])}: its transfer robustness is gradient masking"
        )
    return lines


def cell_title(cell: Mapping[str, Any]) -> str:
    """'gcn / none / prbcd (adaptive) at 5 % of edges on csbm'."""
    return f"{cell['model']} / {cell['defense']} / {cell['attack']} ({cell['mode']}) at {budget_text(cell['budget'], cell['budget_unit'])} on {cell['dataset']}"


def gnn_markdown(cells: Sequence[Mapping[str, Any]]) -> str:
    """The page: the summary lines, per dataset and budget unit the worst-case table and the per-attack table, the flags, the failed jobs."""
    used = sorted({f for c in cells for f in c["flags"]})
    return page_markdown(
        f"Leaderboard: {markdown_text(cells[0]['track'] if cells else TRACK)} track",
        tables(cells) if cells else [],
        summary=summary_lines(cells) if cells else [],
        flags={f: EXPLANATIONS.get(f, "") for f in used},
        failed=[(cell_title(c), c["error"]) for c in cells if c["error"] and not is_worst_case(c)],
        footer="Accuracy against the budget, adaptive against transferred: the figures in leaderboard.html.",
    )
