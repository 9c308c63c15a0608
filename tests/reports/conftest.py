"""A small finished run, shared by the report tests (read only: copy it before changing its store)."""

from __future__ import annotations

import pytest

SPEC = """
n_examples = 60
[[models]]
name = "small-cnn"
[[models]]
name = "mlp"
[[attacks]]
name = "fgsm"
eps = [0.1, 0.2]
[[attacks]]
name = "pgd"
eps = [0.1, 0.2]
steps = 5
[[attacks]]
name = "pgd-l2"
eps = [1.0]
steps = 5
[training]
epochs = 3
"""


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory):
    """Two models x (FGSM, PGD at two eps, PGD-L2 at one): 10 jobs with gallery examples, and their reports."""
    from bench.cli import main

    folder = tmp_path_factory.mktemp("finished")
    (folder / "spec.toml").write_text(SPEC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", "--config", str(folder / "spec.toml"), "--out", str(folder / "run"), "-q"]) == 0
    return folder / "run"
