"""Metrics of predictive distributions, as plain functions on tensors.

``probs`` is (N, C) with rows summing to one, ``labels`` is (N,) int64.
Each function returns a Python float. Conventions follow the references the
tests compare against: ECE equals torchmetrics' ``MulticlassCalibrationError``
(equal-width bins by ``torch.bucketize``; a confidence of exactly 1 falls in a
bin of its own, as there), AUROC and AUPR equal scikit-learn's
``roc_auc_score`` and ``average_precision_score`` (ties averaged), NLL and
Brier score equal scikit-learn's ``log_loss`` and (multiclass, unscaled)
``brier_score_loss``.
"""

from __future__ import annotations

import torch

_TINY = 1e-12  # log(0) guard: a probability of exactly 0 on the true class costs -log(1e-12) = 27.6 nats


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(dim=1) == labels).double().mean()) if len(labels) else 0.0


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean -log p(true class), in nats."""
    picked = probs.double().gather(1, labels.view(-1, 1)).squeeze(1)
    return float(-picked.clamp_min(_TINY).log().mean())


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over examples of the squared distance between ``probs`` and the one-hot label (0 to 2)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return float(((probs.double() - onehot) ** 2).sum(dim=1).mean())


def calibration_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per confidence bin (``n_bins`` equal-width bins plus one for confidence 1): count, correct count, summed confidence."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).to(confidence.dtype)
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    index = torch.bucketize(confidence, boundaries, right=True) - 1
    zeros = torch.zeros(n_bins + 1, dtype=torch.float64, device=confidence.device)
    count = zeros.scatter_add(0, index, torch.ones_like(confidence, dtype=torch.float64))
    hits = zeros.scatter_add(0, index, correct.double())
    summed = zeros.scatter_add(0, index, confidence.double())
    return count, hits, summed


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Sum over bins of (share of examples) x |accuracy - mean confidence| (Guo et al. 2017)."""
    count, hits, summed = calibration_bins(probs, labels, n_bins)
    filled = count > 0
    if not bool(filled.any()):
        return 0.0
    gap = (hits[filled] - summed[filled]).abs()  # count x |accuracy - confidence| per bin
    return float(gap.sum() / count.sum())


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their average rank (as scipy's rankdata)."""
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((ends - counts + 1 + ends) / 2)[inverse]


def ood_auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """P(score of an OOD input > score of an in-distribution one), ties counting half; OOD is the positive class."""
    n_in, n_out = len(scores_in), len(scores_out)
    if not n_in or not n_out:
        raise ValueError("ood_auroc needs in-distribution and OOD scores")
    ranks = _average_ranks(torch.cat([scores_in.double().flatten(), scores_out.double().flatten()]))
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def ood_aupr(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Average precision with OOD as the positive class: sum over thresholds of (recall step) x precision."""
    if not len(scores_out):
        raise ValueError("ood_aupr needs OOD scores")
    scores = torch.cat([scores_in.double().flatten(), scores_out.double().flatten()])
    positive = torch.cat([scores.new_zeros(len(scores_in)), scores.new_ones(len(scores_out))])
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order]
    last = torch.ones_like(scores, dtype=torch.bool)  # the last index of each run of tied scores is a threshold
    last[:-1] = scores[1:] != scores[:-1]
    true_positives = positive.cumsum(0)[last]
    predicted = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)[last]
    recall = true_positives / len(scores_out)
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((steps * true_positives / predicted).sum())


def aurc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the risk-coverage curve of selective prediction (Geifman et al. 2019), confidence = max probability.

    Examples are accepted from the most confident down (ties keep their
    order); the risk at coverage k/N is the error rate among the first k, and
    the area is the mean risk over k = 1..N. Lower is better.
    """
    if not len(labels):
        return 0.0
    confidence, predicted = probs.max(dim=1)
    order = torch.argsort(confidence, descending=True, stable=True)
    errors = (predicted[order] != labels[order]).double().cumsum(0)
    return float((errors / torch.arange(1, len(labels) + 1, dtype=torch.float64, device=errors.device)).mean())
