"""Models take images in [0, 1] and return logits; registered by name.

Sources: the built-in zoo (``small-cnn``, ``mlp``), ``timm:<name>``,
``torchvision:<name>``, and ``package.module:factory`` for a user's own model.
"""

from bench.registry import Registry

MODELS: Registry = Registry("model", entry_points="frontier_bench.models", import_paths=True)

from models import adapters, cell, zoo  # noqa: E402,F401  (registration)
from models.estimators import ESTIMATORS  # noqa: E402

__all__ = ["ESTIMATORS", "MODELS"]
