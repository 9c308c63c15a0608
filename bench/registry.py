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
* ``package.module:attr`` (when ``import_paths=True``): a user's own factory.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import inspect
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bench.errors import UnknownComponent, UserError, did_you_mean

T = TypeVar("T")

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def natural_key(name: str) -> list[Any]:
    """Sort 'resnet10' after 'resnet9', as timm does."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def import_object(path: str) -> Any:
    """Import ``package.module:attr`` (attr may be dotted)."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"cannot import '{module_name}' for '{path}': {error}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"'{module_name}' has no attribute '{attr}' (from '{path}')") from None
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
        if self.import_paths and name not in self._entries and _IMPORT_PATH.match(name):
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
        if name not in self._entries and self.import_paths and _IMPORT_PATH.match(name):
            return self._call(name, import_object(name), {}, params, context)
        entry = self.info(name)
        return self._call(name, entry.target, entry.defaults, params, context)

    def check(self, name: str, params: Mapping[str, Any]) -> None:
        """Raise the ``UserError`` that ``create(name, **params)`` would for a bad name or parameter, building nothing."""
        self._load_plugins()
        if self._split_prefix(name) is not None:
            return  # prefix factories take open keyword sets (timm's own arguments)
        if name not in self._entries and self.import_paths and _IMPORT_PATH.match(name):
            factory, defaults = import_object(name), {}
        else:
            entry = self.info(name)
            factory, defaults = entry.target, entry.defaults
        self._rejectunknown_error(name, factory, {**defaults, **params})

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
