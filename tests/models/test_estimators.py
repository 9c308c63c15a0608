"""Uncertainty estimators: the entropy split, MC dropout's modes and batching, temperature scaling, epistemic uncertainty on OOD inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.data import Dataset
from bench.errors import UserError
from bench.spec import ModelSpec, TrainingSpec
from bench.tracks.uncertainty import metrics
from bench.training import build_model, train_classifier
from models import ESTIMATORS
from models.estimators.base import decompose, entropy
from models.estimators.mc_dropout import dropout_only

CPU = torch.device("cpu")
VALIDATION = 300  # the last training points: held out for fitting, never trained on


@pytest.fixture(scope="module")
def split(digits):
    """digits' training set without its last VALIDATION points, and those points."""
    n = len(digits.y_train) - VALIDATION
    train = Dataset("digits-train", digits.x_train[:n], digits.y_train[:n], digits.x_test, digits.y_test, digits.classes)
    return train, digits.x_train[n:], digits.y_train[n:]


def _trained(data, name, *, epochs, seed=0, **params):
    model = build_model(ModelSpec(name, params), data, seed)
    return train_classifier(model, data, TrainingSpec(epochs=epochs), seed=seed, device=CPU)


@pytest.fixture(scope="module")
def dropout_mlp(split):
    return _trained(split[0], "mlp", epochs=15, dropout=0.3)


def test_entropy_decomposition_identities():
    generator = torch.Generator().manual_seed(0)
    samples = torch.softmax(3 * torch.randn(6, 50, 4, generator=generator), dim=-1)
    predictive = decompose(samples)
    assert torch.allclose(predictive.probs, samples.mean(0))
    assert torch.allclose(predictive.total, predictive.aleatoric + predictive.epistemic, atol=1e-6)
    assert bool((predictive.epistemic >= 0).all()) and bool((predictive.total <= torch.log(torch.tensor(4.0)) + 1e-6).all())
    same = decompose(samples[:1].expand(5, -1, -1))  # identical samples: no disagreement, no epistemic part
    assert torch.allclose(same.epistemic, torch.zeros(50), atol=1e-6)
    assert torch.allclose(same.total, entropy(samples[0]), atol=1e-6)
    onehot = torch.eye(4)[torch.tensor([0, 1, 2, 3])].unsqueeze(1)  # four confident members that all disagree
    split = decompose(onehot)
    assert float(split.aleatoric) == pytest.approx(0.0, abs=1e-6)
    assert float(split.epistemic) == pytest.approx(float(torch.log(torch.tensor(4.0))), abs=1e-6)


class _WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


def test_mc_dropout_samples_with_dropout_only_and_restores_modes():
    model = _WithBatchNorm()
    model.train()  # the caller's mode, to be restored
    model.net[1].eval()  # a mixed state, restored module by module; batch norm (net[2]) is in training mode
    before = model.net[2].running_mean.clone()
    modes = [m.training for m in model.modules()]
    estimator = ESTIMATORS.create("mc-dropout", samples=7, chunk=50 * 64)  # chunks of 7 inputs x 7 passes
    x = torch.rand(20, 1, 8, 8)
    stacked = estimator.stacked([model], x)
    assert stacked.shape == (7, 20, 10)
    assert not torch.allclose(stacked[0], stacked[1])  # dropout was on: the passes differ
    assert torch.equal(model.net[2].running_mean, before)  # batch norm frozen: no statistics updated
    assert [m.training for m in model.modules()] == modes and model.net[2].training and not model.net[1].training
    model.eval()
    model.net[4].train()
    with torch.no_grad():
        reference = torch.softmax(model(x), dim=1)  # batch norm in eval mode, dropout on: the same distribution per pass
    assert stacked.mean(dim=0).shape == reference.shape


def test_mc_dropout_restores_modes_after_an_error():
    model = _WithBatchNorm().eval()
    with pytest.raises(RuntimeError):
        ESTIMATORS.create("mc-dropout", samples=3).stacked([model], torch.rand(4, 1, 8, 9))  # wrong input size
    assert not any(m.training for m in model.modules())


def test_mc_dropout_on_a_model_without_dropout_is_an_error(split):
    estimator = ESTIMATORS.create("mc-dropout")
    plain = build_model(ModelSpec("small-cnn"), split[0], 0)  # dropout = 0: its Dropout layers drop nothing
    with pytest.raises(UserError, match="mc-dropout: model 'small-cnn' has no dropout layers") as error:
        estimator.check(plain, "small-cnn")
    assert "\n" not in str(error.value)
    estimator.check(build_model(ModelSpec("small-cnn", {"dropout": 0.25}), split[0], 0), "small-cnn(dropout=0.25)")


def test_bad_parameters_name_their_field():
    with pytest.raises(UserError, match="samples: must be >= 1, got 0"):
        ESTIMATORS.create("mc-dropout", samples=0)
    with pytest.raises(UserError, match="size: must be >= 2"):
        ESTIMATORS.create("ensemble", size=1)


def test_temperature_scaling_lowers_nll_and_ece_on_held_out_data(split, digits):
    """A briefly trained small-cnn with dropout is badly calibrated (underconfident); T fitted on the validation split fixes it on test data."""
    model = _trained(split[0], "small-cnn", epochs=3, dropout=0.25)
    x_val, y_val = split[1], split[2]
    plain = ESTIMATORS.create("none").predict([model], digits.x_test)
    scaled_estimator = ESTIMATORS.create("temperature").fit([model], x_val, y_val)
    scaled = scaled_estimator.predict([model], digits.x_test)
    y = digits.y_test
    assert scaled_estimator.temperature != pytest.approx(1.0, abs=0.05)
    assert metrics.accuracy(scaled.probs, y) == metrics.accuracy(plain.probs, y)  # scaling never changes the prediction
    assert metrics.negative_log_likelihood(scaled.probs, y) < metrics.negative_log_likelihood(plain.probs, y) - 0.02
    assert metrics.expected_calibration_error(scaled.probs, y) < metrics.expected_calibration_error(plain.probs, y) - 0.02


def _epistemic_in_and_out(estimator, members, x):
    ood = {"inverted": 1 - x, "uniform-noise": torch.rand(x.shape, generator=torch.Generator().manual_seed(0))}
    inside = float(estimator.predict(members, x).epistemic.mean())
    return inside, {name: float(estimator.predict(members, x_out).epistemic.mean()) for name, x_out in ood.items()}


def test_mc_dropout_epistemic_is_higher_out_of_distribution(dropout_mlp, digits):
    inside, outside = _epistemic_in_and_out(ESTIMATORS.create("mc-dropout", samples=30), [dropout_mlp], digits.x_test)
    for name, value in outside.items():
        assert value > 1.2 * inside, f"{name}: epistemic {value:.4f} vs {inside:.4f} in distribution"


def test_ensemble_epistemic_is_higher_out_of_distribution(split, digits):
    members = [_trained(split[0], "mlp", epochs=8, seed=seed) for seed in range(3)]
    estimator = ESTIMATORS.create("ensemble", size=3)
    inside, outside = _epistemic_in_and_out(estimator, members, digits.x_test)
    for name, value in outside.items():
        assert value > 1.2 * inside, f"{name}: epistemic {value:.4f} vs {inside:.4f} in distribution"
    assert ESTIMATORS.create("none").predict(members[:1], digits.x_test).epistemic.abs().max() == 0


def test_mc_dropout_batches_the_passes():
    """T passes over N inputs are ceil(N T / chunk) forward calls of repeated batches, not N T calls."""
    model = _WithBatchNorm().eval()
    calls: list[int] = []
    model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    ESTIMATORS.create("mc-dropout", samples=10, chunk=100 * 64).predict([model], torch.rand(25, 1, 8, 8))  # 100 rows of 64 pixels
    assert calls == [100, 100, 50]  # 10 inputs x 10 passes per call


def test_mc_dropout_runs_the_layers_before_the_first_dropout_once_with_the_same_result():
    from models.zoo import small_cnn

    torch.manual_seed(0)
    model = small_cnn(input_shape=(1, 8, 8), num_classes=10, dropout=0.25).eval()
    calls: list[int] = []
    model[1].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))  # the first convolution
    x = torch.rand(12, 1, 8, 8)
    estimator = ESTIMATORS.create("mc-dropout", samples=5)
    torch.manual_seed(1)
    shared = estimator.stacked([model], x)
    assert sum(calls) == 12  # once per input, not once per input and pass
    torch.manual_seed(1)  # the whole model on the repeated batch: the same masks from the same seed
    with dropout_only(model), torch.no_grad():
        reference = torch.softmax(model(x.repeat(5, 1, 1, 1)), dim=1).view(5, 12, -1)
    assert torch.allclose(shared, reference, atol=1e-6)
