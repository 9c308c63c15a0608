"""User-facing errors: one readable line, exit code 2 at the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with what the user gave (spec, name, file, flag); never a bug of ours."""


class UnknownComponent(UserError, KeyError):
    """A name that no registry entry matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The registered names closest to a mistyped one, best first."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'; did you mean 'pgd'?' or '' when nothing is close."""
    matches = closest(name, choices)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


class ParamError(UserError):
    """A bad parameter value; ``field`` lets the spec layer name its path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def require(condition: bool, field: str, message: str) -> None:
    """Raise ``ParamError(field, message)`` unless ``condition`` holds."""
    if not condition:
        raise ParamError(field, message)


def one_line(error: BaseException) -> str:
    """An exception as one line: ``ValueError: boom`` (its first line), or its type's name when it says nothing."""
    return f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
