"""Pixel-space attacks: ``attack(model, x, y) -> x_adv``, registered by name.

ATTACKS.create("pgd", eps=0.1, steps=20, norm="l2")
"""

from bench.registry import Registry

ATTACKS: Registry = Registry("attack", entry_points="frontier_bench.attacks", import_paths=True)

from attacks import adapter_art, adapter_torchattacks, bpda, eot, fgsm, noise, pgd, presets  # noqa: E402,F401  (registration; presets last)

__all__ = ["ATTACKS"]
