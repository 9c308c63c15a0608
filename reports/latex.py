"""The leaderboard as LaTeX (booktabs tables that fit the text width), ready for a project report.

Needs ``\\usepackage{booktabs}``, ``\\usepackage{graphicx}`` and
``\\usepackage{array}``; the plots themselves are saved as PDF beside the
``.tex`` file. A robustness table keeps short headers (the attack's name; the
caption says the numbers are robust accuracy in %), accuracies carry their
95 % Wilson interval in small type, ``58.3 {\\scriptsize [53--63]}``, a
verdict wraps in a narrow paragraph column, and flags are short codes
(``F1``) explained in a legend under the table and in full in the Flags list.
A table still wider than the text (many attacks, long model names) is scaled
down to ``\\linewidth``, never more; a narrower one keeps its size. Every text
is escaped (``reports.escaping.latex``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reports.escaping import latex as escape
from reports.leaderboard import Section, Table, cell_title, failed_cells, footnote, sections, table_rows, used_flags

__all__ = ["escape", "flag_codes", "leaderboard_latex", "tabular"]

PACKAGES = ("booktabs", "graphicx", "array")
MACROS = (  # defined once at the top of the file, unless the document defines them itself
    "\\providecommand{\\fbaccuracy}[2]{\\begin{tabular}[t]{@{}r@{}}#1\\\\[-2pt]{\\scriptsize #2}\\end{tabular}}",
)
VERDICT_COLUMN = r">{\raggedright\arraybackslash}p{6.5em}"
_SHORT = {"clean %": "clean", "worst case %": "worst"}  # the caption says every number is a percentage
_ACCURACY = re.compile(r"^(\d+\.\d) (\[\d+--\d+\])$")  # '58.6 [53--64]' as table_rows writes it with dash='--'


def flag_codes(flags: Sequence[str]) -> dict[str, str]:
    """A short code per flag, in order: {'not-converged': 'F1', ...}."""
    return {flag: f"F{i}" for i, flag in enumerate(flags, start=1)}


def _fit(tabular_text: str) -> str:
    """The tabular scaled down to the line width when it is wider, kept as it is otherwise."""
    return "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n" + tabular_text + "}"


def tabular(headers: Sequence[str], rows: Sequence[Sequence[str]], columns: str) -> str:
    """A booktabs tabular of already escaped ``headers`` and ``rows``, with narrow column gaps, fit to the line width (see ``_fit``)."""
    lines = ["\\setlength{\\tabcolsep}{3pt}", f"\\begin{{tabular}}{{{columns}}}", "\\toprule", " & ".join(headers) + " \\\\", "\\midrule"]
    lines += [" & ".join(row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return _fit("\n".join(lines))


def _accuracy(text: str) -> str:
    """An escaped cell; an accuracy as ``\\fbaccuracy{58.6}{[53--64]}``, its interval under it in small type."""
    found = _ACCURACY.match(text)
    return f"\\fbaccuracy{{{found.group(1)}}}{{{found.group(2)}}}" if found else escape(text)


def _section_table(section: Section, *, worst_case: str, codes: Mapping[str, str]) -> tuple[str, list[str]]:
    """The tabular of one robustness section and the flags its rows carry (as codes in its last column)."""
    headers, table = table_rows(section, worst_case=worst_case, dash="--")
    short = [_SHORT.get(h, h.removesuffix(" %")) for h in headers]
    numbers = 3 + len(section.attacks)  # eps, clean, the attacks and the worst case
    columns = "ll" + "r" * numbers + "r" * section.ranked + (VERDICT_COLUMN if section.judged else "") + "l"
    shown = sorted({f for row in section.rows for f in row.flags}, key=list(codes).index)
    rows = []
    for row, cells in zip(section.rows, table, strict=True):
        values = [escape(c) for c in cells[:2]] + [_accuracy(c) for c in cells[2:-1]]
        rows.append([*values, ",".join(codes[f] for f in row.flags)])
    return tabular([escape(h) for h in short], rows, columns), shown


def _legend(flags: Sequence[str], codes: Mapping[str, str]) -> list[str]:
    if not flags:
        return []
    names = "; ".join(f"{codes[f]} {escape(f)}" for f in flags)
    return ["\\par\\smallskip", f"{{\\footnotesize Flags: {names} (explained under Flags).\\par}}"]


def _own_table(own: Table) -> list[str]:
    numeric = [any(v[i] is not None for v in own.values) for i in range(len(own.headers))]
    columns = "".join("r" if n else "l" for n in numeric)
    rows = [[escape(c) for c in row] for row in own.rows]
    return [
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\caption{{{escape(own.title)}. {escape(own.note)}}}",
        f"\\label{{tab:{_label(own.title)}}}",
        tabular([escape(h) for h in own.headers], rows, columns),
        "\\end{table}",
        "",
    ]


def _robustness_tables(cells: Sequence[Mapping[str, Any]], *, worst_case: str, codes: Mapping[str, str]) -> list[str]:
    lines = []
    for section in sections(cells, worst_case=worst_case):
        body, shown = _section_table(section, worst_case=worst_case, codes=codes)
        lines += [
            "\\begin{table}[ht]",
            "\\centering",
            "\\small",
            f"\\caption{{{escape(section.title)}: robust accuracy (\\%). {escape(footnote(cells))}}}",
            f"\\label{{tab:robustness-{_label(section.dataset)}-{_label(str(section.norm))}}}",
            body,
            *_legend(shown, codes),
            "\\end{table}",
            "",
        ]
    return lines


def leaderboard_latex(
    cells: Sequence[Mapping[str, Any]],
    *,
    worst_case: str,
    explanations: Mapping[str, str],
    figures: Sequence[tuple[str, str]] = (),
    tables: Sequence[Table] | None = None,
) -> str:
    """A table per dataset and norm (or the track's own ``tables``), then a figure per ``(caption, pdf path)``, then the flags and failed jobs."""
    if not cells:
        return "% frontier-bench leaderboard: no results yet\n"
    track = cells[0]["track"]
    lines = [
        f"% frontier-bench leaderboard: {track} track (generated by `bench report --format latex`)",
        "% needs " + " ".join(f"\\usepackage{{{p}}}" for p in PACKAGES),
        *MACROS,
        "",
    ]
    used = used_flags(cells)
    codes = flag_codes(used)
    for own in tables or ():
        lines += _own_table(own)
    if tables is None:
        lines += _robustness_tables(cells, worst_case=worst_case, codes=codes)
    for caption, path in figures:
        lines += [
            "\\begin{figure}[ht]",
            "\\centering",
            f"\\includegraphics[width=0.8\\linewidth]{{{path}}}",
            f"\\caption{{{escape(caption)}.{' Worst case over attacks; eps = 0 is the clean accuracy.' if tables is None else ''}}}",
            "\\end{figure}",
            "",
        ]
    if used:
        lines += ["\\paragraph{Flags.}", "\\begin{description}"]
        lines += [f"  \\item[{codes[flag]} {escape(flag)}] {escape(explanations.get(flag, ''))}" for flag in used]
        lines += ["\\end{description}", ""]
    failed = failed_cells(cells)
    if failed:
        lines += ["\\paragraph{Failed jobs.}", "\\begin{itemize}"]
        lines += [f"  \\item {escape(cell_title(c))}: {escape(c['error'])}" for c in failed]
        lines += ["\\end{itemize}", ""]
    return "\n".join(lines)


def _label(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())
