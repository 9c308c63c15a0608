"""The random-label track (Zhang et al. 2017): corruptions, regularizers, fitting, and the track itself."""
