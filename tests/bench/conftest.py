"""Fixtures of the harness tests: a team's project folder for the CI gate (spec, defended and undefended weights, baseline)."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main

SPEC = """
n_examples = 100
[[models]]
name = "small-cnn"
checkpoint = "model.safetensors"
[[attacks]]
name = "fgsm"
eps = [0.1, 0.2]
[[attacks]]
name = "pgd"
eps = [0.1, 0.2]
steps = 10
"""


def fgsm_trained(digits, *, epochs: int, eps: float, seed: int = 0) -> torch.nn.Module:
    """small-cnn with fast adversarial training (FGSM from a random start, Wong et al. 2020): the defended model."""
    from bench.spec import ModelSpec, TrainingSpec
    from bench.training import build_model, train_classifier
    from defenses import DEFENSES

    model = build_model(ModelSpec("small-cnn"), digits, seed=seed)
    fast_at = DEFENSES.create("fast-at", eps=eps)
    return train_classifier(model, digits, TrainingSpec(epochs=epochs), seed=seed, device=torch.device("cpu"), objective=fast_at)


@pytest.fixture(scope="session")
def project(tmp_path_factory, digits, trained_cnn):
    """A team's folder: spec.toml naming model.safetensors (the defended model), a baseline made from its run, and an undefended model."""
    from models.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("project")
    (folder / "spec.toml").write_text(SPEC)
    save_checkpoint(fgsm_trained(digits, epochs=1, eps=0.2), folder / "model.safetensors")
    save_checkpoint(trained_cnn, folder / "undefended.safetensors")
    with pytest.MonkeyPatch.context() as patch:  # session fixtures come before the autouse cache isolation
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", "--config", str(folder / "spec.toml"), "--out", str(folder / "baseline-run"), "-q"]) == 0
    assert main(["baseline", str(folder / "baseline-run"), "-o", str(folder / "baseline.json")]) == 0
    return folder
