"""leaderboard.html in a real headless Chromium: loads without console errors or network, sorts on a click, draws its plots, shows every job.

Uses Debian's chromium (``make test`` installs it when it can) driven by
Playwright; never a downloaded browser. Skips where either is missing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (make test installs Debian's chromium)")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for the module (Playwright's sync API runs one at a time)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True, viewport={"width": 1280, "height": 900}
        )
        yield context
        context.close()


@pytest.fixture(scope="module")
def browser_page(browser, finished_run):
    """The run's leaderboard.html open in Chromium, with what the page logged and requested."""
    page = browser.new_page()
    log = {"errors": [], "requests": []}
    page.on("console", lambda message: log["errors"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("request", lambda request: log["requests"].append(request.url))
    page.goto((finished_run / "leaderboard.html").as_uri(), wait_until="load")
    return page, log


def column(page, table: str, header: str) -> list[str]:
    """The data-value of every row's cell under ``header`` in table ``table``, in display order."""
    return page.evaluate(
        """([table, header]) => {
            const t = document.getElementById(table);
            const index = Array.from(t.tHead.rows[0].cells).findIndex(th => th.textContent.trim() === header);
            return Array.from(t.tBodies[0].rows).map(row => row.cells[index].dataset.value ?? row.cells[index].textContent.trim());
        }""",
        [table, header],
    )


def test_loads_without_console_errors_or_network(browser_page):
    page, log = browser_page
    assert page.title() == "Leaderboard: adversarial track"
    assert log["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in log["requests"]), log["requests"]


def test_shows_every_job_of_the_store(browser_page, finished_run):
    page, _ = browser_page
    with sqlite3.connect(finished_run / "results.db") as db:
        stored = {key for (key,) in db.execute("SELECT key FROM jobs")}
    shown = page.eval_on_selector_all("td[data-key]", "cells => cells.filter(c => c.offsetParent !== null).map(c => c.dataset.key)")
    assert sorted(shown) == sorted(stored)
    assert page.locator("#table-digits-linf tbody tr").count() == 4 and page.locator("#table-digits-l2 tbody tr").count() == 2


def test_clicking_a_header_sorts_its_column(browser_page, finished_run):
    page, _ = browser_page
    header = page.locator("#table-digits-linf th", has_text="worst case %")
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    values = [float(v) for v in column(page, "table-digits-linf", "worst case %")]
    assert values == sorted(values, reverse=True)
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = [float(v) for v in column(page, "table-digits-linf", "worst case %")]
    assert values == sorted(values)
    page.locator("#table-digits-linf th", has_text="model").click()
    models = column(page, "table-digits-linf", "model")
    assert models == sorted(models) and header.get_attribute("aria-sort") == "none"
    page.locator("#table-digits-linf th", has_text="eps").click()
    assert [float(v) for v in column(page, "table-digits-linf", "eps")] == [0.2, 0.2, 0.1, 0.1]
    # rows move whole: the jobs in each row are still that row's model and eps
    with sqlite3.connect(finished_run / "results.db") as db:
        stored = {key: (model, eps) for key, model, eps in db.execute("SELECT key, model, eps FROM adversarial_jobs")}
    rows = page.eval_on_selector_all(
        "#table-digits-linf tbody tr",
        """rows => rows.map(r => [
            r.cells[0].textContent, Number(r.cells[2].dataset.value), Array.from(r.querySelectorAll('td[data-key]')).map(c => c.dataset.key)
        ])""",
    )
    assert all(stored[key] == (model, eps) for model, eps, keys in rows for key in keys)


def test_plots_and_gallery_render(browser_page):
    page, _ = browser_page
    plots = page.eval_on_selector_all("img.plot", "images => images.map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
    assert len(plots) == 2
    assert all(complete and natural > 0 and shown > 100 for complete, natural, shown in plots)
    tiles = page.eval_on_selector_all(".gallery img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
    assert len(tiles) == 6 * 4 * 3 and all(tiles)
    assert page.locator("#provenance").inner_text().count("torch") >= 1


def test_rank_and_accuracy_columns_sort_on_their_numbers_not_their_text(browser, tmp_path):
    """'10.0 [7–14]' sorts below '60.0 [54–65]' and rank '10' after rank '9', whatever the interval or letters say."""
    from bench.tracks.adversarial.flags import FLAGS as EXPLANATIONS
    from reports.html import leaderboard_html
    from tests.reports.test_leaderboard import ranked_cells

    cells = ranked_cells()
    cells[1].update(rank=10, rank_of=10)  # a two-digit rank: text order would put it before 2
    (tmp_path / "page.html").write_text(leaderboard_html(cells, worst_case="worst-case", explanations=EXPLANATIONS))
    page = browser.new_page()
    page.goto((tmp_path / "page.html").as_uri(), wait_until="load")
    page.locator("#table-digits-linf th", has_text="rank").click()  # numbers sort descending first
    assert column(page, "table-digits-linf", "rank") == ["10", "4", "3", "2", "2", "1", ""]
    page.locator("#table-digits-linf th", has_text="worst case %").click()
    assert [float(v) for v in column(page, "table-digits-linf", "worst case %")] == [0.6, 0.55, 0.5, 0.5, 0.5, 0.2, 0.1]
    page.close()


FITS = """() => {
    /* Every leaderboard table within its container and the page, and every badge within its cell: [what, by how many px] for each that is not. */
    const problems = [];
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth) { problems.push(["page", page.scrollWidth - page.clientWidth]); }
    document.querySelectorAll("#leaderboard table").forEach((table, i) => {
        const name = table.id || table.className || `table ${i}`;
        const container = table.parentElement;
        if (table.scrollWidth > container.clientWidth) { problems.push([`${name} in its container`, table.scrollWidth - container.clientWidth]); }
        const right = table.getBoundingClientRect().right;
        if (right > page.clientWidth) { problems.push([`${name} on the page`, right - page.clientWidth]); }
        table.querySelectorAll("td, th").forEach(cell => {
            const over = cell.scrollWidth - cell.clientWidth;
            if (over > 0) { problems.push([`${name}: a cell overflows (${cell.textContent.slice(0, 40)})`, over]); }
        });
    });
    document.querySelectorAll("#leaderboard .badge").forEach(badge => {
        const own = badge.getBoundingClientRect(), cell = badge.closest("td, dt, dd") || badge.parentElement;
        const box = cell.getBoundingClientRect();
        if (badge.scrollWidth > badge.clientWidth || own.left < box.left - 0.5 || own.right > box.right + 0.5) {
            problems.push([`badge ${badge.textContent} clipped`, Math.max(badge.scrollWidth - badge.clientWidth, own.right - box.right, box.left - own.left)]);
        }
    });
    return problems;
}"""


def test_the_run_page_fits_1280_px_without_horizontal_overflow(browser_page):
    page, _ = browser_page
    assert page.viewport_size["width"] == 1280
    assert page.evaluate(FITS) == []


def test_the_widest_leaderboard_fits_1280_px_and_no_badge_is_clipped(browser, tmp_path):
    """Six attacks in a cascade, rank, a long verdict, five long flags and a hostile model name: still no horizontal scroll at 1280 px."""
    from bench.tracks.adversarial.flags import FLAGS as EXPLANATIONS
    from reports.html import leaderboard_html
    from tests.reports.test_leaderboard import HOSTILE, wide_cells

    measured = {f"long_measurement_name_{i}": 0.123 * i for i in range(12)}
    checks = [{"key": "c1", "model": HOSTILE, "defense": "none", "attack": "sanity-checks", "norm": "linf", "status": "ok", "flags": [], "metrics": measured}]
    checks[0]["flags"] = ["outputs-probabilities", "randomness-undeclared"]
    (tmp_path / "page.html").write_text(leaderboard_html(wide_cells(), worst_case="worst-case", explanations=EXPLANATIONS, checks=checks))
    page = browser.new_page()
    page.goto((tmp_path / "page.html").as_uri(), wait_until="load")
    assert page.viewport_size["width"] == 1280
    assert page.locator("#table-digits-linf thead th").count() == 14
    assert page.evaluate(FITS) == []
    assert page.evaluate("() => Array.from(document.querySelectorAll('script')).every(s => !s.textContent.includes('alert(1)'))")
    page.close()
