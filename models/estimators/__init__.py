"""Uncertainty estimators, registered by name: each turns trained models into a predictive distribution.

``none`` (plain softmax), ``mc-dropout`` (Gal & Ghahramani 2016), ``ensemble``
(deep ensembles, Lakshminarayanan et al. 2017) and ``temperature`` (Guo et
al. 2017), one file each; add more through the ``frontier_bench.estimators``
entry-point group.
"""

from bench.registry import Registry

ESTIMATORS: Registry = Registry("estimator", entry_points="frontier_bench.estimators")

from models.estimators import ensemble, mc_dropout, none, temperature  # noqa: E402,F401  (registration)
from models.estimators.base import Estimator, Predictive, decompose  # noqa: E402

__all__ = ["ESTIMATORS", "Estimator", "Predictive", "decompose"]
