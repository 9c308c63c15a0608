"""Leaderboard tables from cells (one dict per leaderboard cell): markdown, JSON, CSV.

The grouping into sections and rows (``sections``) is shared with the LaTeX
and HTML renderers.

Numbers stay numbers in JSON and CSV; percentages and eps formats are
display only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

JSON_FIELDS = (
    "track",
    "model",
    "defense",
    "attack",
    "dataset",
    "norm",
    "eps",
    "n",
    "clean_accuracy",
    "robust_accuracy",
    "flags",
    "seconds",
    "status",
    "error",
    "metrics",
)
NORM_TITLES = {"linf": "Linf", "l2": "L2"}


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _value(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return ""
    if cell["status"] == "ok":
        return percent(cell["robust_accuracy"])
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


@dataclass(frozen=True)
class Section:
    """One table: a dataset and a norm, a column per attack."""

    dataset: str
    norm: str | None
    attacks: tuple[str, ...]  # the worst case excluded
    rows: tuple[Row, ...]

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
        table = tabulate([list(r) for r in self.rows], headers=list(self.headers), tablefmt="github", disable_numparse=True)
        return f"## {self.title}\n\n{table}\n" + (f"\n{self.note}\n" if self.note else "")


def tables_markdown(tables: Sequence[Table], *, title: str = "Leaderboard") -> str:
    """A leaderboard page in markdown from a track's own tables (the default ``Track.markdown``)."""
    if not tables:
        return f"# {title}\n\nNo results yet.\n"
    return "\n".join([f"# {title}", "", *(table.markdown() for table in tables)]) + "\n"


def row_key(cell: Mapping[str, Any]) -> tuple:
    return tuple(cell.get(k) for k in ROW_FIELDS)


def row_label(cell: Mapping[str, Any]) -> str:
    """'small-cnn / none / pgd / digits Linf eps 0.1': a cell named for people."""
    eps = cell.get("eps")
    where = f"{cell.get('dataset')} {NORM_TITLES.get(cell.get('norm'), cell.get('norm') or '')}".strip()
    return f"{cell.get('model')} / {cell.get('defense')} / {cell.get('attack')} / {where}" + (f" eps {eps:g}" if eps is not None else "")


def sections(cells: Sequence[Mapping[str, Any]], *, worst_case: str) -> list[Section]:
    """Cells grouped into tables (dataset x norm) and rows (model x defense x eps), in the order they come."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for cell in cells:
        grouped.setdefault((cell["dataset"], cell["norm"]), []).append(cell)
    out = []
    for (dataset, norm), members in grouped.items():
        attacks = tuple(dict.fromkeys(c["attack"] for c in members if c["attack"] != worst_case))
        rows: dict[tuple, dict[str, Mapping[str, Any]]] = {}
        for cell in members:
            rows.setdefault((cell["model"], cell["defense"], cell["eps"]), {})[cell["attack"]] = cell
        built = []
        for (model, defense, eps), by_attack in rows.items():
            clean = next((c["clean_accuracy"] for c in by_attack.values() if c["clean_accuracy"] is not None), None)
            flags = tuple(sorted({f for c in by_attack.values() for f in c["flags"]}))
            built.append(Row(model, defense, eps, clean, by_attack, flags))
        out.append(Section(dataset, norm, attacks, tuple(built)))
    return out


def used_flags(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({f for c in cells for f in c["flags"]})


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


def footnote(cells: Sequence[Mapping[str, Any]]) -> str:
    sizes = sorted({c["n"] for c in cells if c["n"] is not None})
    return (
        f"n = {', '.join(map(str, sizes)) or '?'} test examples per cell; "
        "an example counts as robust only if it is classified correctly both clean and attacked."
    )


def table_rows(section: Section, *, worst_case: str) -> tuple[list[str], list[list[str]]]:
    """Headers and display rows of one section (percentages as text; invalid and failed cells by their status)."""
    headers = ["model", "defense", "eps", "clean %"] + [f"{a} %" for a in section.attacks] + ["worst case %", "flags"]
    table = [
        [row.model, row.defense, f"{row.eps:g}", percent(row.clean_accuracy)]
        + [_value(row.by_attack.get(a)) for a in section.attacks]
        + [_value(row.by_attack.get(worst_case)), ", ".join(row.flags)]
        for row in section.rows
    ]
    return headers, table


def robustness_markdown(cells: Sequence[Mapping[str, Any]], *, worst_case: str, explanations: Mapping[str, str]) -> str:
    """One table per dataset and norm: a row per model x defense x eps, a column per attack, then the worst case."""
    if not cells:
        return "# Leaderboard\n\nNo results yet.\n"
    track = cells[0]["track"]
    lines = [f"# Leaderboard: {track} track", ""]
    for section in sections(cells, worst_case=worst_case):
        headers, table = table_rows(section, worst_case=worst_case)
        lines += [
            f"## {section.title} (robust accuracy, %)",
            "",
            tabulate(table, headers=headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    if any((c.get("metrics") or {}).get("cascade") for c in cells):
        lines += [
            "Attacks run as a cascade, left to right: each ran only on the points every attack to its left left robust,",
            "so each column is the robust accuracy after that attack and all before it; the worst case is per example.",
            "",
        ]
    averaged = [c for c in cells if "transform_averaged_accuracy" in (c.get("metrics") or {}) and c["status"] == "ok"]
    if averaged:
        rows = [[c["model"], c["defense"], c["attack"], NORM_TITLES.get(c["norm"], c["norm"]), f"{c['eps']:g}", percent(c["robust_accuracy"]),
                 percent(c["metrics"]["transform_averaged_accuracy"])] for c in averaged]  # fmt: skip
        headers = ["model", "defense", "attack", "norm", "eps", "robust %", "transform-averaged %"]
        lines += ["## Transform-averaged accuracy (EOT)", "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    used = used_flags(cells)
    if used:
        lines += ["## Flags", ""] + [f"- `{f}`: {explanations.get(f, '')}" for f in used] + [""]
    failed = failed_cells(cells)
    if failed:
        lines += ["## Failed jobs", ""]
        lines += [f"- {cell_title(c)}: {c['error']}" for c in failed]
        lines.append("")
    lines.append(footnote(cells))
    return "\n".join(lines) + "\n"


_INTERNAL = ("key", "keys", "params")  # cell fields that are bookkeeping, not results


def fields(cells: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """JSON_FIELDS, then any field a track's cells add (the uncertainty track's ``estimator``, ``seeds``), in first-seen order."""
    extra = dict.fromkeys(k for cell in cells for k in cell if k not in JSON_FIELDS and k not in _INTERNAL)
    return (*JSON_FIELDS, *extra)


def to_json(cells: Sequence[Mapping[str, Any]]) -> str:
    names = fields(cells)
    return json.dumps([{k: cell.get(k) for k in names} for cell in cells], indent=2)


def to_csv(cells: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    names = fields(cells)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for cell in cells:
        row = {k: cell.get(k) if not isinstance(cell.get(k), list | dict) or k in ("flags", "metrics") else json.dumps(cell.get(k)) for k in names}
        row["flags"] = ";".join(cell["flags"])
        row["metrics"] = json.dumps(cell.get("metrics") or {}, sort_keys=True)
        writer.writerow(row)
    return buffer.getvalue()
