"""Shared fixtures: an isolated model cache, the digits data, a quickly trained CNN; tests marked ``gpu`` skip without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm never waits on the network in tests


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip where ``torch.cuda.is_available()`` is False (CUDA is asked once, and only if one is collected)."""
    marked = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not marked or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trained models go to a cache shared by the session's tests, never to ~/.cache."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def digits():
    from bench.data import DATASETS

    return DATASETS.create("digits")


@pytest.fixture(scope="session")
def trained_cnn(digits) -> torch.nn.Module:
    """small-cnn trained for a few epochs on digits (about 1 s), in eval mode."""
    from bench.spec import ModelSpec, TrainingSpec
    from bench.training import build_model, train_classifier

    model = build_model(ModelSpec("small-cnn"), digits, seed=0)
    return train_classifier(model, digits, TrainingSpec(epochs=5), seed=0, device=torch.device("cpu"))


@pytest.fixture
def batch(digits) -> tuple[torch.Tensor, torch.Tensor]:
    return digits.x_test[:24].clone(), digits.y_test[:24].clone()
