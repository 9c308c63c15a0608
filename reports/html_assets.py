"""The inline CSS and JavaScript of ``leaderboard.html`` (no network: everything the page needs is in it).

The CSS keeps every leaderboard table within 1,280 px: cells wrap (an accuracy
between its value and its interval, a long name anywhere), badges wrap inside
their cell, headers wrap at spaces and hyphens, and the gaps are narrow. The
JavaScript sorts a table on a header's click (numbers on ``data-value``).
"""

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --head: #f3f5f9; --accent: #2454c5; --warn: #9a5b00; --warn-bg: #fff2d6;
        --bad: #a3202a; --bad-bg: #fde4e6; --ok: #1d6b36; --ok-bg: #e1f5e8; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: #fff; }
header, main, footer { max-width: 1960px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 8px; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
.muted, .note { color: var(--muted); }
ul.summary { font-size: 16px; margin: 8px 0 16px; padding-left: 22px; }
.note { font-size: 13px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 6px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { overflow-wrap: normal; }
td.num, th.num { text-align: right; }
td.num { overflow-wrap: normal; }
td.label { min-width: 7em; }
td.flags { min-width: 9em; }
td.judged { min-width: 8em; font-size: 13px; cursor: help; }
.scroll { overflow-x: auto; }
td.worst { font-weight: 600; background: #f7f9fd; }
.ci { color: var(--muted); font-size: 12px; font-weight: normal; white-space: nowrap; }
thead th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid var(--accent); }
th[aria-sort="ascending"] button::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"] button::after { content: " \\25BC"; font-size: 10px; }
tbody tr:hover { background: #fafbfd; }
.badge { display: inline-block; max-width: 100%; padding: 1px 7px; margin: 1px 2px; border-radius: 10px; font-size: 12px; line-height: 1.35;
         background: var(--warn-bg); color: var(--warn); border: 1px solid #f0d9a8; cursor: help; overflow-wrap: anywhere; }
.badge.status-invalid { background: var(--bad-bg); color: var(--bad); border-color: #f3b9bf; }
.badge.status-failed { background: #eceef2; color: #4a5263; border-color: #d3d7df; }
dl.flags { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; }
dl.flags dd { margin: 0; }
.curves { display: flex; flex-wrap: wrap; gap: 16px; }
.curves figure { margin: 0; flex: 1 1 480px; }
.curves img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-size: 13px; color: var(--muted); }
.gallery-group { border: 1px solid var(--line); border-radius: 8px; padding: 4px 12px 8px; margin: 12px 0; }
.gallery-group h3 { margin: 8px 0; }
.example { display: flex; gap: 12px; align-items: flex-start; margin: 6px 0; flex-wrap: wrap; }
.tile { margin: 0; width: 150px; }
.tile img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid var(--line); display: block; }
.verdict { font-size: 11px; padding: 0 5px; border-radius: 8px; }
.verdict.fooled { background: var(--bad-bg); color: var(--bad); }
.verdict.held { background: var(--ok-bg); color: var(--ok); }
.verdict.wrong { background: #eceef2; color: #4a5263; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 0 16px; }
footer { margin-top: 32px; padding-bottom: 32px; font-size: 13px; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; }
footer dd { margin: 0; }
pre { background: var(--head); padding: 10px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
"""

JS = """
(function () {
  "use strict";
  function sortTable(table, th, column) {
    var numeric = th.dataset.type === "number";
    var current = th.getAttribute("aria-sort");
    var direction = current === "descending" ? "ascending" : current === "ascending" ? "descending" : numeric ? "descending" : "ascending";
    table.querySelectorAll("thead th").forEach(function (other) { other.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", direction);
    var sign = direction === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var key = function (row) {
      var cell = row.cells[column];
      if (!numeric) { return cell.textContent.trim(); }
      var value = cell.dataset.value;
      return value === undefined || value === "" ? null : Number(value);
    };
    var rows = Array.prototype.slice.call(body.rows).map(function (row, index) { return { row: row, key: key(row), index: index }; });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) { return a.key === b.key ? a.index - b.index : a.key === null ? 1 : -1; }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined, { numeric: true });
      return order === 0 ? a.index - b.index : sign * order;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () { sortTable(table, th, column); });  // the button inside keeps it keyboard-reachable
    });
  });
})();
"""
