"""Text made safe for the format it is written into: a markdown table cell, markdown text, LaTeX.

Labels are user-chosen (a model named ``my|model<script>``), so every
renderer escapes what it writes: in markdown a ``|`` would end a table cell
early and shift the rest of the row into the wrong columns, and raw HTML would
reach whoever renders the page; in LaTeX ``&``, ``_`` or ``%`` would break the
table or the document. HTML pages use ``html.escape`` directly.
"""

from __future__ import annotations

import html

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "–": "--",
    "≥": r"$\geq$",
    "±": r"$\pm$",
    "×": r"$\times$",
}


def markdown_text(text: object) -> str:
    """Running markdown text (a list item, a heading): ``<``, ``>`` and ``&`` as HTML entities, one line."""
    return html.escape(" ".join(str(text).splitlines()), quote=False)


def markdown_cell(text: object, *, html_entities: bool = True) -> str:
    """A markdown table cell: ``markdown_text`` with ``|`` as ``\\|`` (and ``\\`` as ``\\\\``, so no escape is undone), so the cell never splits.

    ``html_entities=False``: a table read mostly in a terminal (the gate's, ``bench compare``'s) keeps ``<`` and ``>``
    as they are (``p <0.001``, ``>= 0.13``); only what splits a cell is escaped.
    """
    text = markdown_text(text) if html_entities else " ".join(str(text).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|")


def latex(text: object) -> str:
    """Text safe to place in LaTeX running text, a caption or a table cell (``|``, ``<`` and ``>`` included, which OT1 fonts misprint)."""
    return "".join(_LATEX.get(c, c) for c in str(text))
