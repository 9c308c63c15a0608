"""Training until the training set is fit, with the learning curve of every epoch.

The whole training set sits on the device; each epoch draws its order there
(``torch.randperm`` with a device generator) and slices minibatches from it,
so a step never waits on the host: no DataLoader, no ``.item()``. After each
epoch one evaluation pass (eval mode: no dropout, no augmentation) measures
loss and accuracy on the training labels, the fraction of clean and of
corrupted points fit (Arpit et al. 2017), and test accuracy, and reads them
back in one transfer: the only host-device sync of an epoch, which the early
stop needs anyway. The learning rate is constant (no schedule), so the epoch
at which a set is fit does not depend on the epoch budget.

Time to fit counts training only (the evaluation passes are measurement), in
wall seconds; ``epochs_per_second`` is the training throughput.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.spec import TrainingSpec
from bench.tracks.random_labels.regularizers import translate
from bench.training import make_optimizer, one_cpu_thread

EVAL_BATCH = 1024


class Diverged(RuntimeError):
    """Training made the loss inf or nan: the job is invalid, not a measurement of memorization."""

    flag = "training-diverged"


@dataclass
class Curve:
    """Per epoch (1-based): loss and accuracy on the training labels, clean and corrupted fit, test accuracy, training seconds so far."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    clean_fit: list[float] | None = None
    corrupted_fit: list[float] | None = None
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("epoch", "loss", "train_accuracy", "test_accuracy", "clean_fit", "corrupted_fit", "seconds")}

    def csv(self) -> bytes:
        """The curve as CSV text, one row per epoch (the job's ``learning-curve.csv`` artifact)."""
        columns = {k: v for k, v in self.as_dict().items() if v is not None}
        lines = [",".join(columns)] + [",".join(f"{values[i]:.6g}" for values in columns.values()) for i in range(len(self.epoch))]
        return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Fitted:
    curve: Curve
    epochs_to_fit: int | None
    seconds_to_fit: float | None
    train_seconds: float

    @property
    def epochs(self) -> int:
        return len(self.curve.epoch)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    changed: torch.Tensor,
    *,
    training: TrainingSpec,
    weight_decay: float | None,
    shift: int,
    threshold: float,
    stop_when_fit: bool,
    seed: int,
    device: torch.device,
) -> Fitted:
    """Train ``model`` on (x, y) for up to ``training.epochs`` epochs (all tensors already on ``device``); on the CPU, one thread."""
    with one_cpu_thread(device):
        return _fit(model, x, y, x_test, y_test, changed, training, weight_decay, shift, threshold, stop_when_fit, seed, device)


def _fit(model, x, y, x_test, y_test, changed, training, weight_decay, shift, threshold, stop_when_fit, seed, device) -> Fitted:  # noqa: ANN001
    model.to(device)
    optimizer = make_optimizer(model, training, weight_decay=weight_decay)
    generator = torch.Generator(device=device).manual_seed(seed)
    changed = changed.to(device)
    partial = bool(changed.any())  # clean and corrupted fit are told apart only when some points were changed
    curve = Curve(clean_fit=[] if partial and not changed.all() else None, corrupted_fit=[] if partial else None)
    needed = math.ceil(round(threshold * len(y), 9))  # points to predict right (0.99 x 1000 is 990, not 991)
    epochs_to_fit = seconds_to_fit = None
    elapsed = 0.0
    for epoch in range(1, training.epochs + 1):
        start = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(y), generator=generator, device=device).split(training.batch_size):
            inputs = translate(x[batch], shift, generator) if shift else x[batch]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), y[batch]).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - start
        loss, hits, accuracy_test, clean_fit, corrupted_fit = _evaluate(model, x, y, x_test, y_test, changed)
        if not math.isfinite(loss):
            raise Diverged(f"training loss became {loss} at epoch {epoch} (lr {training.lr:g}): lower spec.training.lr")
        curve.epoch.append(epoch)
        curve.loss.append(loss)
        curve.train_accuracy.append(hits / len(y))
        curve.test_accuracy.append(accuracy_test)
        curve.seconds.append(elapsed)
        if curve.corrupted_fit is not None:
            curve.corrupted_fit.append(corrupted_fit)
        if curve.clean_fit is not None:
            curve.clean_fit.append(clean_fit)
        if epochs_to_fit is None and hits >= needed:
            epochs_to_fit, seconds_to_fit = epoch, elapsed
            if stop_when_fit:
                break
    return Fitted(curve, epochs_to_fit, seconds_to_fit, elapsed)


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, changed: torch.Tensor
) -> tuple[float, int, float, float, float]:
    """Eval-mode loss, points right and the share of unchanged / changed points right on the training labels, and test
    accuracy, read back in one host transfer (a share of an empty group is nan)."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in x.split(EVAL_BATCH)])
    correct = logits.argmax(1) == y
    test_hits = sum((model(chunk).argmax(1) == labels).sum() for chunk, labels in zip(x_test.split(EVAL_BATCH), y_test.split(EVAL_BATCH), strict=True))
    right = correct.float()
    found = [F.cross_entropy(logits, y), right.sum(), torch.as_tensor(test_hits, device=x.device).float(), right[~changed].mean(), right[changed].mean()]
    loss, hits, test, clean, corrupted = torch.stack(found).tolist()
    return loss, int(hits), test / len(y_test), clean, corrupted
