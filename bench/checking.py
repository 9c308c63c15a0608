"""``bench check``: validate the baseline and spec, run the spec into a stable folder, compare (``bench.gate``).

The folder is keyed by the spec, its components' code, its checkpoints' contents and
the bench version, so a re-check of unchanged code reuses the finished jobs and
cached models, and a check after an edit measures the edited model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import bench
from bench.errors import UserError
from bench.gate import DEFAULT_TOLERANCE, CheckResult, baseline_metrics, compare, match_spec, parse_tolerances, read_baseline


def check_dir(spec: Any) -> Path:
    """The default run folder of a check: ``runs/check-<hash>``, keyed by the spec, its components' code and its models'
    checkpoint contents (``bench.fields.fingerprints``) and the bench version.

    The same spec, code and weights find their finished jobs again (a warm re-check runs nothing); an edited model
    or new weights behind the same checkpoint name get a fresh folder, so a check always measures what is there now.
    """
    from bench.fields import fingerprints
    from bench.training import stable_hash

    identity = {"spec": spec.canonical(), "components": fingerprints(spec), "version": bench.__version__}
    return Path("runs") / f"check-{stable_hash(identity, length=16)}"


def check(
    baseline_path: Path,
    *,
    config: Path | None = None,
    track: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    tolerance_for: Sequence[str] = (),
    out: Path | None = None,
    device: str | None = None,
    data_root: str | None = None,
    reporter: Any = None,
) -> CheckResult:
    """Validate everything, run the spec (reusing finished jobs and cached models), compare with the baseline."""
    from bench import runner
    from bench.reporting import load_run, write_reports
    from bench.spec import spec_from

    header = read_baseline(Path(baseline_path), rows=False)
    spec = spec_from(config=config, track=track or (None if config else header.track), device=device, data_root=data_root)
    match_spec(header, spec, spec_source=f"'{config}'" if config else f"the {spec.track} track's default spec")
    baseline = read_baseline(Path(baseline_path), track=spec.track)
    tolerances = parse_tolerances(tolerance, tolerance_for, known=baseline_metrics(baseline))
    runner.resolve_device(spec.device)
    out = Path(out) if out is not None else check_dir(spec)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    summary = runner.run(spec, out, reporter=reporter, force=True)  # a reused --out keeps only jobs of the code and weights there now
    write_reports(out)
    run = load_run(out)
    result = compare(baseline, run.cells, tolerances, run.track, versions=run.meta.get("versions"))
    return replace(result, run_dir=str(out), jobs_ran=summary.ran, jobs_reused=summary.skipped)
