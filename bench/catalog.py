"""The one list of registries: what ``bench list`` shows and what spec fields name components from.

Each kind maps to its registry's import path, imported only when asked for
(listing the tracks does not import torch's attack libraries).
"""

from __future__ import annotations

from typing import Any

from bench.registry import import_object

REGISTRIES: dict[str, str] = {
    "attacks": "attacks:ATTACKS",
    "models": "models:MODELS",
    "defenses": "defenses:DEFENSES",
    "estimators": "models:ESTIMATORS",
    "shifts": "bench.tracks.uncertainty.shifts:SHIFTS",
    "ood": "bench.tracks.uncertainty.ood:OOD_SETS",
    "corruptions": "bench.tracks.random_labels.corruptions:CORRUPTIONS",
    "datasets": "bench.data:DATASETS",
    "graphs": "bench.tracks.gnn.datasets:GRAPH_DATASETS",
    "graph-models": "bench.tracks.gnn.models:GRAPH_MODELS",
    "graph-attacks": "bench.tracks.gnn.attacks:GRAPH_ATTACKS",
    "graph-defenses": "bench.tracks.gnn.defenses:GRAPH_DEFENSES",
    "search-spaces": "bench.tracks.nas.spaces:SEARCH_SPACES",
    "strategies": "bench.tracks.nas.strategies:STRATEGIES",
    "tracks": "bench.tracks:TRACKS",
}


def registry(kind: str) -> Any:
    """The registry of one kind of component (a key of ``REGISTRIES``)."""
    return import_object(REGISTRIES[kind])
