"""The report of ``make gpu-check``: ``python scripts/gpu_report.py OUT_DIR`` writes OUT_DIR/gpu-check.md and OUT_DIR/gpu-check.json.

``python scripts/gpu_report.py --equivalence OUT_DIR`` is the check's CPU-against-device step: ``bench compare`` of
the CPU reference run (``adversarial-cpu/``) and the run on the device (``adversarial/``), the same default spec on
the same points. It passes when no accuracy changed significantly with the family-wise error held at ALPHA (exact
McNemar per cell, Holm over every compared cell), no cell ran on one side only and no job that ran on the CPU failed
on the device. Cell by cell within the gate's tolerance is not the test: two CPU runs of the default that differ only
in their attacks' random starts move 13 of 192 per-attack cells by more than 0.02 (at most 0.04; none significant).
The differences are reported: the largest, and how many cells moved beyond 0.02. It writes OUT_DIR/equivalence.json,
prints one line and exits 0 (equivalent) or 1.

It reads what ``scripts/gpu_check.sh`` left in OUT_DIR, every file optional:

- ``steps.jsonl``: one JSON object per step (step, command, status, rc, seconds, timeout),
- ``gpu-tests.xml``: the GPU-marked tests' junit XML,
- ``adversarial/``, ``adversarial-cpu/`` and ``equivalence.json``: the default track on the device, on the CPU, and
  how they compare (``--equivalence``),
- ``uncertainty/``: the uncertainty track's run folder (its ``results.db``, read through ``bench.store``),
- ``benchmarks.json``: pytest-benchmark's JSON (name, mean seconds, ``extra_info`` of each benchmark).

A missing or unreadable input is reported as "not produced" (with the reason), never raised. The report judges
nothing: it exits 0 whenever it wrote both files (gpu_check.sh's exit status comes from the steps), and 2 when
OUT_DIR is not a folder.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench.store and bench.stats from this tree, however the script is started
    sys.path.insert(0, str(ROOT))
STEPS = ("gpu-tests", "adversarial", "uncertainty", "benchmarks", "cpu-reference", "equivalence")  # in the order gpu_check.sh ends them
TOLERANCE = 0.02  # the gate's default: differences beyond it are counted, not judged
NOT_PRODUCED = "not produced"


# -- inputs --------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """This machine's GPU and versions (the report runs where the check ran)."""
    info: dict[str, Any] = {"python": platform.python_version(), "host": platform.node()}
    try:
        import torch
    except Exception as error:  # any failure to import is reported, not raised
        return {**info, "torch": None, "error": f"torch cannot be imported: {error}"}
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    try:
        if torch.cuda.is_available():
            properties = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(properties.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count())
        else:
            info.update(gpu=None)
    except Exception as error:
        info.update(gpu=None, error=f"CUDA query failed: {error}")
    return info


def read_steps(out_dir: Path) -> list[dict[str, Any]]:
    """The steps in the order of STEPS; a step named there with no line is listed as not run."""
    steps: list[dict[str, Any]] = []
    path = out_dir / "steps.jsonl"
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "step" in entry:
            steps.append(entry)
    seen = {entry["step"] for entry in steps}
    steps += [{"step": name, "status": "not run"} for name in STEPS if name not in seen]
    return sorted(steps, key=lambda entry: STEPS.index(entry["step"]) if entry["step"] in STEPS else len(STEPS))  # cpu-reference ends late


def read_junit(path: Path) -> dict[str, Any]:
    """Counts (passed, failed, errors, skipped, total) and the names of failed tests, from a junit XML file."""
    if not path.is_file():
        return {"produced": False, "reason": f"{path.name} {NOT_PRODUCED}"}
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        return {"produced": False, "reason": f"{path.name} cannot be read: {error}"}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures: list[str] = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        if case.find("failure") is not None:
            counts["failed"] += 1
            failures.append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            failures.append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {"produced": True, **counts, "total": sum(counts.values()), "failures": failures}


def read_run(run_dir: Path) -> dict[str, Any]:
    """Job counts by status and the failed jobs (labels, error) of a run folder, read through bench.store."""
    database = run_dir / "results.db"
    if not database.is_file():
        return {"produced": False, "reason": f"{run_dir.name}/results.db {NOT_PRODUCED}"}
    try:
        from bench.store import Store

        with Store(database, create=False, read_only=True) as store:
            records = store.records()
    except Exception as error:  # a damaged or foreign store is reported, not raised
        return {"produced": False, "reason": f"{run_dir.name}/results.db cannot be read: {error}"}
    by_status = dict(Counter(record.status for record in records))
    failed = [
        {"job": " / ".join(str(v) for v in record.labels.values() if v is not None), "status": record.status, "error": record.error}
        for record in records
        if record.status != "ok"
    ]
    return {"produced": True, "jobs": len(records), "by_status": by_status, "not_ok": failed}


def equivalence(out_dir: Path) -> dict[str, Any]:
    """``bench compare`` of the CPU reference and the device run, judged (see the module docstring)."""
    cpu, device = out_dir / "adversarial-cpu", out_dir / "adversarial"
    for run in (cpu, device):
        if not (run / "results.db").is_file():
            return {"produced": False, "passed": False, "reason": f"{run.name}/results.db {NOT_PRODUCED}"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(cpu), str(device), "--format", "json"], cwd=ROOT, capture_output=True, text=True
    )  # fmt: skip
    if done.returncode != 0:
        return {"produced": False, "passed": False, "reason": f"bench compare failed: {(done.stderr or done.stdout).strip()[-500:]}"}
    found = json.loads(done.stdout)
    from bench.stats import ALPHA, holm

    tested = [c for c in found["changes"] if c.get("p") is not None]
    family = max(found["compared"], len(tested))  # unchanged cells are tests that found nothing
    significant = [c for c, rejected in zip(tested, holm([c["p"] for c in tested], ALPHA, family=family), strict=True) if rejected]
    broke = [c for c in found["changes"] if c["field"] == "status" and c["a"] == "ok" and c["b"] != "ok"]
    robust = [c for c in found["changes"] if c["field"] == "robust_accuracy" and c.get("delta") is not None]
    largest = max(robust, key=lambda c: abs(c["delta"]), default=None)
    worst = [c for c in robust if c["row"].get("attack") == "worst-case"]
    return {
        "produced": True,
        "passed": not significant and not broke and not found["only_in_a"] and not found["only_in_b"],
        "compared": found["compared"],
        "changed": found["changed"],
        "alpha": ALPHA,
        "family": family,
        "significant": significant,
        "failed_on_device": broke,
        "only_cpu": found["only_in_a"],
        "only_device": found["only_in_b"],
        "largest_change": largest,
        "largest_worst_case_change": max((abs(c["delta"]) for c in worst), default=0.0),
        "beyond_tolerance": sum(abs(c["delta"]) > TOLERANCE + 1e-9 for c in robust),
        "tolerance": TOLERANCE,
    }


def read_equivalence(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "equivalence.json"
    if not path.is_file():
        return {"produced": False, "passed": False, "reason": f"{path.name} {NOT_PRODUCED}"}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return {"produced": False, "passed": False, "reason": f"{path.name} cannot be read: {error}"}


def _cell(change: dict[str, Any]) -> str:
    row = change["row"]
    return " / ".join(str(row[k]) for k in ("model", "defense", "attack", "norm", "eps") if row.get(k) is not None)


def equivalence_line(found: dict[str, Any]) -> str:
    if not found.get("produced"):
        return f"CPU and device: not compared ({found.get('reason')})"
    verdict = "equivalent" if found["passed"] else "NOT equivalent"
    largest = found.get("largest_change")
    moved = f"largest change {largest['delta']:+.3f} ({_cell(largest)})" if largest else "no accuracy changed"
    return (
        f"CPU and device: {verdict}: {len(found['significant'])} of {found['compared']} cells changed significantly "
        f"(exact McNemar, Holm, family-wise alpha {found['alpha']}); {found['changed']} changed at all; {moved}; worst case at most "
        f"{found['largest_worst_case_change']:.3f}; {found['beyond_tolerance']} cells beyond {found['tolerance']}; "
        f"{len(found['failed_on_device'])} jobs failed on the device only"
    )


def read_benchmarks(path: Path) -> dict[str, Any]:
    """Each benchmark's name, mean seconds and extra_info, from pytest-benchmark's JSON."""
    if not path.is_file():
        return {"produced": False, "reason": f"{path.name} {NOT_PRODUCED}"}
    try:
        document = json.loads(path.read_text())
        rows = [
            {"name": b.get("fullname") or b.get("name"), "mean_s": (b.get("stats") or {}).get("mean"), "extra_info": b.get("extra_info") or {}}
            for b in document.get("benchmarks", [])
        ]
    except (OSError, ValueError, AttributeError, TypeError) as error:
        return {"produced": False, "reason": f"{path.name} cannot be read: {error}"}
    machine_info = document.get("machine_info") or {}
    return {"produced": True, "benchmarks": rows, "machine_info": {k: machine_info.get(k) for k in ("node", "cpu", "python_version") if k in machine_info}}


def collect(out_dir: Path) -> dict[str, Any]:
    steps = read_steps(out_dir)
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "out_dir": str(out_dir),
        "device": os.environ.get("GPU_CHECK_DEVICE", "cuda"),  # gpu_check.sh's: cuda, or cpu for a rehearsal
        "machine": machine(),
        "steps": steps,
        "passed": all(s.get("status") == "passed" for s in steps),
        "gpu_tests": read_junit(out_dir / "gpu-tests.xml"),
        "equivalence": read_equivalence(out_dir),
        "adversarial": read_run(out_dir / "adversarial"),
        "uncertainty": read_run(out_dir / "uncertainty"),
        "benchmarks": read_benchmarks(out_dir / "benchmarks.json"),
    }


# -- markdown ------------------------------------------------------------------
def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.4g}"


def _machine_line(info: dict[str, Any]) -> str:
    gpu = f"{info['gpu']} ({info.get('gpu_memory_gib')} GiB)" if info.get("gpu") else "no CUDA device"
    versions = f"torch {info.get('torch')}, CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')}, Python {info.get('python')}"
    return f"Machine: {gpu}; {versions}" + (f"; {info['error']}" if info.get("error") else "")


def _step_line(step: dict[str, Any]) -> str:
    mark = "✓" if step.get("status") == "passed" else "✗"
    if step.get("status") == "not run":
        return f"- {mark} {step['step']}: not run (no record in steps.jsonl)"
    command = f" — `{step['command']}`" if step.get("command") else ""
    return f"- {mark} {step['step']}: {step.get('status')} (exit {step.get('rc')}) in {_number(step.get('seconds'))} s of {step.get('timeout')} s{command}"


def _run_lines(run: dict[str, Any]) -> list[str]:
    if not run.get("produced"):
        return [f"Run folder: {run.get('reason')}."]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run["by_status"].items()))
    lines = [f"Jobs: {run['jobs']}" + (f" ({counts})" if counts else "") + "."]
    lines += [f"- {job['status']}: {job['job']}: {job['error']}" for job in run["not_ok"]]
    return lines


FIGURES = ("ratio_", "robust_accuracy", "disagreements_", "precision", "batch")  # the other extra_info keys shown, by prefix


def _benchmark_row(benchmark: dict[str, Any]) -> list[str]:
    """One table row: name, mean, device, ratio, goal, whether the goal is met, then the secondary figures as key=value."""
    info = benchmark["extra_info"]
    ratio, goal = info.get("ratio"), info.get("goal")
    met = "-" if not isinstance(ratio, int | float) or not isinstance(goal, int | float) else ("✓" if ratio <= goal else "✗")
    other = ", ".join(f"{key}={_number(value)}" for key, value in info.items() if key.startswith(FIGURES))
    name = str(benchmark["name"]).rsplit("::", 1)[-1]
    return [name, _number(benchmark["mean_s"]), _number(info.get("device")), _number(ratio), _number(goal), met, _number(info.get("reference")), other or "-"]


def markdown(report: dict[str, Any]) -> str:
    from tabulate import tabulate

    device = "CUDA" if report["device"] == "cuda" else "the CPU (a rehearsal: GPU_CHECK_DEVICE=cpu)"
    lines = ["# GPU check", "", _machine_line(report["machine"]), "", f"Output: `{report['out_dir']}`, {report['created_at']}.", "", "## Steps", ""]
    lines += [_step_line(step) for step in report["steps"]]

    tests = report["gpu_tests"]
    lines += ["", "## GPU-marked tests", ""]
    if tests["produced"]:
        lines.append(f"{tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, {tests['skipped']} skipped (of {tests['total']}).")
        lines += [f"- failed: {name}" for name in tests["failures"]]
    else:
        lines.append(f"{tests['reason']}.")

    found = report["equivalence"]
    lines += ["", f"## Default adversarial track on {device}, against the CPU", "", equivalence_line(found) + "."]
    for change in found.get("significant") or []:
        lines.append(f"- significant: {_cell(change)}: {change['field']} {change['a']} on the CPU, {change['b']} on the device (p = {change['p']:.2g})")
    for change in found.get("failed_on_device") or []:
        lines.append(f"- failed on the device only: {_cell(change)}: {change['b']}")
    lines += _run_lines(report["adversarial"])

    lines += ["", f"## Uncertainty track on {device}", ""] + _run_lines(report["uncertainty"])

    found = report["benchmarks"]
    lines += ["", "## Benchmarks", ""]
    if not found["produced"]:
        lines.append(f"{found['reason']}.")
    elif not found["benchmarks"]:
        lines.append("benchmarks.json holds no benchmark.")
    else:
        rows = [_benchmark_row(b) for b in found["benchmarks"]]
        headers = ["benchmark", "mean (s)", "device", "ratio", "goal", "met", "reference", "other figures"]
        lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    compare = argv[:1] == ["--equivalence"]
    argv = argv[1:] if compare else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/gpu_report.py [--equivalence] OUT_DIR (a folder written by scripts/gpu_check.sh)", file=sys.stderr)
        return 2
    out_dir = Path(argv[0]).resolve()
    if compare:
        found = equivalence(out_dir)
        (out_dir / "equivalence.json").write_text(json.dumps(found, indent=2, default=str) + "\n")
        print(equivalence_line(found))
        return 0 if found["passed"] else 1
    report = collect(out_dir)
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "gpu-check.md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
