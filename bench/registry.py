"""One generic registry class; one instance per kind of component.

Taken from timm's registry (decorator registration, wildcard listing, natural
sort, creation from a name plus keyword arguments) and lm-evaluation-harness's
(`Registry(Generic[T])`, an error on a name registered twice, lazy
``"module:attr"`` placeholders, freezing). Other packages add components
through the entry-point group given at construction, e.g.
``frontier_bench.attacks``.

Besides plain names, a registry can resolve two kinds of open-ended names:

* ``prefix:rest`` through a prefix factory (``timm:resnet18``,
  ``torchattacks:APGD``), called as ``factory(rest, **params)``;
* ``package.module:attr`` or ``path/to/file.py:attr`` (when ``import_paths=True``):
  a user's own factory. A file is loaded by its path under a name of its own
  (``locate`` turns a spec's ``mymodel.py:make`` or ``mymodel:make`` next to the
  spec into that form), so it needs no PYTHONPATH and a user file named like
  one of this project's packages (``models.py``) cannot shadow it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import UnknownComponent, UserError, did_you_mean, one_line

T = TypeVar("T")

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FILE_PATH = re.compile(r"^(?P<file>.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")


def is_reference(name: str) -> bool:
    """``package.module:attr`` or ``file.py:attr``: a user's own object, imported rather than registered."""
    return bool(_FILE_PATH.match(name) or _IMPORT_PATH.match(name))


def locate(name: str, base_dir: Path) -> str:
    """A user's reference made independent of the working folder: ``file.py:attr`` (relative to ``base_dir``, the
    spec's folder) and ``module:attr`` with ``module.py`` in ``base_dir`` become ``/absolute/file.py:attr``; a dotted
    module found in ``base_dir`` gets that folder appended to ``sys.path``. Other names are returned as they are."""
    found = _FILE_PATH.match(name)
    if found:
        path = (base_dir / found["file"]).resolve()
        if not path.is_file():
            raise UserError(f"'{name}': no file '{found['file']}' in {base_dir}")
        return f"{path}:{found['attr']}"
    if not _IMPORT_PATH.match(name):
        return name
    module, _, attr = name.partition(":")
    single = (base_dir / f"{module}.py").resolve()
    if "." not in module and single.is_file():
        return f"{single}:{attr}"
    if (base_dir / module.split(".")[0]).is_dir() and str(base_dir.resolve()) not in sys.path:
        sys.path.append(str(base_dir.resolve()))  # last: a user's package never hides an installed one
    return name


def load_file(path: str | Path) -> Any:
    """The module in a Python file, loaded by path under a name of its file's location and content (an edited file is
    loaded afresh; two files of one name never collide); its folder is appended to ``sys.path`` for its own imports."""
    path = Path(path).resolve()
    try:
        content = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read '{path}': {error.strerror}") from None
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_bench_user_{stem}_{hashlib.sha256(str(path).encode() + content).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load '{path}' as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's module failed while loading: one line, not our traceback
        del sys.modules[name]
        raise UserError(f"'{path.name}' failed to load: {one_line(error)}") from None
    return module


def natural_key(name: str) -> list[Any]:
    """Sort 'resnet10' after 'resnet9', as timm does."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` or load ``/path/file.py:attr`` (attr may be dotted)."""
    in_file = _FILE_PATH.match(path)
    module_name, attr = (in_file["file"], in_file["attr"]) if in_file else path.split(":", 1)
    obj: Any
    if in_file:
        obj = load_file(module_name)
    else:
        try:
            obj = importlib.import_module(module_name)
        except ImportError as error:
            raise UserError(f"cannot import '{module_name}' for '{path}': {error}") from None
        except Exception as error:  # the user's module failed while importing
            raise UserError(f"'{module_name}' failed to import: {one_line(error)}") from None
    where = Path(module_name).name if in_file else module_name
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            defined = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            raise UserError(f"'{where}' has no attribute '{attr}'{did_you_mean(part, defined)}") from None
    return obj


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its factory (or a lazy path to it) and metadata."""

    name: str
    target: Any
    defaults: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prefix:
    """An open family of names ``prefix:rest`` served by one factory."""

    prefix: str
    factory: Callable[..., Any]
    lister: Callable[[str], Iterable[str]] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names to factories for one kind of component ("attack", "model", ...)."""

    def __init__(self, kind: str, *, entry_points: str | None = None, import_paths: bool = False) -> None:
        self.kind = kind
        self.entry_point_group = entry_points
        self.import_paths = import_paths
        self._entries: dict[str, Entry[T]] = {}
        self._prefixes: dict[str, Prefix] = {}
        self._frozen = False
        self._plugins_loaded = entry_points is None
        self._lock = threading.Lock()

    # -- registering -------------------------------------------------------
    def register(self, name: str, obj: Any = None, *, defaults: Mapping[str, Any] | None = None, **meta: Any) -> Any:
        """Register ``obj`` (a factory, or a ``"module:attr"`` string) under ``name``.

        Without ``obj`` it returns a decorator. ``defaults`` are keyword
        arguments applied before the caller's (``pgd-l2`` is ``pgd`` with
        ``norm="l2"``); ``meta`` is free-form data such as supported norms.
        """
        if obj is None:

            def decorator(target: Any) -> Any:
                self.register(name, target, defaults=defaults, **meta)
                return target

            return decorator
        if self._frozen:
            raise RuntimeError(f"the {self.kind} registry is frozen; cannot register '{name}'")
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        if not (isinstance(obj, str) or callable(obj)):
            raise TypeError(f"{self.kind} '{name}': expected a factory or 'module:attr', got {obj!r}")
        self._entries[name] = Entry(name, obj, dict(defaults or {}), dict(meta))
        return obj

    def register_prefix(
        self,
        prefix: str,
        factory: Callable[..., Any],
        *,
        lister: Callable[[str], Iterable[str]] | None = None,
        **meta: Any,
    ) -> None:
        """Serve every name ``prefix:rest`` with ``factory(rest, **params)``."""
        if prefix in self._prefixes:
            raise ValueError(f"{self.kind} prefix '{prefix}:' is already registered")
        self._prefixes[prefix] = Prefix(prefix, factory, lister, dict(meta))

    def freeze(self) -> None:
        """Load plugins, then refuse further registrations."""
        self._load_plugins()
        self._frozen = True

    # -- looking up --------------------------------------------------------
    def _load_plugins(self) -> None:
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            for ep in importlib.metadata.entry_points(group=self.entry_point_group):
                if ep.name not in self._entries:
                    self._entries[ep.name] = Entry(ep.name, ep.value, {}, {"plugin": ep.value})

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries, key=natural_key)

    def prefixes(self) -> list[str]:
        return sorted(self._prefixes)

    def prefix_meta(self, prefix: str) -> Mapping[str, Any]:
        return self._prefixes[prefix].meta

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load_plugins()
        return name in self._entries or self._split_prefix(name) is not None

    def _split_prefix(self, name: str) -> tuple[Prefix, str] | None:
        prefix, sep, rest = name.partition(":")
        if sep and rest and prefix in self._prefixes:
            return self._prefixes[prefix], rest
        return None

    def info(self, name: str) -> Entry[T]:
        """The entry registered under ``name``; lazy targets are imported here."""
        self._load_plugins()
        entry = self._entries.get(name)
        if entry is None:
            raise self.unknown_error(name)
        if isinstance(entry.target, str):
            entry = Entry(entry.name, import_object(entry.target), entry.defaults, entry.meta)
            self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        return self.info(name).target

    def meta(self, name: str) -> Mapping[str, Any]:
        """Metadata of a plain or prefixed name (prefixed names share their prefix's)."""
        split = self._split_prefix(name)
        if split is not None:
            return split[0].meta
        if self.import_paths and name not in self._entries and is_reference(name):
            return {}
        return self.info(name).meta

    def unknown_error(self, name: str) -> UnknownComponent:
        """The error for a name nothing matches, with the closest registered names."""
        hint = did_you_mean(name, self.names())
        if not hint and self._prefixes:
            hint = "; names may also be " + ", ".join(f"'{p}:<name>'" for p in self.prefixes())
        return UnknownComponent(f"unknown {self.kind} '{name}'{hint}")

    # -- creating ----------------------------------------------------------
    def create(self, name: str, *, context: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """Build the component ``name`` with keyword ``params``.

        ``context`` holds values a factory may take if its signature names
        them (a model factory's ``num_classes``, say); they are never an error.
        Unknown parameters are a ``UserError`` naming them.
        """
        self._load_plugins()
        split = self._split_prefix(name)
        if split is not None:
            prefix, rest = split
            return self._call(name, bind_first(prefix.factory, rest), {}, params, context)
        if name not in self._entries and self.import_paths and is_reference(name):
            return self._call(name, import_object(name), {}, params, context)
        entry = self.info(name)
        return self._call(name, entry.target, entry.defaults, params, context)

    def factory(self, name: str) -> Callable[..., Any]:
        """The callable ``create(name)`` calls (a prefix's factory, a user's imported object, a registered target)."""
        self._load_plugins()
        split = self._split_prefix(name)
        if split is not None:
            return split[0].factory
        if name not in self._entries and self.import_paths and is_reference(name):
            return import_object(name)
        return self.info(name).target

    def check(self, name: str, params: Mapping[str, Any], *, label: str | None = None) -> None:
        """Raise the ``UserError`` that ``create(name, **params)`` would for a bad name or parameter, building nothing
        (``label``: how the error names it, e.g. the spec's ``mymodel.py:make`` for ``/abs/mymodel.py:make``)."""
        self._load_plugins()
        if self._split_prefix(name) is not None:
            return  # prefix factories take open keyword sets (timm's own arguments)
        if name not in self._entries and self.import_paths and is_reference(name):
            factory, defaults = import_object(name), {}
        else:
            entry = self.info(name)
            factory, defaults = entry.target, entry.defaults
        self._rejectunknown_error(label or name, factory, {**defaults, **params})

    def _rejectunknown_error(self, name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
        accepted, takes_any = accepted_parameters(factory)
        unknown = [key for key in kwargs if not takes_any and key not in accepted]
        if unknown:
            raise UserError(
                f"{self.kind} '{name}': unknown parameter '{unknown[0]}'"
                f"{did_you_mean(unknown[0], accepted)}; it takes: {', '.join(sorted(accepted)) or 'nothing'}"
            )

    def _call(
        self,
        name: str,
        factory: Callable[..., Any],
        defaults: Mapping[str, Any],
        params: Mapping[str, Any],
        context: Mapping[str, Any] | None,
    ) -> Any:
        if not callable(factory):
            raise UserError(f"{self.kind} '{name}' is not callable")
        kwargs = {**defaults, **params}
        self._rejectunknown_error(name, factory, kwargs)
        accepted, takes_any = accepted_parameters(factory)
        for key, value in (context or {}).items():
            if key not in kwargs and (takes_any or key in accepted):
                kwargs[key] = value
        return factory(**kwargs)

    # -- listing -----------------------------------------------------------
    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, naturally sorted.

        A pattern starting with a registered prefix (``'timm:res*'``) lists
        that family through its lister.
        """
        split = self._split_prefix(pattern)
        if split is not None and split[0].lister is not None:
            prefix, rest = split
            found = (f"{prefix.prefix}:{n}" for n in prefix.lister(rest))
            return sorted(set(found), key=natural_key)
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]


def bind_first(factory: Callable[..., Any], first: str) -> Callable[..., Any]:
    """``factory`` with its first positional argument bound, keeping its keyword signature."""

    def bound(**kwargs: Any) -> Any:
        return factory(first, **kwargs)

    signature = inspect.signature(factory)
    params = list(signature.parameters.values())[1:]
    bound.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    bound.__name__ = getattr(factory, "__name__", "factory")
    return bound


def accepted_parameters(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword parameter names a callable accepts, and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in signature.parameters.values() if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return names, takes_any
