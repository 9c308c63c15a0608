"""``leaderboard.html``: one self-contained page (inline CSS and JS, pictures embedded; no network needed to view it).

Sortable tables of clean, per-attack and worst-case accuracy (each with its
95 % Wilson interval in a smaller muted span and, exact, in the cell's
tooltip; columns sort on the accuracy itself, ``data-value``), the worst
case's rank and verdict where the track set them (ties and the verdict's
details in the tooltip), flags as badges with their one-line explanation,
the tracks' plots (robustness curves), the gallery of adversarial examples and the run's provenance at the foot. Every
stored job appears as one table cell carrying its key (``data-key``), and the header counts the stored jobs as ``bench run``
counts them. Every text is HTML-escaped (a model named ``<script>`` shows as text); the tables fit a 1,280 px window
without scrolling sideways (``reports.html_assets``).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from reports.gallery import GalleryGroup, gallery_html
from reports.html_assets import CSS, JS
from reports.leaderboard import (
    NORM_TITLES,
    TIE_TEST,
    Row,
    Table,
    bracket,
    cell_title,
    failed_cells,
    footnote,
    interval,
    percent,
    sections,
    training_recipes,
    used_flags,
    verdict,
)
from reports.plots import Plot, slug, to_svg

_STATUS_ORDER = {"ok": 0, "invalid": 1, "failed": 2}


def _badge(flag: str, explanations: Mapping[str, str], *, css: str = "") -> str:
    explanation = explanations.get(flag, "")
    return f'<span class="badge{css}" title="{html.escape(explanation)}">{html.escape(flag)}</span>'


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _interval_text(found: tuple[float, float] | None) -> str:
    return "" if found is None else f"95 % interval {100 * found[0]:.1f}–{100 * found[1]:.1f} %"


def _accuracy_html(value: float | None, found: tuple[float, float] | None) -> str:
    """'58.3 <span class="ci">[53–63]</span>'."""
    if value is None:
        return ""
    return percent(value) + (f' <span class="ci">{bracket(found)}</span>' if found is not None else "")


def _cell_html(cell: Mapping[str, Any] | None, *, explanations: Mapping[str, str], worst: bool = False) -> str:
    css = "num worst" if worst else "num"
    if cell is None:
        return f'<td class="{css}" data-value=""></td>'
    key = f' data-key="{html.escape(cell["key"])}"' if cell.get("key") else ""
    found = interval(cell, "robust_accuracy") if cell["status"] == "ok" else None
    details = [f"{cell['attack']} at eps {cell['eps']:g}" if cell.get("eps") is not None else str(cell["attack"])]
    if found is not None:
        details.append(_interval_text(found))
    if cell.get("n") is not None:
        details.append(f"n = {cell['n']}")
    if cell.get("seconds") is not None:
        details.append(f"{cell['seconds']:.2f} s")
    if cell.get("error"):
        details.append(str(cell["error"]))
    title = html.escape("; ".join(details))
    if cell["status"] == "ok":
        value = cell["robust_accuracy"]
        return f'<td class="{css}" data-value="{_number(value)}"{key} title="{title}">{_accuracy_html(value, found)}</td>'
    status = cell["status"]
    reason = "; ".join(explanations.get(f, f) for f in cell["flags"]) or cell.get("error") or status
    badge = f'<span class="badge status-{html.escape(status)}" title="{html.escape(reason)}">{html.escape(status)}</span>'
    return f'<td class="{css}" data-value=""{key} title="{title}">{badge}</td>'


def _clean_html(row: Row) -> str:
    title = f' title="{html.escape(_interval_text(row.clean_interval))}"' if row.clean_interval is not None else ""
    return f'<td class="num" data-value="{_number(row.clean_accuracy)}"{title}>{_accuracy_html(row.clean_accuracy, row.clean_interval)}</td>'


def _rank_html(row: Row, worst: Mapping[str, Any] | None) -> str:
    """The worst case's rank at this eps ('2 ab'), sorting on the rank; the rows it ties with in the tooltip."""
    if worst is None or worst.get("rank") is None:
        return '<td class="num" data-value=""></td>'
    where = f" at eps {row.eps:g}" if row.eps is not None else ""
    tied = worst.get("tied_with") or []
    details = [
        f"rank {worst['rank']} of {worst.get('rank_of', '?')}{where} by worst-case robust accuracy",
        f"not significantly different ({TIE_TEST}) from: {', '.join(tied)}" if tied else f"significantly different ({TIE_TEST}) from every other row",
    ]
    number, _, letters = row.rank.partition(" ")
    shown = html.escape(number) + (f' <span class="ci">{html.escape(letters)}</span>' if letters else "")
    return f'<td class="num" data-value="{int(worst["rank"])}" title="{html.escape("; ".join(details))}">{shown}</td>'


def _verdict_html(worst: Mapping[str, Any] | None) -> str:
    details = (worst or {}).get("verdict_details") or []
    title = f' title="{html.escape("; ".join(map(str, details)))}"' if details else ""
    return f'<td class="judged"{title}>{html.escape(verdict(worst))}</td>'


def _tables(cells: Sequence[Mapping[str, Any]], *, worst_case: str, explanations: Mapping[str, str]) -> str:
    parts = []
    for section in sections(cells, worst_case=worst_case):
        columns = [("model", "text"), ("defense", "text"), ("eps", "number"), ("clean %", "number")]
        columns += [(f"{a} %", "number") for a in section.attacks] + [("worst case %", "number")]
        columns += [("rank", "number")] * section.ranked + [("verdict", "text")] * section.judged + [("flags", "text")]
        head = "".join(
            f'<th scope="col" data-type="{kind}" class="{"num" if kind == "number" else "text"}" aria-sort="none">'
            f'<button type="button">{html.escape(name)}</button></th>'
            for name, kind in columns
        )
        body = []
        for row in section.rows:
            flags = "".join(_badge(f, explanations) for f in row.flags)
            worst = row.by_attack.get(worst_case)
            body.append(
                "<tr>"
                + f'<td class="label">{html.escape(row.model)}</td><td class="label">{html.escape(row.defense)}</td>'
                + f'<td class="num" data-value="{_number(row.eps)}">{"" if row.eps is None else f"{row.eps:g}"}</td>'
                + _clean_html(row)
                + "".join(_cell_html(row.by_attack.get(a), explanations=explanations) for a in section.attacks)
                + _cell_html(worst, explanations=explanations, worst=True)
                + (_rank_html(row, worst) if section.ranked else "")
                + (_verdict_html(worst) if section.judged else "")
                + f'<td class="flags">{flags}</td></tr>'
            )
        table_id = f"table-{slug(section.dataset)}-{slug(str(section.norm))}"
        parts.append(
            f"<h3>{html.escape(section.title)} (robust accuracy, %)</h3>"
            f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        )
    return "\n".join(parts)


def _quotes(lines: Sequence[str]) -> str:
    return f'<ul class="summary">{"".join(f"<li>{html.escape(line)}</li>" for line in lines)}</ul>\n' if lines else ""


def _own_tables(tables: Sequence[Table]) -> str:
    """A track's own tables, sortable like the robustness ones (numbers sort by value)."""
    parts = []
    for table in tables:
        numeric = [any(v[i] is not None for v in table.values) for i in range(len(table.headers))]
        head = "".join(
            f'<th scope="col" data-type="{"number" if n else "text"}" class="{"num" if n else "text"}" aria-sort="none">'
            f'<button type="button">{html.escape(h)}</button></th>'
            for h, n in zip(table.headers, numeric, strict=True)
        )
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num" data-value="{_number(v)}">{html.escape(t)}</td>' if n else f"<td>{html.escape(t)}</td>"
                for t, v, n in zip(row, values, numeric, strict=True)
            )
            + "</tr>"
            for row, values in zip(table.rows, table.values, strict=True)
        )
        note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
        parts.append(
            f"<h3>{html.escape(table.title)}</h3>"
            f'<table class="sortable" id="table-{slug(table.title)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'
        )
    return "\n".join(parts)


def _flags_and_failures(cells: Sequence[Mapping[str, Any]], *, explanations: Mapping[str, str]) -> str:
    parts = []
    used = used_flags(cells)
    if used:
        items = "".join(f"<dt>{_badge(f, explanations)}</dt><dd>{html.escape(explanations.get(f, ''))}</dd>" for f in used)
        parts.append(f'<h3>Flags</h3><dl class="flags">{items}</dl>')
    failed = failed_cells(cells)
    if failed:
        items = "".join(f"<li>{html.escape(cell_title(c))}: <code>{html.escape(c['error'])}</code></li>" for c in failed)
        parts.append(f"<h3>Failed jobs</h3><ul>{items}</ul>")
    return "\n".join(parts)


def _checks(jobs: Sequence[Mapping[str, Any]], *, explanations: Mapping[str, str]) -> str:
    """The jobs behind the rows: per-model sanity checks and certification, with their flags and measurements."""
    if not jobs:
        return ""
    rows = []
    for job in jobs:
        measured = ", ".join(f"{k} {v:.3g}" for k, v in (job.get("metrics") or {}).items() if isinstance(v, float | int) and not isinstance(v, bool))
        flags = "".join(_badge(f, explanations) for f in job.get("flags") or ())
        cells = [job["model"], job["defense"], job["attack"], NORM_TITLES.get(job.get("norm"), job.get("norm") or ""), job["status"]]
        key = html.escape(job["key"])
        columns = "".join(f'<td data-key="{key}">{html.escape(str(c))}</td>' if i == 2 else f"<td>{html.escape(str(c))}</td>" for i, c in enumerate(cells))
        rows.append(f"<tr>{columns}<td>{flags}</td><td>{html.escape(measured)}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("model", "defense", "job", "norm", "status", "flags", "measured"))
    return f'<h3>Checks</h3><table class="checks"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _curves(plots: Sequence[Plot]) -> str:
    if not plots:
        return '<p class="muted">No plots for this run.</p>'
    figures = []
    for plot in plots:
        data = base64.b64encode(to_svg(plot).encode()).decode("ascii")
        figures.append(
            f'<figure id="plot-{html.escape(plot.name)}"><img class="plot" src="data:image/svg+xml;base64,{data}" alt="{html.escape(plot.title)}">'
            f"<figcaption>{html.escape(plot.title)}</figcaption></figure>"
        )
    return f'<div class="curves">{"".join(figures)}</div>'


def _provenance(provenance: Mapping[str, Any]) -> str:
    rows = []
    versions = provenance.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    for key in ("track", "dataset", "seed", "device", "started_at", "finished_at", "run"):
        if provenance.get(key) is not None:
            rows.append((key.replace("_", " "), str(provenance[key])))
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    spec = provenance.get("spec")
    spec_html = f"<details><summary>spec (canonical)</summary><pre>{html.escape(spec)}</pre></details>" if spec else ""
    return f"<dl>{items}</dl>{spec_html}"


def _job_count(cells: Sequence[Mapping[str, Any]], checks: Sequence[Mapping[str, Any]], stored_jobs: Sequence[str] | None) -> str:
    """'14 jobs (13 ok, 1 failed)': the stored jobs by status, or, without them, the distinct jobs behind the cells and the checks."""
    if stored_jobs is None:
        keys = {k for c in cells for k in ([c["key"]] if c.get("key") else c.get("keys") or ())} | {c["key"] for c in checks if c.get("key")}
        return f"{len(keys)} jobs"
    statuses = sorted(set(stored_jobs), key=lambda s: (_STATUS_ORDER.get(s, len(_STATUS_ORDER)), s))
    breakdown = ", ".join(f"{list(stored_jobs).count(s)} {s}" for s in statuses)
    return f"{len(stored_jobs)} jobs" + (f" ({breakdown})" if breakdown else "")


def leaderboard_html(
    cells: Sequence[Mapping[str, Any]],
    *,
    worst_case: str,
    explanations: Mapping[str, str],
    plots: Sequence[Plot] = (),
    gallery: Sequence[GalleryGroup] | None = (),  # None: the track keeps no gallery (no section)
    classes: Sequence[str] = (),
    provenance: Mapping[str, Any] | None = None,
    checks: Sequence[Mapping[str, Any]] = (),
    tables: Sequence[Table] | None = None,
    quotes: Sequence[str] = (),
    plots_title: str = "Robustness curves",
    stored_jobs: Sequence[str] | None = None,
) -> str:
    """The whole page as one string; ``checks`` are stored jobs that are not leaderboard cells (sanity checks, certification).

    ``quotes``: the track's quotable sentences (``Track.summary``), listed above the tables.
    ``stored_jobs``: the status of every job in the store, which the header counts as ``bench run`` does
    (its ``N jobs: ...`` line); without it, the jobs the cells were rendered from and ``checks``.
    """
    provenance = provenance or {}
    track = cells[0]["track"] if cells else provenance.get("track", "")
    title = f"Leaderboard: {track} track" if track else "Leaderboard"
    summary = _job_count(cells, checks, stored_jobs) + (f", finished {provenance['finished_at']}" if provenance.get("finished_at") else "")
    if cells:
        if tables is not None:
            leaderboard = _own_tables(tables) + '\n<p class="note">Click a column header to sort.</p>\n'
        else:
            leaderboard = _tables(cells, worst_case=worst_case, explanations=explanations)
            leaderboard += f'\n<p class="note">{html.escape(footnote(cells))} Click a column header to sort.</p>\n'
            recipes = "; ".join(f"<b>{html.escape(d)}</b>: {html.escape(r)}" for d, r in training_recipes(cells))
            leaderboard += f'<p class="note">Training-time defenses were trained here with: {recipes}.</p>\n' if recipes else ""
        leaderboard = _quotes(quotes) + leaderboard + _flags_and_failures(cells, explanations=explanations)
        leaderboard += _checks(checks, explanations=explanations)
    else:
        leaderboard = '<p class="muted">No results yet.</p>'
    gallery_link = "" if gallery is None else '<a href="#gallery">Gallery</a>'
    gallery_section = (
        ""
        if gallery is None
        else f"""<section id="gallery">
<h2>Gallery</h2>
<p class="note">Per model and attack, a few test inputs: the clean input, its adversarial version and the perturbation, magnified to be visible.</p>
<div class="gallery">{gallery_html(gallery, classes=classes)}</div>
</section>"""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="frontier-bench">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p class="muted">{html.escape(summary)}</p>
<nav><a href="#leaderboard">Leaderboard</a><a href="#curves">{html.escape(plots_title)}</a>\
{gallery_link}<a href="#provenance">Provenance</a></nav>
</header>
<main>
<section id="leaderboard">
<h2>Leaderboard</h2>
{leaderboard}
</section>
<section id="curves">
<h2>{html.escape(plots_title)}</h2>
{_curves(plots)}
</section>
{gallery_section}
</main>
<footer id="provenance">
<h2>Provenance</h2>
{_provenance(provenance)}
</footer>
<script>{JS}</script>
</body>
</html>
"""
