"""The processes executor: the serial executor's results from worker processes of this machine; a worker that dies fails its job, never the run.

One executor (two workers, one torch thread each) serves the module: each
worker is spawned and imports torch, seconds apiece. Its tasks run a track
written at test time into a folder that only this process's ``sys.path``
reaches, so a task that runs at all shows the workers import what the
driver can.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.executors import make_executor
from bench.executors.processes import ProcessesExecutor
from bench.executors.serial import SerialExecutor
from bench.spec import ExecutorSpec, spec_from
from bench.tracks import TRACKS, JobResult, Task
from tests.bench.ray_track import make_task, run_all

TRACK = "processes-test"
MODULE = "processes_path_track"  # lives only in a temporary folder appended to sys.path
TRACK_SOURCE = '''
"""The Ray test track, plus ``sleep`` (seconds before the job runs) and the file the worker imported this module from."""

import time

from tests.bench.ray_track import RayTestTrack


class PathTrack(RayTestTrack):
    name = "processes-test"

    def run(self, task, cache):
        time.sleep(task.job.payload.get("sleep", 0))
        result = super().run(task, cache)
        result.provenance["track_file"] = __file__
        return result
'''
DIED = "the worker process running it died"
EXAMPLE_SPEC = 'track = "example"\nsteps = 100\n[executor]\nworkers = 2\n'


def task(position: int, **payload: Any) -> Task:
    return make_task(TRACK, position, **payload)


def running(process: multiprocessing.Process) -> bool:
    """Whether ``process`` still runs once given time to stop (a pid that the pool's own thread reaped first is gone, not running)."""
    process.join(timeout=30)
    if not process.is_alive():
        return False
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def track_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test track's folder, on this process's sys.path only (not on PYTHONPATH), with the track registered from it."""
    folder = tmp_path_factory.mktemp("path-only")
    (folder / f"{MODULE}.py").write_text(TRACK_SOURCE)
    sys.path.append(str(folder))
    TRACKS.register(TRACK, f"{MODULE}:PathTrack", description="the processes executor's test track")
    try:
        yield folder
    finally:
        TRACKS._entries.pop(TRACK, None)
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def executor(track_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessesExecutor]:
    """One executor with two workers for the module (BENCH_CACHE set as the tests see it); closing it stops every worker."""
    with pytest.MonkeyPatch.context() as patch:  # module fixtures come before the autouse cache isolation
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        processes = make_executor(ExecutorSpec(name="processes", workers=2))
        assert isinstance(processes, ProcessesExecutor)
        yield processes
        workers = multiprocessing.active_children()
        processes.close()
        assert not [w.pid for w in workers if running(w)], "close() leaves worker processes running"


@pytest.fixture(scope="module")
def serial_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example track (tests/example_track.py, registered as its plugin entry point would) run serially with EXAMPLE_SPEC: the reference."""
    registered = "example" not in TRACKS
    if registered:
        TRACKS.register("example", "tests.example_track:ExampleTrack")
    folder = tmp_path_factory.mktemp("example")
    (folder / "spec.toml").write_text(EXAMPLE_SPEC)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
            assert main(["run", "--config", str(folder / "spec.toml"), "--executor", "serial", "--out", str(folder / "serial"), "-q"]) == 0
        yield folder
    finally:
        if registered:  # other tests see the registry as the package leaves it
            TRACKS._entries.pop("example", None)


def cells(run_dir: Path) -> list[dict]:
    """A run's leaderboard cells, less their wall times."""
    from bench.reporting import load_run

    return [{k: v for k, v in c.items() if k != "seconds"} for c in load_run(run_dir).cells]


def ok_jobs(run_dir: Path) -> tuple[int, int]:
    """Jobs stored ok, and distinct keys among them."""
    with sqlite3.connect(run_dir / "results.db") as db:
        return db.execute("SELECT count(*), count(DISTINCT key) FROM jobs WHERE status = 'ok'").fetchone()


def test_same_results_as_serial_from_two_worker_processes(executor: ProcessesExecutor) -> None:
    tasks = [task(i, x=i) for i in range(6)]
    spread = run_all(executor, tasks)
    local = run_all(SerialExecutor(), tasks)
    assert {k: (r.status, r.metrics) for k, r in spread.items()} == {k: (r.status, r.metrics) for k, r in local.items()}
    assert all(r.status == "ok" for r in spread.values())
    assert executor.slots == 2
    provenance = [r.provenance for r in spread.values()]
    pids = {p["pid"] for p in provenance}
    assert os.getpid() not in pids, "the tasks ran in the driver"
    assert len(pids) <= 2, "more worker processes than workers = 2"
    assert all(p["torch_threads"] == 1 for p in provenance), "num_cpus=1: one torch thread per worker"
    assert all(p["bench_cache"] == os.environ["BENCH_CACHE"] for p in provenance), "the workers do not see BENCH_CACHE"
    caches = {(p["pid"], p["cache"]) for p in provenance}
    assert len(caches) == len(pids), "one cache per worker process, kept across its tasks"


def test_workers_import_through_the_drivers_sys_path(executor: ProcessesExecutor, track_folder: Path) -> None:
    assert str(track_folder) not in os.environ.get("PYTHONPATH", "")
    [result] = run_all(executor, [task(0, x=3)]).values()
    assert result.status == "ok", result.error
    assert result.provenance["track_file"] == str(track_folder / f"{MODULE}.py")


def test_a_dead_worker_fails_its_job_and_later_jobs_run_in_new_workers(executor: ProcessesExecutor) -> None:
    [failed] = run_all(executor, [task(0, x=2, crash_always=True)]).values()
    assert failed.status == "failed"
    assert failed.error.startswith(DIED), failed.error
    assert "\n" not in failed.error
    after = run_all(executor, [task(1, x=3), task(2, x=4)])
    assert [r.status for r in after.values()] == ["ok", "ok"], [r.error for r in after.values()]


def test_a_death_fails_only_the_job_that_died(executor: ProcessesExecutor) -> None:
    """A job running beside the one whose worker dies finishes ok: nothing of it was lost."""
    dying, beside = task(0, x=1, crash_always=True), task(1, x=5, sleep=1.0)  # still running when the other worker dies
    results = run_all(executor, [dying, beside])
    assert results[dying.job.key].status == "failed" and results[dying.job.key].error.startswith(DIED)
    assert results[beside.job.key].status == "ok", results[beside.job.key].error
    assert results[beside.job.key].metrics == run_all(SerialExecutor(), [beside])[beside.job.key].metrics


def test_a_worker_that_dies_while_the_driver_is_busy_never_stops_the_run(track_folder: Path, tmp_path: Path) -> None:
    """The next submit after a death the driver has not yet seen (it was storing another job) still runs its job."""
    marker = tmp_path / "died"
    dying, later = task(0, x=1, crash_once=str(marker)), task(1, x=2)
    returned: dict[str, JobResult] = {}
    with make_executor(ExecutorSpec(name="processes", workers=2)) as processes:  # its own: a broken one must not spoil the module's
        processes.submit(dying)
        for _ in range(1200):  # the worker spawns (imports torch), then touches the marker and kills itself
            if marker.exists():
                break
            time.sleep(0.1)
        assert marker.exists(), "the job never ran"
        time.sleep(1.0)  # the death happens while nobody waits
        processes.submit(later)
        while len(returned) < 2:
            returned.update((t.job.key, result) for t, result in processes.wait())
    assert returned[dying.job.key].status == "failed" and returned[dying.job.key].error.startswith(DIED)
    assert returned[later.job.key].status == "ok", returned[later.job.key].error


def test_bench_run_executor_processes_gives_the_serial_leaderboard(serial_example: Path) -> None:
    out = serial_example / "processes"
    assert main(["run", "--config", str(serial_example / "spec.toml"), "--executor", "processes", "--out", str(out), "-q"]) == 0
    with sqlite3.connect(out / "results.db") as db:
        assert json.loads(db.execute("SELECT value FROM meta WHERE key = 'executor'").fetchone()[0]) == "processes"
    assert cells(out) == cells(serial_example / "serial")
    assert all(c["status"] == "ok" for c in cells(out))


def test_a_killed_run_goes_on_and_its_resume_equals_the_serial_run(executor: ProcessesExecutor, serial_example: Path, tmp_path: Path) -> None:
    """The example track's test hook SIGKILLs the worker of the first job to run: it is stored failed, the run goes on; a resume reruns it."""
    from bench import runner

    (tmp_path / "spec.toml").write_text('die_once = "killed-once"\n' + EXAMPLE_SPEC)
    spec = spec_from(config=tmp_path / "spec.toml")
    out = tmp_path / "processes"
    killed = runner.run(spec, out, executor=executor)
    assert (tmp_path / "killed-once").exists(), "no worker was killed"
    assert [record.error[: len(DIED)] for record in killed.failed] == [DIED], "only the killed job fails"
    assert killed.ran == killed.planned  # every job of round 1 came back: the run went on after the death
    resumed = runner.run(spec, out, executor=executor)
    assert resumed.failed == []
    assert ok_jobs(out) == ok_jobs(serial_example / "serial")  # every job once, round 2 included
    assert cells(out) == cells(serial_example / "serial")


def test_the_spec_names_the_processes_executor(tmp_path: Path) -> None:
    config = tmp_path / "spec.toml"
    config.write_text('[executor]\nname = "processes"\nworkers = 2\nnum_cpus = 1\n')
    spec = spec_from(config=config)
    assert (spec.executor.name, spec.executor.workers, spec.executor.num_cpus) == ("processes", 2, 1)


def test_an_unknown_executor_lists_processes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "spec.toml"
    config.write_text('[executor]\nname = "procs"\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: spec.executor.name: must be one of serial, processes, ray, got 'procs'"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
    assert main(["run", "--executor", "threads", "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'threads'" in err and "'processes'" in err, err


def test_each_worker_gets_one_gpu_of_several(track_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with several GPUs every worker process is pinned to one (CUDA_VISIBLE_DEVICES), spread evenly."""
    from bench.executors import processes

    monkeypatch.setattr(processes, "visible_gpus", lambda: ["0", "1"])
    pinned = make_executor(ExecutorSpec(name="processes", workers=2))
    try:
        results = run_all(pinned, [task(i, x=i, sleep=0.5) for i in range(4)])
    finally:
        pinned.close()
    seen = {r.provenance["pid"]: r.provenance.get("cuda_visible_devices") for r in results.values()}
    assert sorted(seen.values()) == ["0", "1"], seen  # two workers, one GPU each
