"""REINFORCE with an LSTM controller (Zoph & Le 2017, the seed lecture's NAS slide).

The controller is an LSTM that emits one choice per dimension of the space,
each fed back (embedded) as the next step's input; a softmax head per
dimension. It samples ``batch`` architectures, is told their values (the
reward R, validation accuracy by default) and takes one Adam step on

    - mean_k (R_k - b) * log p(arch_k)  -  entropy * mean_k H(arch_k)

where the baseline b is an exponential moving average of past rewards
(``baseline_decay``; the first batch's mean to start). The entropy bonus
keeps the controller exploring (Zoph et al. 2018, Pham et al. 2018); a
repeated architecture is rewarded from the search's table without a new
evaluation, so a converged controller costs no budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.errors import require
from bench.tracks.nas.strategies import Arch, Strategy, positive
from bench.training import one_cpu_thread

CPU = torch.device("cpu")


class Controller(nn.Module):
    """An LSTM over the dimensions: input at step i is the embedding of choice i - 1 (a learned start vector at step 0)."""

    def __init__(self, sizes: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in self.sizes)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)

    def _steps(self, choices: torch.Tensor | None, generator: torch.Generator | None, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced over ``choices`` (B, D), or ``batch`` rows sampled when None: (choices, log-probability, entropy) per row."""
        batch = batch if choices is None else len(choices)
        x = self.start.expand(batch, -1)
        state = None
        picked, log_p, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            logs = torch.log_softmax(head(state[0]), dim=1)
            choice = torch.multinomial(logs.exp(), 1, generator=generator).squeeze(1) if choices is None else choices[:, i]
            picked.append(choice)
            log_p = log_p + logs.gather(1, choice[:, None]).squeeze(1)
            entropy = entropy - (logs.exp() * logs).sum(1)
            x = self.embeddings[i](choice)
        return torch.stack(picked, 1), log_p, entropy

    def sample(self, generator: torch.Generator, batch: int) -> list[Arch]:
        with torch.no_grad():
            choices, _, _ = self._steps(None, generator, batch)
        return [tuple(int(c) for c in row) for row in choices.tolist()]

    def score(self, choices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, log_p, entropy = self._steps(choices, None, len(choices))
        return log_p, entropy


class Reinforce(Strategy):
    def __init__(
        self,
        sizes: Sequence[int],
        seed: int,
        *,
        batch: int = 5,  # architectures sampled per controller update (Zoph & Le: m children per update)
        hidden: int = 32,  # LSTM units (Zoph & Le: 35)
        lr: float = 0.005,  # Adam learning rate of the controller (0.01 collapses onto a few architectures within 200 evaluations)
        baseline_decay: float = 0.8,  # b <- decay * b + (1 - decay) * mean reward of the batch
        entropy: float = 0.01,  # weight of the entropy bonus
    ) -> None:
        super().__init__(sizes, seed)
        self.batch = positive(batch, "batch")
        require(isinstance(lr, int | float) and lr > 0, "lr", f"must be a number > 0, got {lr!r}")
        require(isinstance(baseline_decay, int | float) and 0 <= baseline_decay < 1, "baseline_decay", f"must be in [0, 1), got {baseline_decay!r}")
        require(isinstance(entropy, int | float) and entropy >= 0, "entropy", f"must be a number >= 0, got {entropy!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(self.sizes, positive(hidden, "hidden"))
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=float(lr))
        self.decay, self.entropy_weight = float(baseline_decay), float(entropy)
        self.baseline: float | None = None
        self.told: list[tuple[Arch, float]] = []
        self.queue: list[Arch] = []
        self.rewards: list[float] = []  # every reward told, in order (the test reads whether the controller learns)
        self.updates = 0

    def ask(self) -> Arch:
        if not self.queue:  # one forward pass samples the whole batch the next update learns from
            with one_cpu_thread(CPU):
                self.queue = self.controller.sample(self.generator, self.batch)
        return self.queue.pop(0)

    def tell(self, arch: Arch, value: float) -> None:
        self.told.append((arch, value))
        self.rewards.append(value)
        if len(self.told) < self.batch:
            return
        rewards = torch.tensor([v for _, v in self.told], dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        with one_cpu_thread(CPU):  # the same numbers on any machine, and no oversubscribed cores beside the workers
            log_p, entropy = self.controller.score(torch.tensor([a for a, _ in self.told], dtype=torch.long))
            loss = -((rewards - self.baseline) * log_p).mean() - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.baseline = self.decay * self.baseline + (1 - self.decay) * float(rewards.mean())
        self.told = []
        self.updates += 1
