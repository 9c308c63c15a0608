"""Randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019).

Training: Gaussian noise augmentation of the base classifier. Inference: the
smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)``. The
model the attacks face returns the log of the Monte-Carlo average of softmax
outputs over ``samples`` noise draws: randomized and differentiable, so the
harness attacks it with EOT. ``certify`` is Cohen et al.'s CERTIFY: a
certified L2 radius ``sigma * Phi^-1(pA_lower)`` per example, with a
Clopper-Pearson lower bound at confidence ``1 - alpha``; ``predict`` is their
PREDICT, which abstains when the top two classes are not told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import require
from defenses import DEFENSES
from defenses.base import Defense

ABSTAIN = -1


class Smoothed(nn.Module):
    """log E[softmax(base(x + noise))] over ``samples`` draws, as logits.

    Randomized (declared, so the harness attacks it with EOT): the harness counts each of its predictions
    as the majority over the spec's ``draws`` passes, an estimate of the smoothed classifier g.
    """

    randomized = True
    differentiable = True

    def __init__(self, base: nn.Module, sigma: float, samples: int) -> None:
        super().__init__()
        self.base, self.sigma, self.samples = base, sigma, samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        probabilities = F.softmax(self.base(batch + self.sigma * torch.randn_like(batch)), dim=1)
        return probabilities.view(self.samples, x.shape[0], -1).mean(dim=0).clamp_min(1e-12).log()


@torch.no_grad()
def class_counts(base: nn.Module, x: torch.Tensor, *, sigma: float, draws: int, chunk: int = 16384) -> torch.Tensor:
    """How often the base classifier predicts each class under ``draws`` noise draws, per example: (B, classes)."""
    counts: torch.Tensor | None = None
    per_round = max(1, chunk // max(1, x.shape[0]))
    done = 0
    while done < draws:
        k = min(per_round, draws - done)
        batch = x.repeat(k, *([1] * (x.dim() - 1)))
        predictions = base(batch + sigma * torch.randn_like(batch)).argmax(dim=1).view(k, x.shape[0])
        one_hot = F.one_hot(predictions, num_classes=base(x[:1]).shape[1]).sum(dim=0)
        counts = one_hot if counts is None else counts + one_hot
        done += k
    assert counts is not None
    return counts


@torch.no_grad()
def predict_with_abstain(base: nn.Module, x: torch.Tensor, *, sigma: float, draws: int, alpha: float) -> torch.Tensor:
    """Cohen et al.'s PREDICT: the top class, or ABSTAIN when a binomial test cannot tell the top two apart."""
    from scipy.stats import binomtest

    counts = class_counts(base, x, sigma=sigma, draws=draws)
    top2 = counts.topk(2, dim=1)
    out = top2.indices[:, 0].clone()
    for i, (n_a, n_b) in enumerate(top2.values.tolist()):
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            out[i] = ABSTAIN
    return out


def lower_confidence_bound(successes: torch.Tensor, trials: int, alpha: float) -> torch.Tensor:
    """One-sided Clopper-Pearson lower bound on a binomial proportion (scipy on the host; the bound on ``successes``' device)."""
    from scipy.stats import beta

    k = successes.cpu().numpy()
    bound = beta.ppf(alpha, k, trials - k + 1)
    return torch.as_tensor(bound, dtype=torch.float64, device=successes.device).nan_to_num(0.0)


@DEFENSES.register("randomized-smoothing", description="Gaussian randomized smoothing with certified L2 radii (Cohen et al. 2019)")
@dataclass(frozen=True, kw_only=True)
class RandomizedSmoothing(Defense):
    sigma: float = 0.25  # standard deviation of the Gaussian noise (training and prediction)
    samples: int = 4  # noise draws in the model the attacks face
    n0: int = 100  # draws to pick the class to certify
    n: int = 1000  # draws to bound its probability
    alpha: float = 0.001  # failure probability of the certificate

    def __post_init__(self) -> None:
        require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")
        for name in ("samples", "n0", "n"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
        require(0 < self.alpha < 1, "alpha", f"must be in (0, 1), got {self.alpha}")

    @property
    def randomized(self) -> bool:
        return True

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x + self.sigma * torch.randn_like(x)), y)

    def wrap(self, model: nn.Module) -> nn.Module:
        return Smoothed(model, self.sigma, self.samples)

    @staticmethod
    def base(model: nn.Module) -> nn.Module:
        return model.base if isinstance(model, Smoothed) else model

    def certify(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Certified L2 radius per example, on ``x``'s device; negative where CERTIFY abstains or certifies a wrong class."""
        from scipy.stats import norm

        base = self.base(model)
        guess = class_counts(base, x, sigma=self.sigma, draws=self.n0).argmax(dim=1)
        counts = class_counts(base, x, sigma=self.sigma, draws=self.n)
        p_lower = lower_confidence_bound(counts.gather(1, guess[:, None]).squeeze(1), self.n, self.alpha)
        radius = torch.as_tensor(self.sigma * norm.ppf(p_lower.clamp(max=1 - 1e-12).cpu().numpy()), dtype=torch.float32, device=x.device)
        radius[p_lower < 0.5] = -1.0
        radius[guess != y] = -1.0
        return radius

    def predict(self, model: nn.Module, x: torch.Tensor, *, draws: int | None = None) -> torch.Tensor:
        """Cohen et al.'s PREDICT: the top class, or ABSTAIN when a binomial test cannot tell the top two apart."""
        return predict_with_abstain(self.base(model), x, sigma=self.sigma, draws=draws or self.n, alpha=self.alpha)
