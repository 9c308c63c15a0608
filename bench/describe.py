"""Discoverable defaults: a component's parameters with their defaults and meaning, and a track's default spec as TOML.

``bench list defenses pgd-at`` and ``bench list models small-cnn`` print
``parameters(factory)``: read from the signature (a function) or the fields (a
dataclass), each with the comment written beside it in the source, the one
place its meaning is kept. ``bench spec --track adversarial`` prints
``spec_toml``: every field of the header and of the track's section with the
value a run without a spec uses, ready to copy and edit.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
from collections.abc import Callable, Mapping
from typing import Any

# filled in by the track (a factory's context): from the dataset, the search space, the spec's header
_HIDDEN = {"input_shape", "num_classes", "mean", "std", "in_features", "classes", "graph_level", "sizes", "seed", "header_dataset"}


def _comments(obj: Any) -> dict[str, str]:
    """``name -> comment`` for each ``name: type = value  # comment`` (or ``name=value,  # comment``) line of ``obj``'s source."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    lines = source.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError):
        return {}
    for token in tokens:
        if token.type == tokenize.COMMENT:
            line = lines[token.start[0] - 1][: token.start[1]]
            match = re.match(r"^\s*\*?(\w+)\s*[:=]", line)
            if match:
                found.setdefault(match.group(1), token.string.lstrip("#").strip())
    return found


def parameters(factory: Callable[..., Any], defaults: Mapping[str, Any] | None = None) -> list[tuple[str, Any, str]]:
    """``(name, default, meaning)`` for each keyword parameter a user sets (dataset-given ones left out)."""
    target = factory.func if hasattr(factory, "func") else factory
    comments = _comments(target)
    out = []
    if dataclasses.is_dataclass(target):
        for item in dataclasses.fields(target):
            if item.init and item.name not in _HIDDEN:
                default = item.default if item.default is not dataclasses.MISSING else "(required)"
                out.append((item.name, (defaults or {}).get(item.name, default), comments.get(item.name, "")))
        return out
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name in _HIDDEN:
            continue
        default = "(required)" if param.default is inspect.Parameter.empty else param.default
        out.append((param.name, (defaults or {}).get(param.name, default), comments.get(param.name, "")))
    return out


def spec_toml(track_name: str) -> str:
    """The spec a run of ``track_name`` without ``--config`` uses, as TOML: header, training and the track's section."""
    import tomli_w

    from bench.spec import HEADER, build
    from bench.tracks import TRACKS

    track = TRACKS.create(track_name)
    raw = track.default_spec()
    built = build({"track": track_name, **raw})  # every value checked, and the defaults of what the raw spec leaves out
    header = {"track": track_name, "dataset": built.dataset, "n_examples": built.n_examples, "seed": built.seed}
    if track.replicates:
        header["seeds"] = built.seeds
    header.update({"device": built.device, "precision": built.precision, "memory_format": built.memory_format, "batch_size": built.batch_size})
    plain = {name: getattr(built, name) for name in track.fields if not isinstance(getattr(built, name), tuple)}
    section = {k: v for k, v in plain.items() if v is not None}  # TOML has no null: a field left out is its default
    tables = {k: v for k, v in raw.items() if k not in HEADER and k not in plain}
    executor = {"executor": raw["executor"]} if "executor" in raw else {}  # where the default runs (results do not depend on it)
    document = {**{k: v for k, v in header.items() if v is not None}, **section, "training": dataclasses.asdict(built.training), **executor, **tables}
    head = f"# the default spec of the {track_name} track: bench run --config THIS_FILE runs what `bench run --track {track_name}` runs\n"
    return head + tomli_w.dumps(document)
