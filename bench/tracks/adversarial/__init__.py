"""The adversarial track: robust accuracy of models x defenses under a cascade of attacks x eps.

``track`` (plan, run, cells), ``evaluation`` (the cascade step and
``bench.evaluate``), ``sanity`` and ``flags`` (checks that an evaluation is not
broken), ``defended`` (trained models behind their defenses) and ``gallery``.
"""
