"""Bad input refused before any compute: every model of a spec is built and run on one batch of its data.

A factory that raises or returns something else than a ``torch.nn.Module``, a
checkpoint whose keys or shapes do not fit, a model that does not take the
dataset's images, that returns other than one logit per class, or inf/nan:
each is one line naming the model in the spec (``spec.models[0] (mymodel.py:make):
returns shape (8, 15); digits has 10 classes``), exit code 2, before anything is
trained, attacked or written. The runner calls it before the track's own
``validate``.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import ParamError, UserError, one_line
from bench.fields import ModelSpec, spec_models
from bench.guard import eval_mode

BATCH = 8


def check_examples(spec: Any, cache: Any) -> None:
    """``n_examples`` no larger than the test set: a number cut silently would be another evaluation than asked for."""
    from bench.worker import dataset

    if spec.n_examples is not None:
        available = len(dataset(spec, cache).y_test)
        if spec.n_examples > available:
            raise UserError(f"spec.n_examples: {spec.n_examples} asked for, but {spec.dataset} has {available} test points")


def check_models(spec: Any, cache: Any) -> None:
    """Build each model of ``spec`` (seeded, its checkpoint loaded) and run it forward on ``BATCH`` test images."""
    from bench.worker import dataset

    models = spec_models(spec.section)
    if not models:
        return
    data = dataset(spec, cache)
    x = data.x_test[:BATCH]
    for i, model in enumerate(models):
        where = f"spec.models[{i}] ({model.label})"
        try:
            problem = _problem(model, data, x, spec.seed)
        except ParamError as error:
            raise UserError(f"spec.models[{i}].{error.field} ({model.label}): {error.message}") from None
        except UserError as error:
            raise UserError(f"{where}: {error}") from None
        if problem:
            raise UserError(f"{where}: {problem}")


def _problem(model: ModelSpec, data: Any, x: torch.Tensor, seed: int) -> str:
    """What is wrong with ``model`` on these inputs, or ''."""
    from bench.training import build_model

    try:
        built = build_model(model, data, seed)
    except UserError:
        raise
    except Exception as error:  # the user's factory raised
        return f"building it failed: {one_line(error)}"
    try:
        with torch.no_grad(), eval_mode(built):
            out = built(x)
    except Exception as error:
        return f"fails on a batch of {data.name} images of shape {tuple(x.shape)} (N, C, H, W in [0, 1]): {one_line(error)}"
    if not isinstance(out, torch.Tensor):
        return f"returns a {type(out).__name__}; it must return a tensor of logits, shape (N, {data.num_classes})"
    if tuple(out.shape) != (len(x), data.num_classes):
        expected = (len(x), data.num_classes)
        return f"returns shape {tuple(out.shape)} on a batch of {len(x)}; {data.name} has {data.num_classes} classes, so it must be {expected}"
    if not torch.isfinite(out).all():
        return f"returns non-finite logits (inf or nan) on clean {data.name} images" + (" (its checkpoint holds inf or nan?)" if model.checkpoint else "")
    return ""
