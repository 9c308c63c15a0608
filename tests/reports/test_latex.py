"""--format latex: booktabs tables a report can take as they are, figures saved as PDF beside them."""

from __future__ import annotations

import shutil

from bench.cli import main
from bench.tracks.adversarial.flags import FLAGS
from reports.latex import escape, leaderboard_latex
from tests.reports.test_leaderboard import CELLS


def test_latex_tables_use_booktabs_and_escape_what_latex_would_choke_on():
    text = leaderboard_latex(CELLS, worst_case="worst-case", explanations=FLAGS, figures=[("Robustness curve: digits, Linf", "figures/r.pdf")])
    assert text.count("\\begin{table}") == 2 and text.count("\\toprule") == 2 and text.count("\\bottomrule") == 2
    assert "clean \\%" in text and "worst case \\%" in text and "fgsm \\%" in text
    assert "\\caption{digits, Linf: robust accuracy (\\%)." in text
    row = next(line for line in text.splitlines() if line.strip().startswith("small-cnn") and " 0.2 " in line)
    assert "invalid" in row and "63.3" not in row
    assert "\\includegraphics[width=0.8\\linewidth]{figures/r.pdf}" in text
    assert "\\item[outside-threat-model]" in text
    assert "RuntimeError: out of memory" in text
    assert escape("50% of x_1 & {y}") == "50\\% of x\\_1 \\& \\{y\\}"


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
