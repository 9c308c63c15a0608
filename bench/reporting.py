"""Glue between a run folder's store and the renderers in ``reports/``.

Everything here reads the store and hands plain data (cells, provenance,
stored examples) to a renderer; nothing is measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench
from bench.errors import UserError
from bench.store import Record, Store, record_dict

log = logging.getLogger(__name__)

FORMATS = ("md", "json", "csv", "latex", "html")
WORST_CASE = "worst-case"  # the cell name tracks give the per-example worst case (see bench.tracks.adversarial)


@dataclass(frozen=True, eq=False)
class RunData:
    """What a run folder holds, read once: the track, its records and cells, metadata and artifacts."""

    run_dir: Path
    track: Any  # bench.tracks.Track
    records: list[Record]
    cells: list[dict[str, Any]]
    meta: Mapping[str, Any]
    artifacts: Mapping[str, Mapping[str, bytes]]


def load_run(run_dir: Path) -> RunData:
    from bench.tracks import TRACKS

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder '{run_dir}' does not exist")
    with Store(run_dir / "results.db", create=False, read_only=True) as store:
        meta = store.all_meta()
        track_name = meta.get("track")
        if track_name is None:
            raise UserError(f"'{run_dir}' holds no run yet")
        if track_name not in TRACKS:
            raise UserError(f"'{run_dir}' holds a run of track '{track_name}', which is not installed here")
        track = TRACKS.create(track_name)
        records = store.records()
        cells = track.cells(records, store.outcomes())
        for cell in cells:  # how the track names a cell, for lists that name cells (failed jobs)
            cell.setdefault("label", track.cell_label(cell))
        artifacts = store.artifacts()
    return RunData(run_dir, track, records, cells, meta, artifacts)


def provenance(run: RunData) -> dict[str, Any]:
    """The page's footer: versions, device, seed, dataset, dates and the spec, all as stored by the run."""
    spec_text = run.meta.get("spec")
    spec: dict[str, Any] = {}
    if isinstance(spec_text, str):
        try:
            spec = json.loads(spec_text)
        except json.JSONDecodeError:
            spec = {}
    return {
        "track": run.meta.get("track"),
        "dataset": spec.get("dataset"),
        "seed": spec.get("seed"),
        "device": run.meta.get("device"),
        "versions": run.meta.get("versions") or {},
        "started_at": run.meta.get("started_at"),
        "finished_at": run.meta.get("finished_at"),
        "run": str(run.run_dir),
        "spec": json.dumps(spec, indent=2, sort_keys=True) if spec else spec_text,
    }


def json_provenance(run: RunData) -> dict[str, Any]:
    """What ``leaderboard.json`` says about where its numbers come from, all as stored by the run.

    ``frontier_bench_version`` is the version that ran the jobs (the stored
    ``versions``), ``rendered_by`` the one that wrote this file; ``spec_sha256``
    is the sha256 of the stored canonical spec text (UTF-8).
    """
    spec_text = run.meta.get("spec")
    shown = provenance(run)
    versions = run.meta.get("versions") or {}
    return {
        "track": shown["track"],
        "frontier_bench_version": versions.get("frontier-bench"),
        "rendered_by": f"frontier-bench {bench.__version__}",
        "seed": shown["seed"],
        "dataset": shown["dataset"],
        "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest() if isinstance(spec_text, str) else None,
        "versions": versions,
        "device": shown["device"],
        "started_at": shown["started_at"],
        "finished_at": shown["finished_at"],
        "jobs": len(run.records),
    }


def html_page(run: RunData) -> str:
    from reports.html import leaderboard_html

    rendered = cell_keys(run.cells)
    return leaderboard_html(
        run.cells,
        worst_case=WORST_CASE,
        explanations=run.track.explanations,
        plots=run.track.figures(run.cells),
        gallery=run.track.gallery(run.records, run.artifacts) if _keeps_gallery(run.track) else None,
        classes=run.meta.get("classes") or (),
        provenance=provenance(run),
        checks=[record_dict(r) for r in run.records if r.key not in rendered],
        tables=run.track.tables(run.cells),
        quotes=run.track.summary(run.cells) if run.cells else (),
        plots_title=run.track.plots_title,
        stored_jobs=[r.status for r in run.records],
    )


def _keeps_gallery(track: Any) -> bool:
    """Whether the track renders a gallery (overrides ``Track.gallery``); a track that keeps none gets no gallery section."""
    from bench.tracks import Track

    return type(track).gallery is not Track.gallery


def cell_keys(cells: list[dict[str, Any]]) -> set[str]:
    """The job keys the cells are rendered from (a cell of several jobs lists them in ``keys``)."""
    return {k for c in cells for k in ([c["key"]] if c.get("key") else c.get("keys") or ())}


def latex(run: RunData, *, figures_dir: Path) -> str:
    """The LaTeX tables and figure blocks; the figures are saved as PDF in ``figures_dir`` (paths relative to the run folder)."""
    from reports.latex import leaderboard_latex
    from reports.plots import save_pdf

    figures = []
    for plot in run.track.figures(run.cells):
        path = save_pdf(plot, figures_dir)
        try:
            shown = path.relative_to(run.run_dir).as_posix()
        except ValueError:
            shown = path.as_posix()
        figures.append((plot.title, shown))
    return leaderboard_latex(run.cells, worst_case=WORST_CASE, explanations=run.track.explanations, figures=figures, tables=run.track.tables(run.cells))


def render(run: RunData, fmt: str) -> str:
    """The leaderboard in one format (``latex`` also writes the figures as PDF and ``leaderboard.tex`` into the run folder)."""
    from reports.csv_export import to_csv
    from reports.json_export import to_json

    if fmt == "json":
        return to_json(run.cells, provenance=json_provenance(run)) + "\n"
    if fmt == "csv":
        return to_csv(run.cells)
    if fmt == "html":
        return html_page(run)
    if fmt == "latex":
        text = latex(run, figures_dir=run.run_dir / "figures")
        (run.run_dir / "leaderboard.tex").write_text(text)
        return text
    if fmt == "md":
        return run.track.markdown(run.cells)
    raise UserError(f"unknown report format '{fmt}'; formats: {', '.join(FORMATS)}")


def write_reports(run_dir: Path) -> str:
    """Write leaderboard.md, leaderboard.json, leaderboard.html (and the track's PNG images) into the run folder; return the markdown."""
    run = load_run(run_dir)
    text = render(run, "md")
    (run.run_dir / "leaderboard.md").write_text(text)
    (run.run_dir / "leaderboard.json").write_text(render(run, "json"))
    (run.run_dir / "leaderboard.html").write_text(render(run, "html"))
    if run.cells:
        from reports.plots import save_png

        for plot in run.track.images(run.cells):
            save_png(plot, run.run_dir)
    return text
