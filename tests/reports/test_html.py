"""leaderboard.html without a browser: self-contained, every stored job shown and counted, flags explained, plots and gallery embedded."""

from __future__ import annotations

import base64
import re
import shutil
import sqlite3

import numpy as np

from bench.tracks.adversarial.flags import FLAGS
from bench.tracks.adversarial.gallery import Example
from reports.gallery import GalleryGroup, gallery_html, perturbation, shown
from reports.html import leaderboard_html
from tests.reports.test_leaderboard import CELLS, ranked_cells


def job_keys(run_dir) -> set[str]:
    with sqlite3.connect(run_dir / "results.db") as db:
        return {key for (key,) in db.execute("SELECT key FROM jobs")}


def test_bench_run_writes_a_self_contained_page_showing_every_job(finished_run):
    page = (finished_run / "leaderboard.html").read_text()
    assert set(re.findall(r'data-key="([0-9a-f]+)"', page)) == job_keys(finished_run)
    # nothing to fetch: no external address in any src, href or CSS url
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)
    assert "url(" not in page and "@import" not in page
    # two robustness curves (Linf, L2) as SVG, and a gallery for each model x attack (2 x 3), four examples of three pictures each
    plots = re.findall(r'<img class="plot" src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(plots) == 2
    assert all(base64.b64decode(p).lstrip().startswith(b"<?xml") for p in plots)
    assert page.count('class="gallery-group"') == 6
    assert page.count("data:image/png;base64,") == 6 * 4 * 3
    # provenance at the foot
    footer = page[page.index('<footer id="provenance">') :]
    for expected in ("torch", "frontier-bench", "device", "seed", "finished at", "spec (canonical)"):
        assert expected in footer


def test_flags_are_badges_with_their_explanation_and_bad_cells_never_show_a_number():
    cells = [dict(c, key=f"k{i}") if c["attack"] != "worst-case" else dict(c, key=None) for i, c in enumerate(CELLS)]
    page = leaderboard_html(cells, worst_case="worst-case", explanations=FLAGS)
    assert f'<span class="badge" title="{FLAGS["outside-threat-model"]}">outside-threat-model</span>' in page
    assert f"<dd>{FLAGS['worst-case-incomplete']}</dd>" in page
    invalid = re.search(r'<td class="num" data-value="" data-key="k4"[^>]*>(.*?)</td>', page).group(1)
    assert "status-invalid" in invalid and not re.search(r"\d", re.sub(r"<[^>]+>", "", invalid))
    assert "RuntimeError: out of memory" in page
    assert set(re.findall(r'data-key="(k\d+)"', page)) == {c["key"] for c in cells if c["key"]}


def test_text_is_escaped():
    cells = [dict(CELLS[0], model="<script>alert(1)</script>", key="k")]
    page = leaderboard_html(cells, worst_case="worst-case", explanations=FLAGS)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_gallery_shows_predictions_and_magnifies_the_perturbation():
    clean = np.full((1, 4, 4), 0.5, dtype=np.float32)
    adversarial = clean.copy()
    adversarial[0, 0, 0] += 0.1
    image, magnification, largest = perturbation(clean, adversarial)
    assert abs(largest - 0.1) < 1e-6 and abs(magnification - 5.0) < 1e-4
    assert image.min() == 0.5 and abs(image.max() - 1.0) < 1e-6
    group = GalleryGroup("m / none / fgsm", [Example(3, 7, 7, 1, clean, adversarial)])
    page = leaderboard_html([dict(CELLS[0], key="k")], worst_case="worst-case", explanations=FLAGS, gallery=[group], classes=[str(i) for i in range(10)])
    assert "label <b>7</b>, predicted <b>7</b>" in page and "predicted <b>1</b>" in page and "fooled" in page


def test_an_empty_run_still_renders():
    page = leaderboard_html([], worst_case="worst-case", explanations=FLAGS)
    assert "No results yet." in page and "</html>" in page


def test_accuracies_show_their_interval_muted_and_sort_on_the_accuracy():
    page = leaderboard_html([dict(c, key=f"k{i}") for i, c in enumerate(CELLS)], worst_case="worst-case", explanations=FLAGS)
    cell = re.search(r'<td class="num" data-value="([^"]*)" data-key="k1" title="([^"]*)">(.*?)</td>', page)
    assert cell.group(1) == "0.5861111"  # the number to sort by, not the text with its interval
    assert "95 % interval 53.5–63.6 %" in cell.group(2) and "n = 360" in cell.group(2)
    assert cell.group(3) == '58.6 <span class="ci">[53–64]</span>'
    assert '<td class="num" data-value="0.975" title="95 % interval 95.3–98.7 %">97.5 <span class="ci">[95–99]</span></td>' in page
    assert ".ci { color: var(--muted)" in page


def test_rank_and_verdict_columns_carry_their_details_in_the_tooltip():
    page = leaderboard_html(ranked_cells(), worst_case="worst-case", explanations=FLAGS)
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    names = re.findall(r'data-type="(\w+)"[^>]*><button type="button">([^<]+)</button>', head)
    assert names[-3:] == [("number", "rank"), ("text", "verdict"), ("text", "flags")]
    rank = re.search(r'<td class="num" data-value="2" title="([^"]*)">2 <span class="ci">ab</span></td>', page)
    assert "rank 2 of 4 at eps 0.1" in rank.group(1)
    assert "not significantly different (exact McNemar on the same points, p ≥ 0.05) from: x / a, x / c" in rank.group(1)
    assert '<td class="judged" title="bpda broke 30 points more than pgd; gradient-masking">masked (worst case set by bpda)</td>' in page
    unranked = page.split('<td class="label">none</td>')[1].split("</tr>")[0]  # the row at eps 0.2: empty rank and verdict
    assert '<td class="num" data-value=""></td><td class="judged"></td>' in unranked
    plain = leaderboard_html(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert ">rank</button>" not in plain and ">verdict</button>" not in plain


def test_the_header_counts_the_stored_jobs_as_bench_run_does(finished_run, tmp_path, tmp_path_factory, monkeypatch, capsys):
    from bench.cli import main

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    capsys.readouterr()
    assert main(["run", "--config", str(finished_run.parent / "spec.toml"), "--out", str(run), "-q"]) == 0  # nothing left to run: reports again
    printed = re.search(r"^(\d+) jobs: ", capsys.readouterr().err, re.MULTILINE)
    header = re.search(r'<p class="muted">(\d+) jobs \((\d+) ok\)', (run / "leaderboard.html").read_text())
    assert printed and header and int(header.group(1)) == int(printed.group(1)) == len(job_keys(run)) == int(header.group(2))


def test_without_the_store_the_header_counts_the_jobs_behind_cells_and_checks():
    cells = [dict(c, key=f"k{i}") if c["attack"] != "worst-case" else dict(c, key=None) for i, c in enumerate(CELLS)]
    checks = [{"key": "c1", "model": "small-cnn", "defense": "none", "attack": "sanity-checks", "norm": "linf", "status": "ok", "flags": []}]
    assert '<p class="muted">6 jobs</p>' in leaderboard_html(cells, worst_case="worst-case", explanations=FLAGS, checks=checks)
    page = leaderboard_html(cells, worst_case="worst-case", explanations=FLAGS, stored_jobs=["ok", "failed", "ok", "invalid"])
    assert '<p class="muted">4 jobs (2 ok, 1 invalid, 1 failed)</p>' in page


def test_the_gallery_shows_broken_examples_first_and_drops_unperturbed_ones():
    clean = np.full((1, 4, 4), 0.5, dtype=np.float32)
    moved = clean.copy()
    moved[0, 1, 1] += 0.1
    stored = [Example(1, 3, 3, 3, clean, clean), Example(2, 4, 4, 4, clean, moved), Example(3, 5, 5, 1, clean, moved), Example(4, 6, 2, 2, clean, moved)]
    assert [e.example for e in shown(stored)] == [3, 2, 4]  # fooled, held, wrong already; the unperturbed held one dropped
    assert [e.example for e in shown([stored[0], stored[1]])] == [2, 1]  # none broken: the unperturbed one kept, last
    fragment = gallery_html([GalleryGroup("m / none / pgd", stored)])
    assert fragment.index("#3 clean") < fragment.index("#2 clean") < fragment.index("#4 clean") and "#1 clean" not in fragment


def test_the_run_gallery_shows_fooled_examples_before_held_ones(finished_run):
    page = (finished_run / "leaderboard.html").read_text()
    for group in re.findall(r'<section class="gallery-group">(.*?)</section>', page, re.DOTALL):
        verdicts = re.findall(r'<span class="verdict (\w+)">', group)
        assert verdicts == sorted(verdicts, key=["fooled", "held", "wrong"].index), verdicts
