"""frontier-bench: a benchmark harness for the known limits of deep networks.

Kept free of heavy imports so that ``attacks``, ``models`` and ``defenses``
can import ``bench.registry`` without cycles.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``bench.evaluate`` without importing torch when only the registry is needed."""
    if name == "evaluate":
        from bench.tracks.adversarial.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'bench' has no attribute '{name}'")
