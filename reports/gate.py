"""The CI gate's verdict as text: a table of regressions (row, metric, baseline, now, allowed), then missing and new rows and changed versions.

Takes the check's result as it is (``bench.gate.CheckResult``, read by
attribute); the same text is printed by ``bench check`` and by the pytest plugin.
"""

from __future__ import annotations

from typing import Any

from reports.leaderboard import markdown_table


def check_text(result: Any) -> str:
    where = f"baseline {result.baseline}, {result.tolerances.describe()}" + (f"; run in {result.run_dir}" if result.run_dir else "")
    if result.passed:
        lines = [f"bench check passed: {result.metrics_checked} metrics of {result.rows_checked} rows hold ({where}).", ""]
    else:
        problems = []
        if result.regressions:
            problems.append(f"{len(result.regressions)} regression{'s' if len(result.regressions) != 1 else ''}")
        if result.missing_rows:
            problems.append(f"{len(result.missing_rows)} missing row{'s' if len(result.missing_rows) != 1 else ''}")
        lines = [f"bench check FAILED: {', '.join(problems)} ({where}).", ""]
        if result.regressions:
            table = [[r.label, r.metric, r.baseline, r.now, r.allowed] for r in result.regressions]
            lines += [markdown_table(table, ["row", "metric", "baseline", "now", "allowed"], html_entities=False), ""]
    if result.missing_rows:
        lines += ["Missing rows (in the baseline, not in this run):"] + [f"- {row}" for row in result.missing_rows] + [""]
    if result.new_flags:
        lines += ["New advisory flags (threshold diagnostics that float noise can tip; reported, not gated):"] + [f"- {row}" for row in result.new_flags] + [""]
    if result.new_rows:
        lines += ["New rows (in this run, not in the baseline; not gated until the baseline is renewed):"] + [f"- {row}" for row in result.new_rows] + [""]
    if result.version_changes:
        lines += ["Versions differ from the baseline's:"] + [f"- {change}" for change in result.version_changes] + [""]
    return "\n".join(lines).rstrip() + "\n"
