"""The random-label track's training loop (``fit``) against the plain PyTorch loop a user would write, in epochs per second.

Goal: ``fit`` trains at least as fast as the plain loop (ratio >= 1.0). Both
train the same ``mlp`` (hidden 512, same initial weights) on digits with
random labels, Adam at lr 1e-3, batches of 64, cross-entropy, on one CPU
thread, for a fixed number of epochs (``fit`` never stops early: threshold
1.01). The reference, timed round by round in the same process, is
``DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)`` with
``loss.item()`` summed every step, as typical code does.

``fit`` also runs an evaluation pass after every epoch (the learning curve),
which the plain loop does not: ``ratio`` compares training alone (``fit``'s
``train_seconds``), ``ratio_wall`` the whole call, evaluation included.

Run with `make benchmark` (or `pytest tests/benchmarks/test_random_labels_training.py --benchmark-enable -s`);
the figures go to the benchmark JSON and the terminal.
"""

from __future__ import annotations

import copy
import statistics

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.data import DATASETS
from bench.spec import TrainingSpec
from bench.tracks.random_labels.fitting import fit
from models import MODELS
from tests.benchmarks.conftest import interleaved_medians, report

HIDDEN = 512
BATCH = 64
LR = 1e-3


def plain_loop(model, x, y, epochs):
    """What a user writes: a shuffling DataLoader over a TensorDataset, Adam, cross-entropy, the loss read back every step."""

    def run():
        net = copy.deepcopy(model)
        optimizer = torch.optim.Adam(net.parameters(), lr=LR)
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
        net.train()
        for _ in range(epochs):
            total = 0.0
            for inputs, labels in loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(net(inputs), labels)
                loss.backward()
                optimizer.step()
                total += loss.item()
        return total

    return run


def test_fit_against_a_plain_pytorch_loop(benchmark, rounds):
    data = DATASETS.create("digits")
    torch.manual_seed(0)
    model = MODELS.create("mlp", context=data.model_context(), hidden=HIDDEN)
    x, x_test, y_test = data.x_train, data.x_test, data.y_test
    y = torch.randint(0, data.num_classes, (len(x),), generator=torch.Generator().manual_seed(0))  # random labels
    epochs = 2 if benchmark.disabled else 5
    training = TrainingSpec(epochs=epochs, lr=LR, batch_size=BATCH, optimizer="adam")
    fitted = []

    def ours():
        result = fit(copy.deepcopy(model), x, y, x_test, y_test, y != data.y_train, training=training, weight_decay=None, shift=0,
                     threshold=1.01, stop_when_fit=False, seed=0, device=torch.device("cpu"))  # fmt: skip
        fitted.append(result)
        return result

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        medians = interleaved_medians({"ours": ours, "plain": plain_loop(model, x, y, epochs)}, rounds)
        train_seconds = statistics.median(f.train_seconds for f in fitted[1:])  # the warm-up left out, as in the medians
        benchmark.pedantic(ours, rounds=rounds, iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert all(f.epochs == epochs and f.epochs_to_fit is None for f in fitted), "fit stopped early or fit random labels in a few epochs"
    plain = epochs / medians["plain"]
    report(
        benchmark,
        f"random-label training, mlp (hidden {HIDDEN}) on digits, {epochs} epochs, one thread: fit vs a plain DataLoader loop",
        {
            "ratio": epochs / train_seconds / plain,
            "ratio_wall": epochs / medians["ours"] / plain,
            "ours_train_epochs_per_second": epochs / train_seconds,
            "ours_wall_epochs_per_second": epochs / medians["ours"],
            "plain_epochs_per_second": plain,
        },
    )
