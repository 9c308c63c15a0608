"""The ``bench`` command: run | list | spec | report | compare | baseline | check.

A user error (bad spec, unknown name, missing file, unsafe checkpoint) exits
with code 2 and one line; a failed job is recorded and the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from bench.catalog import REGISTRIES, registry
from bench.errors import UserError
from bench.spec import EXECUTORS, spec_from

log = logging.getLogger("bench")

FORMATS = ("md", "json", "csv", "latex", "html")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark the robustness of models, defenses and attacks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a track's jobs and write a leaderboard")
    run.add_argument("--track", help="the track to run (default: the spec's, else adversarial)")
    run.add_argument("--config", type=Path, help="a TOML spec; its sections replace the track's defaults")
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--precision", choices=("float32", "bf16"), help="attacks and training: float32 (default) or bf16 autocast (fast on a GPU)")
    run.add_argument("--seed", type=int, help="seed for training and attacks")
    run.add_argument("--n-examples", type=int, help="number of test examples to attack")
    run.add_argument("--out", type=Path, help="run folder (default runs/<timestamp>-<track>); an existing one is resumed")
    run.add_argument("--data-root", help="folder of torchvision-format datasets (mnist, fashion-mnist, cifar10)")
    run.add_argument("--download", action="store_true", default=None, help="allow torchvision to download the dataset")
    run.add_argument("--executor", choices=EXECUTORS, help="serial (default: this process), processes (one per core) or ray (pip install -e '.[ray]')")
    run.add_argument("--address", help="ray: join the cluster at 'auto' or HOST:PORT (default: start a local one)")
    run.add_argument("--force", action="store_true", help="resume although a component's code or a checkpoint changed: run it afresh, drop its old results")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress or log lines")

    listing = commands.add_parser("list", help="list registered components")
    listing.add_argument("kind", nargs="?", choices=(*REGISTRIES, "flags"), help="which registry, or flags (explained) (default: all)")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'pgd*' or 'timm:resnet*'; one attack's name: its parameters")
    listing.add_argument("--eps", type=float, help="attacks: the eps at which to show one attack's parameters (default 8/255 for linf, 0.5 for l2)")
    listing.add_argument("--norm", help="attacks: the norm at which to show one attack's parameters (default linf, or the attack's first)")

    spec = commands.add_parser("spec", help="print a track's default spec as TOML (every field, ready to copy and edit)")
    spec.add_argument("--track", default="adversarial", help="the track (default adversarial)")

    report = commands.add_parser("report", help="render a run folder's leaderboard")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--format", choices=FORMATS, default="md", help="latex also saves the plots as PDF in RUN_DIR/figures, and RUN_DIR/leaderboard.tex")

    compare = commands.add_parser("compare", help="what changed between two runs, cell by cell, and whether it is significant")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--format", choices=("md", "json"), default="md")

    baseline = commands.add_parser("baseline", help="write a run's numbers as a baseline for `bench check`")
    baseline.add_argument("run_dir", type=Path)
    baseline.add_argument("-o", "--output", type=Path, default=Path("baseline.json"), help="where to write it (default baseline.json)")

    check = commands.add_parser("check", help="run a spec and fail (exit 1) when a metric fell below the baseline beyond tolerance")
    check.add_argument("--baseline", type=Path, required=True, help="a file written by `bench baseline`")
    check.add_argument("--config", type=Path, help="the spec to run (default: the baseline track's embedded default)")
    check.add_argument("--track", help="the track (default: the spec's, else the baseline's)")
    check.add_argument("--tolerance", type=float, default=0.02, help="largest allowed drop of every metric, absolute (default 0.02 = 2 points)")
    check.add_argument("--tolerance-for", action="append", default=[], metavar="METRIC=VALUE", help="a metric's own tolerance, e.g. robust_accuracy=0.05")
    check.add_argument("--out", type=Path, help="run folder (default runs/check-<hash of spec, checkpoints and version>; finished jobs there are reused)")
    check.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    check.add_argument("--data-root", help="folder of torchvision-format datasets (mnist, fashion-mnist, cifar10)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress or log lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        commands = {"run": _run, "list": _list, "spec": _spec, "report": _report, "compare": _compare, "baseline": _baseline, "check": _check}
        return commands[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def entry() -> NoReturn:
    sys.exit(main())


# -- run -----------------------------------------------------------------------
def _configure_logging(quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=True)
    handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False) if console.is_terminal else logging.StreamHandler(sys.stderr)
    if not console.is_terminal:
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler._frontier_bench = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_frontier_bench", False)] + [handler]  # others' handlers stay
    root.setLevel(logging.WARNING)  # other libraries (ART announces its data path) stay quiet
    for package in ("bench", "attacks", "defenses", "models", "reports"):
        logging.getLogger(package).setLevel(logging.WARNING if quiet else logging.INFO)


def load_spec(args: argparse.Namespace) -> Any:
    """The validated spec: track defaults, then the user's file, then command-line flags."""
    return spec_from(
        config=args.config,
        track=args.track,
        seed=args.seed,
        n_examples=args.n_examples,
        device=args.device,
        precision=args.precision,
        data_root=args.data_root,
        download=args.download,
        executor=args.executor,
        address=args.address,
    )


def _out_dir(args: argparse.Namespace, track: str) -> Path:
    out = args.out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{track}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create it ({error.strerror})") from None
    return out


def _run(args: argparse.Namespace) -> int:
    from bench import runner

    _configure_logging(args.quiet)
    spec = load_spec(args)
    runner.resolve_device(spec.device)  # a missing GPU is a user error, before any compute
    fresh = not (args.out and args.out.exists())
    out = _out_dir(args, spec.track)
    from bench.progress import RichReporter

    try:
        summary = runner.run(spec, out, reporter=RichReporter(quiet=args.quiet), force=args.force)
    except UserError:
        if fresh and out.is_dir() and not any(out.iterdir()):  # refused before anything was written: leave no empty run folder
            out.rmdir()
        raise
    except KeyboardInterrupt:
        print(f"interrupted: finished jobs are kept; resume with: bench run --out {out} (same spec)", file=sys.stderr)
        return 130
    text = write_reports(out)
    print(text)
    print(
        f"{summary.planned} jobs: {summary.ran} ran, {summary.skipped} already done, {len(summary.failed)} failed in {summary.seconds:.1f} s; results in {out}",
        file=sys.stderr,
    )
    for record in summary.failed:
        where = " / ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in record.labels.values() if v is not None)
        print(f"  failed: {where}: {record.error}", file=sys.stderr)
    return 1 if summary.failed else 0


def write_reports(run_dir: Path) -> str:
    """Write leaderboard.md, leaderboard.json and leaderboard.html into the run folder; return the markdown."""
    from bench import reporting

    return reporting.write_reports(run_dir)


def _report(args: argparse.Namespace) -> int:
    from bench import reporting

    run = reporting.load_run(args.run_dir)
    text = reporting.render(run, args.format)
    print(text, end="" if text.endswith("\n") else "\n")
    if args.format == "latex":
        print(f"wrote {args.run_dir / 'leaderboard.tex'}; figures as PDF in {args.run_dir / 'figures'} (paths relative to the run folder)", file=sys.stderr)
    return 0


# -- compare -------------------------------------------------------------------
def _compare(args: argparse.Namespace) -> int:
    """Cells of two runs side by side; a changed accuracy is tested paired (exact McNemar) on the per-example outcomes both stores hold."""
    import json

    from bench import reporting
    from bench.gate import declared_metrics
    from bench.store import Store
    from reports.compare import compare_cells, comparison_json, comparison_markdown

    before, after = reporting.load_run(args.run_a), reporting.load_run(args.run_b)
    if before.track.name != after.track.name:
        raise UserError(f"'{args.run_a}' is a run of track '{before.track.name}', '{args.run_b}' of track '{after.track.name}': nothing to compare")
    track = after.track
    fields = ("track", *(track.cell_dimensions or track.dimensions))
    vectors: list = [None, None]

    def points(run: reporting.RunData) -> tuple:  # example i is the i-th test point of this dataset: pair only runs on the same data
        spec = json.loads(run.meta["spec"]) if isinstance(run.meta.get("spec"), str) else {}
        return spec.get("dataset"), spec.get("dataset_params")

    if points(before) == points(after) and points(before)[0] is not None:
        for i, run in enumerate((before, after)):
            with Store(run.run_dir / "results.db", create=False, read_only=True) as store:
                vectors[i] = run.track.paired(run.cells, run.records, store.outcomes(), fields=fields)
    metrics = declared_metrics(track, [*before.cells, *after.cells])
    comparison = compare_cells(before.cells, after.cells, fields=fields, metrics=metrics, vectors_before=vectors[0], vectors_after=vectors[1])
    if args.format == "json":
        print(comparison_json(comparison))
    else:
        print(comparison_markdown(comparison, before=str(args.run_a), after=str(args.run_b)), end="")
    return 0


# -- the CI gate -----------------------------------------------------------------
def _baseline(args: argparse.Namespace) -> int:
    from bench.gate import write_baseline

    document = write_baseline(args.run_dir, args.output)
    rows = document["rows"]
    not_ok = sum(1 for row in rows if row["status"] != "ok")
    print(f"wrote {args.output}: {len(rows)} rows of track '{document['track']}' from {args.run_dir}", file=sys.stderr)
    if not_ok:
        print(f"  note: {not_ok} rows are failed or invalid in this run; the baseline holds no number for them", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from bench.checking import check
    from bench.progress import RichReporter
    from reports.gate import check_text

    _configure_logging(args.quiet)
    result = check(
        args.baseline,
        config=args.config,
        track=args.track,
        tolerance=args.tolerance,
        tolerance_for=args.tolerance_for,
        out=args.out,
        device=args.device,
        data_root=args.data_root,
        reporter=RichReporter(quiet=args.quiet),
    )
    print(check_text(result), end="")
    print(f"{result.jobs_ran} jobs ran, {result.jobs_reused} reused from {result.run_dir}", file=sys.stderr)
    return 0 if result.passed else 1


# -- list ----------------------------------------------------------------------
def _list_flags(pattern: str) -> int:
    from fnmatch import fnmatchcase

    from tabulate import tabulate

    tracks = registry("tracks")
    explained: dict[str, str] = {}
    for name in tracks.names():
        explained.update(tracks.create(name).explanations)
    rows = [[name, explanation] for name, explanation in explained.items() if fnmatchcase(name, pattern)]
    if not rows:
        raise UserError(f"no flag matches '{pattern}'")
    print(tabulate(rows, tablefmt="plain"))
    return 0


def _describe(registry: Any, name: str) -> str:
    meta = registry.meta(name)
    if "description" in meta:
        return meta["description"]
    doc = (getattr(registry.get(name), "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.kind == "flags":
        return _list_flags(args.pattern)
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    found_any = False
    for kind in kinds:
        found = registry(kind)
        names = found.list(args.pattern)
        rows = [[name, _describe(found, name) if ":" not in name else ""] for name in names]
        if args.pattern == "*":
            rows += [[f"{p}:<name>", found.prefix_meta(p).get("description", "")] for p in found.prefixes()]
        if not rows:
            continue
        found_any = True
        print(f"{kind}:")
        print(tabulate(rows, tablefmt="plain"))
        print()
        if kind == "attacks" and names == [args.pattern]:
            _list_attack_parameters(found, args.pattern, args.eps, args.norm)
        elif names == [args.pattern]:
            _list_parameters(found, args.pattern)
    if not found_any:
        raise UserError(f"nothing matches '{args.pattern}'" + (f" among {args.kind}" if args.kind else ""))
    return 0


def _list_parameters(found: Any, name: str) -> None:
    """A component's parameters: name, default, meaning (``bench list defenses pgd-at``)."""
    from tabulate import tabulate

    from bench.describe import parameters

    entry = found.info(name)
    rows = [[key, "-" if value is None else value, meaning] for key, value, meaning in parameters(entry.target, entry.defaults)]
    print(f"parameters of {name}:" if rows else f"{name} takes no parameters")
    if rows:
        print(tabulate(rows, headers=["parameter", "default", "meaning"], tablefmt="plain", disable_numparse=True))
    print()


def _spec(args: argparse.Namespace) -> int:
    from bench.describe import spec_toml
    from bench.tracks import TRACKS

    if args.track not in TRACKS:
        raise UserError(str(TRACKS.unknown_error(args.track)))
    print(spec_toml(args.track), end="")
    return 0


DEFAULT_LIST_EPS = {"linf": 8 / 255, "l2": 0.5}


def _eps_text(eps: float) -> str:
    """8/255 where eps is a whole number of 255ths, else the number."""
    levels = eps * 255
    return f"{round(levels)}/255" if 0 < eps < 1 and abs(levels - round(levels)) < 1e-6 else f"{eps:g}"


def _list_attack_parameters(attacks: Any, name: str, eps: float | None, norm: str | None) -> None:
    """The parameters one attack runs with at an eps, derived step sizes included; a preset's, member by member."""
    from tabulate import tabulate

    norms = [norm] if norm else [n for n in ("linf", "l2") if n in attacks.meta(name).get("norms", ("linf", "l2"))] or ["linf"]
    for i, norm in enumerate(norms):  # without --norm: linf, else the norm the attack takes (torchattacks:CW is l2 only)
        eps_at = DEFAULT_LIST_EPS.get(norm, 8 / 255) if eps is None else eps
        try:
            attack = attacks.create(name, eps=eps_at, norm=norm)
            break
        except UserError:
            if i == len(norms) - 1:
                raise
    eps = eps_at
    members = attack.members() if hasattr(attack, "members") else [(name, attack)]
    heading = f"parameters of {name} at eps {_eps_text(eps)} ({norm})"
    print(f"{heading}, a cascade of {len(members)} attacks:" if len(members) > 1 or members[0][0] != name else f"{heading}:")
    for label, member in members:
        if label != name:
            print(f"{label} ({member.describe()}):")
        rows = [[key, "-" if value is None else f"{value:.6g}" if isinstance(value, float) else value, note] for key, value, note in member.settings()]
        print(tabulate(rows, tablefmt="plain"))
        print()
