"""A pytest plugin (entry point ``pytest11``: ``frontier_bench``): the CI gate as a fixture and a marker.

::

    def test_robust(bench_check):
        bench_check("spec.toml", baseline="baseline.json")

    @pytest.mark.bench_check("spec.toml", baseline="baseline.json", tolerance=0.02)
    def test_robust_too():
        pass

Relative paths are taken from the test file's folder. A regression fails the
test with the same table ``bench check`` prints; a bad baseline or spec fails
it with the same one line. Pytest loads this module in every session of an
environment where frontier-bench is installed, so it imports nothing heavy
until a check runs, and a check adds no warnings to the user's summary
(``QUIET``: the deprecation and user warnings our code and the libraries it
calls for us raise, such as torchvision's JPEG codec under the jpeg defense).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

MARKER = "bench_check"
OURS = r"(bench|attacks|defenses|models|reports)(\.|$)"  # the packages of frontier-bench
QUIET = (  # (category, module regex) of the warnings a check keeps out of the user's test session
    (DeprecationWarning, OURS),
    (UserWarning, OURS),
    (DeprecationWarning, r"torchvision\.io(\.|$)"),  # the jpeg defense's codec, deprecated since torchvision 0.29
    (UserWarning, r"torchvision\.io(\.|$)"),
)


@contextmanager
def quiet_check() -> Iterator[None]:
    """Warnings of ``QUIET`` ignored while a check runs; the user's own filters come back after it."""
    with warnings.catch_warnings():
        for category, module in QUIET:
            warnings.filterwarnings("ignore", category=category, module=module)
        yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(config=None, *, baseline, tolerance=0.02, tolerances=None, out=None, device=None): "
        "run `bench check` on the spec against the baseline before the test body; fail on any regression",
    )


def _resolve(base: Path, path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else base / path


def run_check(
    base: Path,
    config: str | Path | None = None,
    *,
    baseline: str | Path,
    tolerance: float = 0.02,
    tolerances: Mapping[str, float] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    track: str | None = None,
) -> Any:
    """Run the gate; ``pytest.fail`` with the regression table (or the one-line error) unless every metric holds."""
    with quiet_check():  # the imports too: torch and torchvision warn as they load
        from bench.checking import check
        from bench.errors import UserError
        from reports.gate import check_text

        try:
            result = check(
                _resolve(base, baseline),
                config=_resolve(base, config),
                track=track,
                tolerance=tolerance,
                tolerance_for=[f"{metric}={value}" for metric, value in (tolerances or {}).items()],
                out=_resolve(base, out),
                device=device,
            )
        except UserError as error:
            pytest.fail(f"bench check: {error}", pytrace=False)
    if not result.passed:
        pytest.fail(check_text(result), pytrace=False)
    return result


@pytest.fixture
def bench_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``bench_check(config=None, *, baseline, tolerance=0.02, tolerances=None, out=None, device=None)`` -> the check's result."""
    base = Path(request.path).parent

    def run(config: str | Path | None = None, **options: Any) -> Any:
        return run_check(base, config, **options)

    return run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        run_check(Path(item.path).parent, *marker.args, **marker.kwargs)
