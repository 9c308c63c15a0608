"""An example track, written as a third-party author would (nothing under ``bench/`` changes): how does L2 weight decay move accuracy?

Question: how does the accuracy of a linear classifier (multinomial logistic
regression on the raw pixels, a few hundred minibatch SGD steps) on the
embedded ``digits`` data depend on its L2 weight decay?

* Round 1 plans one job per weight decay in ``weight_decays`` and seed
  (``seeds`` replicates, from the spec header).
* Round 2, once every round-1 job is stored ``ok``: one refinement job per
  seed at the geometric midpoint between the best weight decay (mean
  validation accuracy over the seeds) and the better of its grid neighbours.
  It ``depends_on`` the two jobs it refines (same seed), reads their metrics
  from its task and reports how much validation accuracy it gained over them.

Selection uses a validation split held out of the training split (a fixed
20 %); the test points only score. Registered from ``tests/bench/test_example_track.py``
through an entry point in the ``frontier_bench.tracks`` group, as a plugin is.

Test hook: ``die_once = "PATH"`` in a spec makes the first job that runs create
PATH and kill its own process with SIGKILL (as an out-of-memory kill would);
every later job, seeing PATH, runs normally. It lets a test kill a Ray worker
mid-job. With the serial executor it kills the driver itself. Never set it
outside tests.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.fields import fail, integer
from bench.runner import job_key
from bench.tracks import HIGHER, LOWER, Job, JobResult, Metric, Task, Track
from bench.training import one_cpu_thread
from bench.worker import Cache, dataset, eval_set, resolve_device
from reports.leaderboard import Table, percent

DEFAULT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
VALIDATION_FRACTION = 0.2  # of the training split, fixed (generator seed 0): selects the refinement, never trained on
BATCH = 64
GRID, REFINED = "grid", "refined"


@dataclass(frozen=True)
class ExampleSection:
    """The example track's part of a spec (frozen: it is hashed into the run's identity and pickled into every task)."""

    weight_decays: tuple[float, ...]
    steps: int
    lr: float
    die_once: str | None = None  # test hook (see the module docstring); an absolute path


class ExampleTrack(Track):
    """Example: accuracy of a linear model against its L2 weight decay, with an adaptive refinement round."""

    name = "example"
    plots_title = "Plots"
    fields = ("weight_decays", "steps", "lr", "die_once")
    replicates = True  # reads the header's `seeds`
    dimensions = ("dataset", "weight_decay", "seed")
    cell_dimensions = ("dataset", "weight_decay")
    metrics = {
        "test_accuracy": Metric(HIGHER, "fraction", "accuracy on the test points"),
        "val_accuracy": Metric(HIGHER, "fraction", "accuracy on the validation split (what the refinement is chosen by)"),
        "train_loss": Metric(LOWER, "nats", "cross-entropy on the training split after the last step"),
    }
    explanations = {
        "refinement-won": "the refined weight decay beat both grid points it refines on validation accuracy",
        "diverged": "the training loss is not finite (lower lr or weight decay)",
    }
    advisory = frozenset({"refinement-won"})  # one validation example more or less flips it: reported by the gate, never failed on

    # -- the spec ---------------------------------------------------------------
    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Four weight decays, two seeds, 300 SGD steps on digits: about a second in all."""
        return {"dataset": "digits", "seed": 0, "seeds": 2, "weight_decays": list(DEFAULT_DECAYS), "steps": 300, "lr": 0.5}

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> ExampleSection:
        decays = raw.get("weight_decays", list(DEFAULT_DECAYS))
        if not isinstance(decays, list) or not decays:
            raise fail("spec.weight_decays", f"must be a non-empty list of numbers > 0, got {decays!r}")
        for i, value in enumerate(decays):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise fail(f"spec.weight_decays[{i}]", f"must be a number > 0, got {value!r}")
        if len(set(decays)) != len(decays):
            raise fail("spec.weight_decays", f"repeats a value: {decays}")
        lr = raw.get("lr", 0.5)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
            raise fail("spec.lr", f"must be a number > 0, got {lr!r}")
        die_once = raw.get("die_once")
        if die_once is not None:
            if not isinstance(die_once, str) or not die_once:
                raise fail("spec.die_once", f"must be a file path, got {die_once!r}")
            die_once = str((base_dir / die_once).resolve())
        return ExampleSection(tuple(sorted(float(d) for d in decays)), integer(raw, "steps", 300, 1), float(lr), die_once)

    # -- jobs -------------------------------------------------------------------
    def plan(self, spec: Any, finished: Mapping[str, Any]) -> list[Job]:
        """Round 1: the grid. Round 2 (all of round 1 stored ok): a refinement per seed. Deterministic, so a resumed run plans the same keys."""
        seeds = range(spec.seed, spec.seed + spec.seeds)
        grid: dict[tuple[float, int], Job] = {}
        for decay in spec.weight_decays:
            for seed in seeds:
                grid[decay, seed] = self._job(spec, GRID, decay, seed, len(grid))
        jobs = list(grid.values())
        if len(spec.weight_decays) < 2 or not all(job.key in finished and finished[job.key].status == "ok" for job in jobs):
            return jobs
        score = {d: statistics.fmean(finished[grid[d, s].key].val_accuracy for s in seeds) for d in spec.weight_decays}
        decays = list(spec.weight_decays)  # sorted by parse
        best = max(decays, key=lambda d: (score[d], -d))  # ties: the smaller decay, so the choice never depends on dict order
        i = decays.index(best)
        other = max(decays[max(i - 1, 0) : i] + decays[i + 1 : i + 2], key=lambda d: (score[d], -d))
        midpoint = float(f"{math.sqrt(best * other):.6g}")  # between two grid neighbours: a new cell
        if midpoint in decays:  # neighbours too close to tell apart at 6 digits: nothing to refine
            return jobs
        for seed in seeds:
            parents = (grid[min(best, other), seed].key, grid[max(best, other), seed].key)
            jobs.append(self._job(spec, REFINED, midpoint, seed, len(jobs), parents))
        return jobs

    def _job(self, spec: Any, stage: str, decay: float, seed: int, position: int, parents: tuple[str, ...] = ()) -> Job:
        data = {"name": spec.dataset, "params": {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}}
        identity = {  # everything that determines the result: a change of any of these is a new job, never a stale one
            "dataset": data,
            "n_examples": spec.n_examples,
            "steps": spec.steps,
            "lr": spec.lr,
            "batch": BATCH,
            "validation": VALIDATION_FRACTION,
            "weight_decay": decay,
            "seed": seed,
            "refines": list(parents),  # the refinement reads its parents' metrics
        }
        labels = {"dataset": spec.dataset, "weight_decay": decay, "seed": seed, "stage": stage}
        payload = {"weight_decay": decay, "params": {"weight_decay": decay, "steps": spec.steps, "lr": spec.lr}}
        return Job(job_key(self.name, identity), position, labels, payload, depends_on=parents)

    def run(self, task: Task, cache: Cache) -> JobResult:
        """Train one linear model: a pure function of the task (torch is seeded from the job key by the harness)."""
        spec = task.spec
        if spec.die_once is not None:
            _die_once(Path(spec.die_once))
        start = time.perf_counter()
        device = resolve_device(spec.device)
        x_fit, y_fit, x_val, y_val = _splits(spec, cache)
        x_test, y_test = eval_set(spec, cache)
        x_test = x_test.flatten(1)
        classes = dataset(spec, cache).num_classes
        model = torch.nn.Linear(x_fit.shape[1], classes).to(device)
        decay = task.job.payload["weight_decay"]
        with one_cpu_thread(device):  # the same weights whatever the worker's thread count (serial: every core; ray: one)
            for _ in range(spec.steps):  # plain SGD on cross-entropy + decay/2 * |W|^2 (the bias is not decayed)
                batch = torch.randint(0, len(y_fit), (BATCH,)).to(device)
                loss = torch.nn.functional.cross_entropy(model(x_fit[batch]), y_fit[batch]) + decay / 2 * model.weight.square().sum()
                model.zero_grad()
                loss.backward()
                with torch.no_grad():
                    for parameter in model.parameters():
                        parameter -= spec.lr * parameter.grad
        with torch.no_grad():
            train_loss = float(torch.nn.functional.cross_entropy(model(x_fit), y_fit))
            val_accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
            correct = (model(x_test).argmax(1) == y_test).cpu()
        metrics: dict[str, Any] = {"n": len(correct), "test_accuracy": float(correct.float().mean()), "val_accuracy": val_accuracy, "train_loss": train_loss}
        flags = []
        if task.job.depends_on:  # the refinement: what the jobs it refines measured comes with the task
            parents = [task.dependency(key).metrics["val_accuracy"] for key in task.job.depends_on]
            metrics["val_gain"] = val_accuracy - max(parents)
            flags += ["refinement-won"] if metrics["val_gain"] > 0 else []
        outcomes = [{"correct": bool(c)} for c in correct.tolist()]
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            return JobResult(status="invalid", metrics=metrics, flags=["diverged"], outcomes=outcomes, seconds=seconds)
        return JobResult(metrics=metrics, flags=flags, outcomes=outcomes, seconds=seconds)

    # -- rendering ----------------------------------------------------------------
    def cells(self, records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """One cell per dataset x weight decay: the mean over its seeds (std beside it), from the stored records only."""
        groups: dict[tuple[str, float], list[Any]] = {}
        for record in sorted(records, key=lambda r: (r.dataset, r.weight_decay, r.seed)):
            groups.setdefault((record.dataset, record.weight_decay), []).append(record)
        cells = []
        for (name, decay), members in groups.items():
            ok = [r for r in members if r.status == "ok"]
            statuses = {r.status for r in members}
            metrics = {m: statistics.fmean(r.metrics[m] for r in ok) for m in self.metrics} if ok else {}
            gains = [r.metrics["val_gain"] for r in ok if "val_gain" in r.metrics]
            cells.append(
                {
                    "track": self.name,
                    "dataset": name,
                    "weight_decay": decay,
                    "stage": members[0].stage,
                    "seeds": len(members),
                    "status": "ok" if statuses == {"ok"} else "failed" if "failed" in statuses else "invalid",
                    "flags": sorted({f for r in members for f in r.flags}),
                    "error": next((r.error for r in members if r.error), None),
                    "n": len(outcomes.get(members[0].key, ())) or None,
                    "seconds": sum(r.seconds or 0.0 for r in members),
                    "metrics": metrics,
                    "test_accuracy_std": statistics.stdev(r.test_accuracy for r in ok) if len(ok) > 1 else None,
                    "val_gain": statistics.fmean(gains) if gains else None,
                    "keys": [r.key for r in members],  # every stored job is behind a cell (the HTML page lists the others as checks)
                }
            )
        return cells

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Table]:
        """One sortable table per dataset: a row per weight decay (the refined one marked), accuracies in %."""
        tables = []
        for name in dict.fromkeys(c["dataset"] for c in cells):
            rows, values = [], []
            members = [c for c in cells if c["dataset"] == name]
            for cell in members:
                m, ok, std, gain = cell["metrics"], cell["status"] == "ok", cell["test_accuracy_std"], cell["val_gain"]
                accuracy = [percent(m.get(k)) if ok else cell["status"] for k in ("val_accuracy", "test_accuracy")]  # never a number for a failed cell
                loss = f"{m['train_loss']:.3f}" if ok else ""
                rows.append((f"{cell['weight_decay']:g}", cell["stage"], str(cell["seeds"]), *accuracy, percent(std), loss,
                             "" if gain is None else f"{100 * gain:+.1f}", ", ".join(cell["flags"])))  # fmt: skip
                values.append((cell["weight_decay"], None, float(cell["seeds"]), m.get("val_accuracy"), m.get("test_accuracy"), std,
                               m.get("train_loss"), gain, None))  # fmt: skip
            n = sorted({c["n"] for c in members if c["n"]})
            used = sorted({f for c in members for f in c["flags"]})
            note = (
                f"Mean over seeds; n = {', '.join(map(str, n)) or '?'} test points. The refined row is the geometric midpoint of the best weight decay "
                "(validation accuracy) and its better neighbour; its gain is in validation points over the better of the two."
                + "".join(f" {flag}: {self.explanations.get(flag, '')}." for flag in used)
            )
            headers = ("weight decay", "stage", "seeds", "val acc %", "test acc %", "std %", "train loss", "val gain", "flags")
            tables.append(Table(f"Accuracy against L2 weight decay ({name})", headers, tuple(rows), tuple(values), note))
        return tables


def _splits(spec: Any, cache: Cache) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training split minus a fixed validation split, flattened, on the run's device; made once per worker."""

    def make() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        data, device = dataset(spec, cache), resolve_device(spec.device)
        order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))
        held = int(VALIDATION_FRACTION * len(order))
        val, fit = order[:held], order[held:]
        x = data.x_train.flatten(1)
        return x[fit].to(device), data.y_train[fit].to(device), x[val].to(device), data.y_train[val].to(device)

    return cache.get(["example-splits", spec.dataset, dict(spec.dataset_params), spec.device, VALIDATION_FRACTION], make)


def _die_once(marker: Path) -> None:
    """Test hook: the first job to get here creates ``marker`` and is SIGKILLed; every later one finds it and goes on."""
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
