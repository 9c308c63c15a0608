"""TPE, the tree-structured Parzen estimator (Bergstra et al. 2011), through optuna's ``TPESampler`` (not a rewrite).

Each dimension is an optuna categorical parameter over the option indices;
asks and tells go through optuna's ask-and-tell interface on an in-memory
study, so the same seed and the same results give the same proposals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from bench.tracks.nas.strategies import Arch, Strategy, positive


class TPE(Strategy):
    batch = 1

    def __init__(
        self,
        sizes: Sequence[int],
        seed: int,
        *,
        startup: int = 10,  # random proposals before the Parzen estimators take over (optuna's n_startup_trials)
        candidates: int = 24,  # candidates drawn per proposal to maximize l(x)/g(x) (optuna's n_ei_candidates)
        multivariate: bool = True,  # one joint estimator over all dimensions (optuna's multivariate TPE)
    ) -> None:
        import optuna

        super().__init__(sizes, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate TPE is "experimental" in optuna's words, and has been since 2.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=positive(startup, "startup"), n_ei_candidates=positive(candidates, "candidates"), multivariate=bool(multivariate)
            )
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.pending: list = []

    def ask(self) -> Arch:
        trial = self.study.ask()
        arch = tuple(int(trial.suggest_categorical(f"d{i}", list(range(n)))) for i, n in enumerate(self.sizes))
        self.pending.append((arch, trial))
        return arch

    def tell(self, arch: Arch, value: float) -> None:
        asked, trial = self.pending.pop(0)
        assert asked == arch, "tell must follow the order of asks"
        self.study.tell(trial, value)
