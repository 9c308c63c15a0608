"""Rich progress for ``bench run``: a bar on a terminal, silence elsewhere (CI logs stay clean)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench.runner import Reporter
from bench.store import Record
from bench.tracks import Job


def describe(job: Job) -> str:
    """'small-cnn / none / pgd / digits / linf / 0.1': the job's labels, for the progress line."""
    return " / ".join(f"{value:g}" if isinstance(value, float) else str(value) for value in job.labels.values() if value is not None)


class RichReporter(Reporter):
    def __init__(self, *, quiet: bool = False) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
            transient=False,
        )
        self.task = None

    def start(self, total: int, skipped: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("starting", total=total, completed=skipped)

    def grow(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def job_started(self, job: Job) -> None:
        self.progress.update(self.task, description=describe(job))

    def job_finished(self, job: Job, record: Record) -> None:
        self.progress.advance(self.task)

    def stop(self) -> None:
        self.progress.update(self.task, description="done")
        self.progress.stop()
