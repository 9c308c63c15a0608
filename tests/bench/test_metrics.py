"""bench.metrics against torchmetrics and scikit-learn on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from torchmetrics.classification import MulticlassCalibrationError

from bench.tracks.uncertainty import metrics
from tests.helpers import host_tensors_fail

CLASSES = 5


def _predictions(seed: int, n: int = 400, sharp: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    logits = torch.randn(n, CLASSES, generator=generator) * sharp
    logits[torch.arange(n), labels] += 2.0  # mostly right, not always
    return torch.softmax(logits, dim=1), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_equals_torchmetrics(seed):
    probs, labels = _predictions(seed)
    probs[:7] = torch.nn.functional.one_hot(labels[:7], CLASSES).float()  # confidence exactly 1: its own bin, as in torchmetrics
    reference = MulticlassCalibrationError(num_classes=CLASSES, n_bins=15, norm="l1")(probs, labels)
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(float(reference), abs=1e-6)
    coarse = MulticlassCalibrationError(num_classes=CLASSES, n_bins=4, norm="l1")(probs, labels)
    assert metrics.expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(float(coarse), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_nll_brier_accuracy_equal_sklearn(seed):
    probs, labels = _predictions(seed)
    probs = probs.double() / probs.double().sum(dim=1, keepdim=True)  # exactly normalized, as sklearn checks
    p, y = probs.numpy(), labels.numpy()
    assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(log_loss(y, p, labels=list(range(CLASSES))), abs=1e-6)
    assert metrics.brier_score(probs, labels) == pytest.approx(brier_score_loss(y, p, labels=list(range(CLASSES))), abs=1e-6)
    assert metrics.accuracy(probs, labels) == pytest.approx(float(np.mean(p.argmax(1) == y)))


def test_brier_binary_is_twice_sklearns_binary_brier():
    """Two classes: our sum over both classes is 2 (p1 - y)^2, sklearn's binary score (p1 - y)^2."""
    probs, labels = _predictions(3)
    two = torch.stack([probs[:, 0], 1 - probs[:, 0]], dim=1)
    binary = (labels != 0).long()
    assert metrics.brier_score(two, binary) == pytest.approx(2 * brier_score_loss(binary.numpy(), two[:, 1].double().numpy()), abs=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_ood_auroc_and_aupr_equal_sklearn(ties):
    generator = torch.Generator().manual_seed(4)
    scores_in, scores_out = torch.randn(300, generator=generator), torch.randn(200, generator=generator) + 0.8
    if ties:  # rounded scores: many ties, which both must average the same way
        scores_in, scores_out = scores_in.round(decimals=1), scores_out.round(decimals=1)
    y = np.r_[np.zeros(300), np.ones(200)]
    s = np.r_[scores_in.numpy(), scores_out.numpy()]
    assert metrics.ood_auroc(scores_in, scores_out) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert metrics.ood_aupr(scores_in, scores_out) == pytest.approx(average_precision_score(y, s), abs=1e-9)


def test_aurc_on_a_hand_example():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong): risks at coverage 1..4 = 0, 1/2, 1/3, 2/4
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    labels = torch.tensor([0, 0, 0, 0])
    assert metrics.aurc(probs, labels) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    perfect = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])  # the two errors are the least confident
    assert metrics.aurc(perfect, labels) == pytest.approx((0 + 0 + 1 / 3 + 2 / 4) / 4)


def test_metrics_make_no_host_tensors():
    """On CUDA the scores live on the GPU: a tensor a metric makes without a device would meet them there and fail."""
    probs, labels = _predictions(0, n=50)
    confidence = probs.max(dim=1).values
    with host_tensors_fail():
        for name in ("accuracy", "negative_log_likelihood", "brier_score", "expected_calibration_error", "aurc"):
            getattr(metrics, name)(probs, labels)
        metrics.calibration_bins(probs, labels)
        metrics.ood_auroc(confidence[:30], confidence[30:])
        metrics.ood_aupr(confidence[:30], confidence[30:])
