"""The Ray executor on a real local cluster: the same results as the serial one, retried worker deaths, failures as results.

One cluster (every CPU of the machine, one CPU per task, one retry) serves the
whole module: starting one takes several seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from bench.errors import UserError
from bench.executors import make_executor
from bench.executors.serial import SerialExecutor
from bench.spec import ExecutorSpec
from bench.tracks import TRACKS, Task
from tests.bench.ray_track import make_task, run_all

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")

from bench.executors.ray import RayExecutor  # noqa: E402  (imports ray)

if "ray-test" not in TRACKS:
    TRACKS.register("ray-test", "tests.bench.ray_track:RayTestTrack", description="the Ray executor's test track")

SPEC = ExecutorSpec(name="ray", num_cpus=1, retries=1)


def task(position: int, **payload: Any) -> Task:
    return make_task("ray-test", position, **payload)


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayExecutor]:
    """One executor, and the local cluster it starts, for the module (BENCH_CACHE set as the tests see it)."""
    with pytest.MonkeyPatch.context() as patch:  # module fixtures come before the autouse cache isolation
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert not ray.is_initialized()
        ray_executor = make_executor(SPEC)
        assert isinstance(ray_executor, RayExecutor)
        yield ray_executor
        ray_executor.close()
        assert not ray.is_initialized(), "close() leaves the cluster it started running"


def test_same_results_as_serial(executor: RayExecutor) -> None:
    tasks = [task(i, x=i) for i in range(6)]
    remote = run_all(executor, tasks)
    local = run_all(SerialExecutor(), tasks)
    assert {k: (r.status, r.metrics) for k, r in remote.items()} == {k: (r.status, r.metrics) for k, r in local.items()}
    assert all(r.status == "ok" for r in remote.values())
    assert executor.slots == int(ray.cluster_resources()["CPU"])
    provenance = [r.provenance for r in remote.values()]
    assert {p["pid"] for p in provenance}.isdisjoint({os.getpid()}), "the tasks ran in the driver"
    assert all(p["torch_threads"] == 1 for p in provenance), "num_cpus=1: one torch thread per worker"
    assert all(p["bench_cache"] == os.environ["BENCH_CACHE"] for p in provenance), "the workers do not see BENCH_CACHE"
    caches = {(p["pid"], p["cache"]) for p in provenance}
    assert len(caches) == len({pid for pid, _ in caches}), "one cache per worker process"


def test_a_dead_worker_is_retried(executor: RayExecutor, tmp_path) -> None:
    marker = tmp_path / "crashed"
    tasks = [task(0, x=2, crash_once=str(marker)), task(1, x=3), task(2, x=4)]
    results = run_all(executor, tasks)
    assert marker.exists(), "the first try did not run"
    assert [r.status for r in results.values()] == ["ok"] * 3, [r.error for r in results.values()]
    expected = run_all(SerialExecutor(), [task(0, x=2, crash_once=str(marker))])
    assert results[tasks[0].job.key].metrics == expected[tasks[0].job.key].metrics


def test_a_worker_that_always_dies_is_a_failed_result(executor: RayExecutor) -> None:
    dying, fine = task(0, x=1, crash_always=True), task(1, x=5)
    results = run_all(executor, [dying, fine])
    failed = results[dying.job.key]
    assert failed.status == "failed"
    assert "worker running it died, 2 times (retries = 1)" in failed.error, failed.error
    assert "\n" not in failed.error
    assert results[fine.job.key].status == "ok"
    after = run_all(executor, [task(2, x=7)])  # the executor goes on
    assert [r.status for r in after.values()] == ["ok"]


def test_an_exception_travels_as_a_failed_result(executor: RayExecutor) -> None:
    raising = task(0, **{"raise": "no such attack: boom"})
    [result] = run_all(executor, [raising]).values()
    assert result.status == "failed"
    assert result.error == "ValueError: no such attack: boom"


@pytest.mark.parametrize("resource", ["GPU", "CPU"])
def test_a_job_the_cluster_cannot_place_is_a_user_error(executor: RayExecutor, resource: str) -> None:
    have = ray.cluster_resources().get(resource, 0)
    field = f"num_{resource.lower()}s"
    with pytest.raises(UserError, match=f"{field}={have + 1:g} per job, the cluster has {have:g} {resource}s") as error:
        RayExecutor(ExecutorSpec(name="ray", **{field: have + 1}))
    assert "\n" not in str(error.value)
    assert ray.is_initialized(), "an executor that found the cluster running shut it down"


def test_an_executor_on_a_running_cluster_leaves_it_running(executor: RayExecutor) -> None:
    with RayExecutor(ExecutorSpec(name="ray", workers=3)) as other:
        assert other.slots == 3
        [result] = run_all(other, [task(0, x=3)]).values()
        assert result.status == "ok"
    assert ray.is_initialized()


def test_a_run_whose_worker_is_killed_mid_job_finishes_whole_and_equals_the_serial_run(executor: RayExecutor, tmp_path) -> None:
    """The example track's test hook SIGKILLs the worker of the first job to run; Ray retries it; nothing is lost or doubled."""
    registered = "example" not in TRACKS
    if registered:
        TRACKS.register("example", "tests.example_track:ExampleTrack")
    try:
        _killed_run_equals_serial(executor, tmp_path)
    finally:
        if registered:  # other tests see the registry as the package leaves it
            TRACKS._entries.pop("example", None)


def _killed_run_equals_serial(executor: RayExecutor, tmp_path) -> None:
    import sqlite3

    from bench import runner
    from bench import spec as specs
    from bench.reporting import load_run

    example = TRACKS.create("example")

    def build(**fields: Any) -> Any:
        raw = {"track": "example", "steps": 100, **fields}
        return specs.build(specs.merge(example.default_spec(raw), raw, {}), base_dir=tmp_path)

    serial = runner.run(build(), tmp_path / "serial")
    marker = tmp_path / "killed-once"
    killed = runner.run(build(die_once=str(marker)), tmp_path / "ray", executor=executor)
    assert marker.exists(), "no worker was killed"
    assert killed.failed == [] and killed.planned == killed.ran == serial.planned == serial.ran  # both rounds, every job once
    with sqlite3.connect(tmp_path / "ray" / "results.db") as db:
        assert db.execute("SELECT count(*), count(DISTINCT key) FROM jobs WHERE status = 'ok'").fetchone() == (serial.planned, serial.planned)

    def cells(folder: str) -> list[dict]:
        return [{k: v for k, v in c.items() if k != "seconds"} for c in load_run(tmp_path / folder).cells]

    assert cells("ray") == cells("serial")


def test_an_address_nothing_answers_on_is_one_line_at_once() -> None:
    import socket

    from bench.executors.ray import reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=rf"nothing answers at '127.0.0.1:{port}'"):  # Ray itself would retry for minutes
        reachable(f"127.0.0.1:{port}")
    with pytest.raises(UserError, match="is not 'auto' or HOST:PORT"):
        reachable("localhost:http")
