"""Code is part of the recipe: fingerprints of a model's source and of its checkpoint's contents.

A model's weights and results depend on the code that builds it, not only on
its name and parameters. ``code_fingerprint(factory)`` hashes the source file
that defines the factory and every file of the same project it imports
(followed statically through ``import`` statements, so the result never
depends on what else a process happened to import). For a built-in model that
is ``models/zoo.py`` and what it imports from ``models/``; for a user's
``mymodel.py`` it is that file and the helpers next to it it imports.

The fingerprints of a spec's components (``bench.fields.fingerprints``: models
with their checkpoints, defenses, attacks, estimators) go into job keys,
training recipes and the run folder's metadata: an edited component or
checkpoint means new jobs, and a run folder holding results of the old one is
refused (or, with ``--force``, its old jobs dropped) instead of mixing two
versions.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LENGTH = 16


def _digest(parts: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, content in parts:
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:LENGTH]


def source_file(obj: Any) -> Path | None:
    """The Python file that defines ``obj`` (a function, class, bound factory or module), if it has one."""
    target = inspect.unwrap(getattr(obj, "func", obj)) if callable(obj) else obj
    module = target if inspect.ismodule(target) else sys.modules.get(getattr(target, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if path is None:
        try:
            path = inspect.getsourcefile(target)
        except TypeError:
            return None
    return Path(path).resolve() if path and str(path).endswith(".py") else None


def _top(path: Path) -> Path:
    """The project ``path`` belongs to: its outermost package folder, or its own folder for a plain module."""
    top = path.parent
    while (top.parent / "__init__.py").is_file() and (top / "__init__.py").is_file():
        top = top.parent
    return top


def _base(top: Path) -> Path:
    """Where absolute imports of ``top``'s modules resolve from (names are relative to it: moving a project keeps them)."""
    return top.parent if (top / "__init__.py").is_file() else top


def _installed(folder: Path) -> bool:
    """A folder of installed or standard-library modules (whose neighbours are other projects)."""
    import site
    import sysconfig

    places = {*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["stdlib"]}
    return any(folder == Path(p).resolve() for p in places if p)


def _imported(path: Path, top: Path) -> list[Path]:
    """Files inside ``top`` that ``path`` imports (absolute and relative imports; nothing of other projects)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    base = _base(top)
    names: list[tuple[Path, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(base, alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            start = base if node.level == 0 else path.parents[node.level - 1]
            module = node.module.split(".") if node.module else []
            names.append((start, module))
            names += [(start, [*module, alias.name]) for alias in node.names]  # `from pkg import submodule`
    found = []
    for start, parts in names:
        for depth in range(1, len(parts) + 1):  # a.b.c imports a/__init__, a/b/__init__, a/b/c
            stem = start.joinpath(*parts[:depth])
            for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
                if candidate.is_file() and (candidate.resolve().parent == top or top in candidate.resolve().parents):
                    found.append(candidate.resolve())
    return found


def code_files(obj: Any) -> list[Path]:
    """``obj``'s source file and the files of its own project it imports, transitively, in a stable order.

    A package's ``__init__.py`` is read but its imports are not followed (they register the package's
    other modules, which the model does not run); a module among installed ones stands alone.
    """
    start = source_file(obj)
    if start is None:
        return []
    top = _top(start)
    seen: dict[Path, None] = {}
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        if path.name != "__init__.py" and not _installed(top):
            todo += [p for p in _imported(path, top) if p not in seen]
    return sorted(seen, key=lambda p: str(p.relative_to(_base(top))))


def code_fingerprint(obj: Any) -> str:
    """A hash of the code behind ``obj``: its file and the project files it imports ("" when it has no Python source)."""
    files = code_files(obj)
    if not files:
        return ""
    base = _base(_top(files[0]))
    return _digest((str(p.relative_to(base)), p.read_bytes()) for p in files)


def file_fingerprint(path: str | Path) -> str:
    """A hash of a file's contents (a checkpoint), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- what changed between two runs of a spec --------------------------------------------
def changes(before: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Components whose code or checkpoint differ between two ``bench.fields.fingerprints`` (name -> what changed)."""
    found: dict[str, list[str]] = {}
    for label, current in now.items():
        previous = before.get(label)
        if previous is None:
            continue
        what = [name for name in ("code", "checkpoint") if previous.get(name) != current.get(name)]
        if what:
            found[label] = what
    return found
