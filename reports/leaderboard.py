"""Leaderboard tables from cells (one dict per leaderboard cell) and their markdown (JSON: ``json_export``, CSV: ``csv_export``).

The grouping into sections and rows (``sections``) is shared with the LaTeX
and HTML renderers. A section's attack columns come in run order: each row's
cells, in the order they ran, merged (``cascade_order``), so every row reads
left to right as its attacks ran.

Every accuracy with an ``n`` carries its 95 % Wilson interval (``interval``):
shown as ``58.3 [53–63]`` (the interval rounded outward to whole percent, so
it is never narrower than the real one), in JSON as ``clean_interval`` and
``robust_interval`` lists ``[low, high]`` of fractions, in CSV as columns
``clean_accuracy_low`` ... ``robust_accuracy_high``. Worst-case cells ranked by
``bench.tracks.adversarial.ranking`` (``rank``, ``rank_of``, ``tied_with``)
and judged (``verdict``, ``verdict_details``) add a ``rank`` and a
``verdict`` column to their section; rows that share a letter in ``rank``
are not significantly different.

Numbers stay numbers in JSON and CSV; percentages and eps formats are
display only. Every text the markdown shows is escaped (``reports.escaping``):
a ``|`` in a label never moves a cell into the next column, and raw HTML in a
label is shown as text, never rendered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tabulate import tabulate

from bench.stats import wilson
from reports.escaping import markdown_cell, markdown_text
from reports.ordering import cascade_order, tie_groups, tie_letters

NORM_TITLES = {"linf": "Linf", "l2": "L2"}


INTERVALS = {"clean_accuracy": "clean_interval", "robust_accuracy": "robust_interval"}  # accuracy -> the field of its interval
CONFIDENCE = 0.95


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _half(metrics: Mapping[str, Any], field: str) -> float | None:
    """The interval's half-width: the larger distance from the mean (clipping at 0 or 1 cuts one side only)."""
    low, high, mean = metrics.get(f"{field}_low"), metrics.get(f"{field}_high"), metrics.get(field)
    if low is None or high is None or mean is None:
        return None
    return max(mean - low, high - mean)


def seed_mean(cell: Mapping[str, Any] | None, field: str) -> str:
    """'62.3 ± 4.1': a cell's mean over seeds in percent (or points) ± the half-width of its 95 % t-interval (``<field>_low``,
    ``<field>_high`` in its metrics); the status of a cell that is not ok."""
    if cell is None:
        return ""
    if cell["status"] != "ok":
        return cell["status"]
    value = cell["metrics"].get(field)
    if value is None:
        return "n/a"
    half = _half(cell["metrics"], field)
    return f"{100 * value:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")


def cell_value(cell: Mapping[str, Any] | None, field: str) -> float | None:
    """A metric of an ok cell (what a table sorts by); None otherwise."""
    return None if cell is None or cell["status"] != "ok" else cell["metrics"].get(field)


def interval(cell: Mapping[str, Any], field: str) -> tuple[float, float] | None:
    """The 95 % Wilson interval of an accuracy field of ``cell`` (a fraction of ``n`` points), or None without the value or ``n``."""
    own = cell.get(INTERVALS.get(field, ""))
    if own is not None:  # a track that stored its own interval keeps it
        return float(own[0]), float(own[1])
    value, n = cell.get(field), cell.get("n")
    if not isinstance(value, int | float) or isinstance(value, bool) or not n:
        return None
    return wilson(min(n, max(0, round(value * n))), n, CONFIDENCE)


def bracket(found: tuple[float, float] | None, *, dash: str = "–") -> str:
    """'[53–63]': an interval in whole percent, rounded outward; '' for None."""
    if found is None:
        return ""
    low, high = math.floor(100 * found[0] + 1e-9), math.ceil(100 * found[1] - 1e-9)
    return f"[{low}{dash}{high}]"


def accuracy(value: float | None, found: tuple[float, float] | None, *, dash: str = "–") -> str:
    """'58.3 [53–63]': a percentage with its interval (or without, when there is none)."""
    if value is None:
        return ""
    return f"{percent(value)} {bracket(found, dash=dash)}" if found is not None else percent(value)


def _value(cell: Mapping[str, Any] | None, *, dash: str = "–") -> str:
    if cell is None:
        return ""
    if cell["status"] == "ok":
        return accuracy(cell["robust_accuracy"], interval(cell, "robust_accuracy"), dash=dash)
    return cell["status"]  # invalid | failed: never shown as a number


ROW_FIELDS = ("track", "model", "defense", "attack", "dataset", "norm", "eps")  # what identifies a cell across runs


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a model x defense at one eps, with its cell for each attack (and the worst case)."""

    model: str
    defense: str
    eps: float | None
    clean_accuracy: float | None
    by_attack: Mapping[str, Mapping[str, Any]]
    flags: tuple[str, ...]
    clean_interval: tuple[float, float] | None = None
    rank: str = ""  # '2 ab': the worst case's rank at this eps, then the letters it shares with rows it is not significantly different from


@dataclass(frozen=True)
class Section:
    """One table: a dataset and a norm, a column per attack."""

    dataset: str
    norm: str | None
    attacks: tuple[str, ...]  # the worst case excluded, in run order
    rows: tuple[Row, ...]
    ranked: bool = False  # a worst-case cell of the section has a rank: show the rank column
    judged: bool = False  # a worst-case cell of the section has a verdict: show the verdict column

    @property
    def title(self) -> str:
        return f"{self.dataset}, {NORM_TITLES.get(self.norm, self.norm)}"


@dataclass(frozen=True)
class Table:
    """A track's own leaderboard table: display text per cell, and per cell the number to sort by (None for text)."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    values: tuple[tuple[float | None, ...], ...]
    note: str = ""

    def markdown(self) -> str:
        table = markdown_table(self.rows, self.headers)
        return f"## {markdown_text(self.title)}\n\n{table}\n" + (f"\n{markdown_text(self.note)}\n" if self.note else "")


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, html_entities: bool = True) -> str:
    """A GitHub markdown table, every header and cell escaped (``markdown_cell``), so each row keeps its columns."""
    escaped = [[markdown_cell(c, html_entities=html_entities) for c in row] for row in rows]
    return tabulate(escaped, headers=[markdown_cell(h, html_entities=html_entities) for h in headers], tablefmt="github", disable_numparse=True)


def tables_markdown(tables: Sequence[Table], *, title: str = "Leaderboard") -> str:
    """A leaderboard page in markdown from a track's own tables (the default ``Track.markdown``)."""
    return page_markdown(title, tables)


def page_markdown(
    title: str,
    tables: Sequence[Table],
    *,
    summary: Sequence[str] = (),
    flags: Mapping[str, str] | None = None,
    failed: Sequence[tuple[str, str]] = (),
    footer: str = "",
) -> str:
    """A track's page in markdown: the title, sentences a reader can quote, its tables, the legend of the flags its cells
    carry (flag -> explanation), the failed jobs (label, error), a closing line."""
    if not tables and not summary:
        return f"# {title}\n\nNo results yet.\n"
    lines = [f"# {title}", ""]
    if summary:
        lines += [*(markdown_text(f"- {line}") for line in summary), ""]
    lines += [table.markdown() for table in tables]
    if flags:
        lines += ["## Flags", "", *(f"- `{flag}`: {markdown_text(text)}" for flag, text in flags.items()), ""]
    if failed:
        lines += ["## Failed jobs", "", *(markdown_text(f"- {label}: {error}") for label, error in failed), ""]
    if footer:
        lines.append(footer)
    return "\n".join(lines) + "\n"


def row_id(cell: Mapping[str, Any]) -> str:
    """'small-cnn / pgd-at': a leaderboard row (model and defense) as ranks name it in ``tied_with``."""
    return f"{cell['model']} / {cell['defense']}"


def row_key(cell: Mapping[str, Any]) -> tuple:
    return tuple(cell.get(k) for k in ROW_FIELDS)


def row_label(cell: Mapping[str, Any]) -> str:
    """'small-cnn / none / pgd / digits Linf eps 0.1': a cell named for people."""
    eps = cell.get("eps")
    where = f"{cell.get('dataset')} {NORM_TITLES.get(cell.get('norm'), cell.get('norm') or '')}".strip()
    return f"{cell.get('model')} / {cell.get('defense')} / {cell.get('attack')} / {where}" + (f" eps {eps:g}" if eps is not None else "")


def _ranks(rows: Sequence[Row], *, worst_case: str) -> dict[int, str]:
    """Row index -> '2 ab', per eps, from the worst-case cells' ``rank`` and ``tied_with``; letters never repeat across eps."""
    by_eps: dict[Any, list[tuple[int, Mapping[str, Any]]]] = {}
    for i, row in enumerate(rows):
        worst = row.by_attack.get(worst_case)
        if worst is not None and worst.get("rank") is not None:
            by_eps.setdefault(row.eps, []).append((i, worst))
    shown = {}
    used = 0
    for members in by_eps.values():
        members.sort(key=lambda m: m[1]["rank"])
        tied = {row_id(cell): cell.get("tied_with") or () for _, cell in members}
        letters = tie_letters(tied, first=used)
        used += len(tie_groups(tied))
        for i, cell in members:
            shown[i] = f"{cell['rank']} {letters[row_id(cell)]}".strip()
    return shown


def sections(cells: Sequence[Mapping[str, Any]], *, worst_case: str) -> list[Section]:
    """Cells grouped into tables (dataset x norm) and rows (model x defense x eps), in the order they come; attack columns in run order."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for cell in cells:
        grouped.setdefault((cell["dataset"], cell["norm"]), []).append(cell)
    out = []
    for (dataset, norm), members in grouped.items():
        rows: dict[tuple, dict[str, Mapping[str, Any]]] = {}
        for cell in members:
            rows.setdefault((cell["model"], cell["defense"], cell["eps"]), {})[cell["attack"]] = cell
        attacks = tuple(cascade_order([a for a in by_attack if a != worst_case] for by_attack in rows.values()))
        built = []
        for (model, defense, eps), by_attack in rows.items():
            source = next((c for c in by_attack.values() if c["clean_accuracy"] is not None), None)
            clean = None if source is None else source["clean_accuracy"]
            flags = tuple(sorted({f for c in by_attack.values() for f in c["flags"]}))
            built.append(Row(model, defense, eps, clean, by_attack, flags, None if source is None else interval(source, "clean_accuracy")))
        ranks = _ranks(built, worst_case=worst_case)
        built = [replace(row, rank=ranks.get(i, "")) for i, row in enumerate(built)]
        worst = [row.by_attack[worst_case] for row in built if worst_case in row.by_attack]
        ranked = any(c.get("rank") is not None for c in worst)
        judged = any(c.get("verdict") for c in worst)
        out.append(Section(dataset, norm, attacks, tuple(built), ranked, judged))
    return out


def used_flags(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every flag the cells carry, their own and their model checks' (``model_flags``)."""
    return sorted({f for c in cells for f in (*c["flags"], *(c.get("model_flags") or ()))})


def model_checks(cells: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    """(model, defense, norm, flags) once per model x defense x norm, from the cells' ``model_flags``: flags measured on the model, not per row."""
    found: dict[tuple, tuple[str, ...]] = {}
    for cell in cells:
        if "model_flags" in cell:
            found.setdefault((cell["model"], cell["defense"], cell["norm"]), tuple(cell["model_flags"]))
    return [(*key, flags) for key, flags in found.items()]


def at_eps(cell: Mapping[str, Any]) -> str:
    """' at eps 0.1', or '' for a cell without an eps."""
    return f" at eps {cell['eps']:g}" if cell.get("eps") is not None else ""


def failed_cells(cells: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in cells if c["status"] == "failed" and c.get("error")]


def cell_title(cell: Mapping[str, Any]) -> str:
    """A cell named for people: its ``label`` (the track's, set when a run is loaded), else model / defense / attack at eps."""
    if cell.get("label"):
        return str(cell["label"])
    return " / ".join(str(cell[k]) for k in ("model", "defense", "attack") if cell.get(k) is not None) + at_eps(cell)


INTERVAL_NOTE = "In brackets, the 95 % Wilson interval of each accuracy, rounded outward to whole percent."
TIE_TEST = "exact McNemar on the same points, p ≥ 0.05"
RANK_NOTE = f"Rank: by worst-case robust accuracy among the rows at the same eps; rows that share a letter are not significantly different ({TIE_TEST})."


def footnote(cells: Sequence[Mapping[str, Any]]) -> str:
    sizes = sorted({c["n"] for c in cells if c["n"] is not None})
    text = (
        f"n = {', '.join(map(str, sizes)) or '?'} test examples per cell; "
        "an example counts as robust only if it is classified correctly both clean and attacked."
    )
    if any(interval(c, f) is not None for c in cells for f in INTERVALS):
        text += " " + INTERVAL_NOTE
    if any(c.get("rank") is not None for c in cells):
        text += " " + RANK_NOTE
    return text


def verdict(cell: Mapping[str, Any] | None) -> str:
    return "" if cell is None else str(cell.get("verdict") or "")


def table_rows(section: Section, *, worst_case: str, dash: str = "–") -> tuple[list[str], list[list[str]]]:
    """Headers and display rows of one section (percentages with their interval as text; invalid and failed cells by their status)."""
    extra = ["rank"] * section.ranked + ["verdict"] * section.judged
    headers = ["model", "defense", "eps", "clean %"] + [f"{a} %" for a in section.attacks] + ["worst case %", *extra, "flags"]
    table = []
    for row in section.rows:
        worst = row.by_attack.get(worst_case)
        table.append(
            [row.model, row.defense, f"{row.eps:g}", accuracy(row.clean_accuracy, row.clean_interval, dash=dash)]
            + [_value(row.by_attack.get(a), dash=dash) for a in section.attacks]
            + [_value(worst, dash=dash)]
            + [row.rank] * section.ranked
            + [verdict(worst)] * section.judged
            + [", ".join(row.flags)]
        )
    return headers, table


def training_recipes(cells: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(defense, how it trained its model) for each training-time defense in the cells, in order (its eps, steps, epochs, ...)."""
    found = {str(c["defense"]): str(c["training"]) for c in cells if c.get("training")}
    return list(found.items())


def robustness_markdown(cells: Sequence[Mapping[str, Any]], *, worst_case: str, explanations: Mapping[str, str]) -> str:
    """One table per dataset and norm: a row per model x defense x eps, a column per attack, then the worst case."""
    if not cells:
        return "# Leaderboard\n\nNo results yet.\n"
    track = cells[0]["track"]
    lines = [f"# Leaderboard: {markdown_text(track)} track", ""]
    for section in sections(cells, worst_case=worst_case):
        headers, table = table_rows(section, worst_case=worst_case)
        lines += [
            f"## {markdown_text(section.title)} (robust accuracy, %)",
            "",
            markdown_table(table, headers),
            "",
        ]
    if any((c.get("metrics") or {}).get("cascade") for c in cells):
        lines += [
            "Attacks run as a cascade, left to right: each ran only on the points every attack to its left left robust,",
            "so each column is the robust accuracy after that attack and all before it; the worst case is per example.",
            "",
        ]
    recipes = training_recipes(cells)
    if recipes:
        lines += ["Training-time defenses were trained here with: " + "; ".join(f"**{markdown_text(d)}**: {markdown_text(r)}" for d, r in recipes) + ".", ""]
    averaged = [c for c in cells if "transform_averaged_accuracy" in (c.get("metrics") or {}) and c["status"] == "ok"]
    if averaged:
        rows = [[c["model"], c["defense"], c["attack"], NORM_TITLES.get(c["norm"], c["norm"]), f"{c['eps']:g}", _value(c),
                 percent(c["metrics"]["transform_averaged_accuracy"])] for c in averaged]  # fmt: skip
        headers = ["model", "defense", "attack", "norm", "eps", "robust %", "transform-averaged %"]
        lines += ["## Transform-averaged accuracy (EOT)", "", markdown_table(rows, headers), ""]
    checked = [(model, defense, NORM_TITLES.get(norm, norm), ", ".join(flags) or "none") for model, defense, norm, flags in model_checks(cells)]
    if any(flags != "none" for *_, flags in checked):
        headers = ["model", "defense", "norm", "flags"]
        lines += ["## Model checks (once per model x defense x norm, not repeated on its rows)", ""]
        lines += [markdown_table(checked, headers), ""]
    used = used_flags(cells)
    if used:
        lines += ["## Flags", ""] + [f"- `{f}`: {markdown_text(explanations.get(f, ''))}" for f in used] + [""]
    failed = failed_cells(cells)
    if failed:
        lines += ["## Failed jobs", ""]
        lines += [f"- {markdown_text(cell_title(c))}: {markdown_text(c['error'])}" for c in failed]
        lines.append("")
    lines.append(markdown_text(footnote(cells)))
    return "\n".join(lines) + "\n"
