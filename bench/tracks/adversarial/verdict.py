"""One verdict per leaderboard row: can its worst case be read as the model's robustness, and why.

* ``reliable``: gradient attacks work on the model (no sign of masking) and every attack of the row is valid;
* ``masked (worst case set by bpda, square, transfer check)``: gradients are blocked (declared, measured, or
  shown by something other than a gradient attack breaking points); the worst case comes from the
  attacks and checks named, so the plain gradient columns overstate robustness;
* ``randomized (PREDICT, 100 draws)`` / ``randomized (majority of 25 draws)``: predictions are random;
  each one counted is the model's own abstaining PREDICT or the majority over that many passes;
* ``incomplete (...)``: some attack of the row failed or was invalid.

Parts combine (``randomized (...); masked (...)``). The details say, flag by flag, what was measured and
whether its remedy ran ("masked-gradients: BPDA ran, see the bpda column") instead of advising it.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.store import Record
from bench.tracks.adversarial.evaluation import MASKING
from bench.tracks.adversarial.flags import FLAGS

MASKING_FLAGS = MASKING | {"gradient-masking", "differentiable-claim-false"}
REMEDIES = {  # flag -> (attack labels that are its remedy, remedy's name)
    "randomized": (("eot", "bpda+eot"), "EOT"),
    "randomness-undeclared": (("eot", "bpda+eot"), "EOT"),
    "masked-gradients": (("bpda", "bpda+eot"), "BPDA"),
    "differentiable-claim-false": (("bpda", "bpda+eot"), "BPDA"),
    "noise-beats-white-box": (("bpda", "bpda+eot"), "BPDA"),
    "transfer-beats-white-box": (("bpda", "bpda+eot"), "BPDA"),
    "black-box-beats-white-box": (("bpda", "bpda+eot"), "BPDA"),
}


def verdict(members: Sequence[Record], *, flags: Sequence[str], model_flags: Sequence[str]) -> tuple[str, list[str]]:
    """(verdict, details) of one row from its attack jobs, the row's flags and its model checks' flags."""
    valid = sorted((r for r in members if r.status == "ok"), key=lambda r: r.position)
    ran = {r.attack for r in valid}
    shown = set(flags) | set(model_flags)
    details: list[str] = []
    set_by: dict[str, int] = {}  # what broke points beyond the plain gradient attacks -> how many
    for record in valid:
        checks = record.metrics.get("broken_by_checks") or {}
        own = int(record.provenance.get("broken") or 0) - sum(checks.values())
        if own > 0 and (record.metrics.get("adaptive") or record.metrics.get("white_box") is False):
            set_by[record.attack] = set_by.get(record.attack, 0) + own
        for check, count in checks.items():
            set_by[f"{check} check"] = set_by.get(f"{check} check", 0) + count
            details.append(f"the {check} check after {record.attack} broke {count} point(s) every attack so far missed; they count as broken")
    for flag in sorted(shown):
        remedy = REMEDIES.get(flag)
        if remedy is None:
            details.append(f"{flag}: {FLAGS.get(flag, '')}")
            continue
        labels, name = remedy
        done = [label for label in labels if label in ran]
        details.append(f"{flag}: {name} ran, see the {done[0]} column" if done else f"{flag}: {name} did not run (adaptive = false); add attack '{labels[0]}'")
    parts = []
    if len(valid) < len(members):
        parts.append(f"incomplete ({len(members) - len(valid)} of {len(members)} attacks failed or invalid)")
    draws = max((int(r.metrics.get("draws") or 1) for r in members), default=1)
    if draws > 1:
        how = next((r.metrics.get("prediction") for r in members if r.metrics.get("prediction")), None)
        parts.append(f"randomized ({how}, {draws} draws)" if how else f"randomized (majority of {draws} draws)")
    if shown & MASKING_FLAGS:
        named = sorted(set_by, key=lambda what: -set_by[what])  # most points first
        parts.append(f"masked (worst case set by {', '.join(named)})" if set_by else "masked (no attack beyond the gradient ones broke more)")
    return "; ".join(parts) or "reliable", details
