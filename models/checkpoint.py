"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)``; never pickle."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from bench.errors import UserError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a weights-only torch file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"checkpoint '{path}' is not a readable safetensors file: {error}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"checkpoint '{path}' is unsafe to load: it holds pickled Python objects, not only tensors (save model.state_dict(), or use safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        reason = (str(error).splitlines() or ["empty or truncated file"])[0]  # an empty file raises a bare EOFError
        raise UserError(f"checkpoint '{path}' is not a readable torch file: {reason}") from None
    for key in _NESTED_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint '{path}' is not a state dict (a mapping of names to tensors)")
    return dict(state)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` (or into its bare ``net`` when the file holds only that)."""
    state = read_state_dict(path)
    targets = [model] + ([model.net] if isinstance(getattr(model, "net", None), nn.Module) else [])
    problem = ""
    for target in targets:
        expected = set(target.state_dict())
        if set(state) == expected:
            try:
                target.load_state_dict(state, strict=True)
            except RuntimeError as error:
                problem = str(error).splitlines()[-1].strip()
                continue
            return model
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        problem = problem or f"missing {missing[:3]}, unexpected {extra[:3]}"
    raise UserError(f"checkpoint '{path}' does not fit the model: {problem}")


def save_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s weights as safetensors, atomically (a killed run leaves no half file)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    # copies: safetensors refuses tensors sharing memory, as a module registered twice (tied weights) gives
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True) for k, v in model.state_dict().items()}
    save_file(state, str(partial))
    partial.replace(path)
