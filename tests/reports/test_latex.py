"""--format latex: booktabs tables that fit the page and compile, figures saved as PDF beside them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from bench.tracks.adversarial.flags import FLAGS
from reports.latex import escape, leaderboard_latex
from tests.reports.test_leaderboard import CELLS, HOSTILE, wide_cells

ENGINE = shutil.which("pdflatex") or shutil.which("tectonic")
needs_tex = pytest.mark.skipif(ENGINE is None, reason="neither pdflatex nor tectonic on PATH (apt-get install texlive-latex-base texlive-latex-recommended)")
DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{array}
\begin{document}
\input{leaderboard.tex}
\end{document}
"""
SLACK_PT = 3.0  # an overfull box this much wider than the line is invisible; anything wider sticks into the margin


def test_latex_tables_use_booktabs_and_escape_what_latex_would_choke_on():
    text = leaderboard_latex(CELLS, worst_case="worst-case", explanations=FLAGS, figures=[("Robustness curve: digits, Linf", "figures/r.pdf")])
    assert text.count("\\begin{table}") == 2 and text.count("\\toprule") == 2 and text.count("\\bottomrule") == 2
    header = next(line for line in text.splitlines() if line.startswith("model &"))
    assert [h.strip() for h in header.rstrip("\\ ").split("&")] == ["model", "defense", "eps", "clean", "fgsm", "pgd", "worst", "flags"]
    assert "\\caption{digits, Linf: robust accuracy (\\%)." in text
    row = next(line for line in text.splitlines() if line.strip().startswith("small-cnn") and " 0.2 " in line)
    assert "invalid" in row and "63.3" not in row and row.endswith("& F1,F2 \\\\")
    assert "\\fbaccuracy{97.5}{[95--99]}" in row and "\\providecommand{\\fbaccuracy}" in text  # the interval in small type under it
    assert "{\\footnotesize Flags: F1 outside-threat-model; F2 worst-case-incomplete (explained under Flags).\\par}" in text
    assert "\\includegraphics[width=0.8\\linewidth]{figures/r.pdf}" in text
    assert "\\item[F1 outside-threat-model]" in text
    assert "RuntimeError: out of memory" in text
    assert escape("50% of x_1 & {y}") == "50\\% of x\\_1 \\& \\{y\\}"


def test_a_wide_table_is_scaled_to_the_line_width_with_flags_as_codes():
    text = leaderboard_latex(wide_cells(), worst_case="worst-case", explanations=FLAGS)
    assert "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%" in text
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}$", text, re.MULTILINE).group(1)
    assert spec.endswith(">{\\raggedright\\arraybackslash}p{6.5em}l")  # the verdict wraps; flags are short codes
    columns = len(re.sub(r"\{[^}]*\}", "", re.sub(r">\{[^}]*\}", "", spec)))
    rows = [line for line in text.splitlines() if line.endswith("\\\\") and not line.startswith("model &")]
    assert all(len(row.split(" & ")) == columns for row in rows)
    assert len(rows) == 3 and all(re.fullmatch(r"F\d+(,F\d+)*", row.rsplit("&", 1)[1].removesuffix("\\\\").strip()) for row in rows)


def test_report_latex_prints_the_tables_and_saves_the_plots_as_pdf(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    capsys.readouterr()
    assert main(["report", str(run), "--format", "latex"]) == 0
    out = capsys.readouterr()
    pdfs = sorted(p.name for p in (run / "figures").glob("*.pdf"))
    assert pdfs == ["robustness-digits-l2.pdf", "robustness-digits-linf.pdf"]
    assert all((run / "figures" / p).read_bytes().startswith(b"%PDF") for p in pdfs)
    for pdf in pdfs:
        assert f"{{figures/{pdf}}}" in out.out
    assert (run / "leaderboard.tex").read_text() == out.out
    assert "figures as PDF" in out.err


def compile_log(folder: Path) -> str:
    """Compile a minimal document around ``folder/leaderboard.tex``; return its log (the test fails on a LaTeX error)."""
    (folder / "main.tex").write_text(DOCUMENT)
    if Path(ENGINE).name == "tectonic":
        command = [ENGINE, "--keep-logs", "--chatter", "minimal", "main.tex"]
    else:
        command = [ENGINE, "-interaction=nonstopmode", "-halt-on-error", "main.tex"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    log = (folder / "main.log").read_text(errors="replace") if (folder / "main.log").exists() else ""
    assert done.returncode == 0 and (folder / "main.pdf").is_file(), done.stdout[-3000:] + done.stderr[-3000:] + log[-3000:]
    return log


def overfull(log: str) -> list[str]:
    """The overfull \\hbox warnings of the log wider than ``SLACK_PT``."""
    found = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)[^\n]*", log)
    lines = re.findall(r"Overfull \\hbox \([\d.]+pt too wide\)[^\n]*", log)
    return [line for width, line in zip(found, lines, strict=True) if float(width) > SLACK_PT]


@needs_tex
def test_the_report_of_a_run_compiles_and_fits_the_page(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["report", str(run), "--format", "latex"]) == 0
    log = compile_log(run)
    assert overfull(log) == [], overfull(log)


@needs_tex
def test_the_widest_table_compiles_and_fits_the_page(tmp_path):
    """Six attacks, rank, verdict, five flags and a model name full of LaTeX specials: still within the text width."""
    cells = wide_cells()
    cells.append(dict(cells[0], attack="square", status="failed", error=f"{HOSTILE}: 50% of x_1 & {{y}} ~ ^ # $ \\ failed"))
    (tmp_path / "leaderboard.tex").write_text(leaderboard_latex(cells, worst_case="worst-case", explanations=FLAGS))
    log = compile_log(tmp_path)
    assert overfull(log) == [], overfull(log)
