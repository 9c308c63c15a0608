"""The uncertainty track: calibration, dataset shift, OOD detection and adversarial detection of uncertainty estimators.

``track`` (plan, run, cells), ``metrics`` (NLL, Brier, ECE, AURC, AUROC),
``shifts`` and ``ood`` (registries of dataset shifts and OOD sets).
"""
