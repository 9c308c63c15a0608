"""Defenses: training procedures and inference-time wrappers, registered by name.

``none`` is the undefended baseline. Each defense declares whether it is
randomized and differentiable, so the harness adds the adaptive attack a fair
evaluation needs (``defenses/base.py``).
"""

from bench.registry import Registry

DEFENSES: Registry = Registry("defense", entry_points="frontier_bench.defenses", import_paths=True)

from defenses import adapter_art, bit_depth, fast_at, jpeg, median, none, pgd_at, smoothing, trades  # noqa: E402,F401  (registration)

__all__ = ["DEFENSES"]
