"""The shared model cache: workers that need one recipe at the same time train it once (a lock per recipe)."""

from __future__ import annotations

import multiprocessing

import torch

from bench.data import DATASETS
from bench.spec import ModelSpec, TrainingSpec
from bench.training import obtain_model


def obtain(cache: str) -> tuple[bool, str, list[float]]:
    """In a separate process: obtain small-cnn's recipe from the cache folder; (was it cached, recipe, first weights)."""
    import os

    os.environ["BENCH_CACHE"] = cache
    data = DATASETS.create("digits")
    found = obtain_model(ModelSpec("small-cnn"), data, {"name": "digits"}, TrainingSpec(epochs=2), seed=0, device=torch.device("cpu"))
    return found.cached, found.recipe, next(found.model.parameters()).flatten()[:5].tolist()


def test_two_workers_needing_one_recipe_train_it_once(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(obtain, [str(tmp_path)] * 2)
    assert sorted(cached for cached, _, _ in results) == [False, True]  # one trained, the other waited and loaded its weights
    assert results[0][1:] == results[1][1:]
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 1
