"""The adversarial track: cascades of verified attacks, invalid jobs flagged, worst case per example, sanity flags."""

from __future__ import annotations

import torch

from bench import runner
from bench import spec as specs
from bench.runner import Context, execute
from bench.store import Outcome, Record, Store
from bench.tracks import TRACKS

TRACK = TRACKS.create("adversarial")


def small_spec(attacks, models=("small-cnn",), **extra):
    raw = {"models": [{"name": m} for m in models], "attacks": attacks, "n_examples": 40, "training": {"epochs": 3}, **extra}
    return specs.build(specs.merge(TRACK.default_spec(raw), raw, {}))


def run_spec(spec, out):
    runner.run(spec, out)
    with Store(out / "results.db", create=False) as store:
        return store.records(), store.outcomes()


def measured(records):
    return [r for r in records if r.attack != "sanity-checks"]


def test_plan_chains_attacks_per_norm_and_eps_after_one_sanity_job_per_norm():
    spec = small_spec([{"name": "fgsm", "eps": [0.1, 0.2]}, {"name": "pgd", "eps": 0.1, "steps": 3}, {"name": "pgd-l2", "eps": 1.0, "steps": 3}])
    jobs = TRACK.plan(spec)
    assert [(j.columns["attack"], j.columns["norm"], j.columns["eps"]) for j in jobs] == [
        ("sanity-checks", "linf", None),
        ("sanity-checks", "l2", None),
        ("fgsm", "linf", 0.1),
        ("fgsm", "linf", 0.2),
        ("pgd", "linf", 0.1),
        ("pgd-l2", "l2", 1.0),
    ]
    assert jobs[4].depends_on == (jobs[2].key,)  # pgd at 0.1 runs on what fgsm at 0.1 left
    assert jobs[3].depends_on == () and jobs[5].depends_on == ()
    assert len({j.key for j in jobs}) == len(jobs)
    assert [j.key for j in TRACK.plan(spec)] == [j.key for j in jobs]
    other_seed = small_spec([{"name": "fgsm", "eps": [0.1, 0.2]}, {"name": "pgd", "eps": 0.1, "steps": 3}, {"name": "pgd-l2", "eps": 1.0, "steps": 3}], seed=1)
    assert not {j.key for j in TRACK.plan(other_seed)} & {j.key for j in jobs}
    independent = small_spec([{"name": "fgsm", "eps": 0.1}, {"name": "pgd", "eps": 0.1}], cascade=False, checks=False)
    assert [j.depends_on for j in TRACK.plan(independent)] == [(), ()]


def test_an_attack_leaving_its_ball_is_invalid_never_robustness(tmp_path):
    records, outcomes = run_spec(small_spec([{"name": "tests.helpers:LeakyAttack", "eps": 0.1}, {"name": "fgsm", "eps": 0.1}], checks=False), tmp_path)
    leaky, honest = measured(records)
    assert leaky.status == "invalid" and leaky.robust_accuracy is None and "outside-threat-model" in leaky.flags
    assert leaky.key not in outcomes
    assert honest.status == "ok" and honest.robust_accuracy is not None  # the cascade went on from the clean points
    worst = next(c for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case")
    assert worst["robust_accuracy"] == honest.robust_accuracy and "worst-case-incomplete" in worst["flags"]


def test_attacks_that_touch_the_model_are_flagged_and_the_mode_restored():
    attacks = [{"name": "tests.helpers:ModeSwitchingAttack", "eps": 0.1}, {"name": "tests.helpers:WeightEditingAttack", "eps": 0.1}]
    spec = small_spec(attacks, checks=False, cascade=False)
    context = Context(spec, torch.device("cpu"))
    jobs = TRACK.plan(spec)
    switching, _ = execute(TRACK, jobs[0], context, torch.device("cpu"))
    assert "changed-model-mode" in switching.flags and switching.status == "ok"
    model = context.model(spec.models[0], spec.defenses[0])
    assert not any(m.training for m in model.modules())
    editing, _ = execute(TRACK, jobs[1], context, torch.device("cpu"))
    assert editing.status == "invalid" and "modified-model" in editing.flags


def test_worst_case_is_the_per_example_minimum_over_valid_attacks():
    def rec(key, attack, status="ok"):
        return Record(key=key, position=0, track="adversarial", model="m", defense="none", attack=attack, dataset="d", norm="linf", eps=0.1, n=4, status=status)

    records = [rec("a", "fgsm"), rec("b", "pgd"), rec("c", "leaky", status="invalid")]
    outcomes = {
        "a": [Outcome(0, True, True), Outcome(1, True, False), Outcome(2, True, True), Outcome(3, False, False)],
        "b": [Outcome(0, True, False), Outcome(1, True, True), Outcome(2, True, True), Outcome(3, False, False)],
    }
    worst = [c for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case"]
    assert len(worst) == 1
    assert worst[0]["robust_accuracy"] == 0.25  # only example 2 survives both
    assert worst[0]["flags"] == ["worst-case-incomplete"]  # the invalid attack is not counted as robustness
    assert worst[0]["params"]["attacks"] == ["fgsm", "pgd"]


def test_the_cascade_equals_every_attack_on_every_point_then_the_minimum(tmp_path):
    """Deterministic attacks (no random start), so each point's outcome depends on the point only."""
    attacks = [{"name": "fgsm", "eps": [0.05, 0.1]}, {"name": "pgd", "eps": [0.05, 0.1], "steps": 5, "random_start": False}, {"name": "fgm-l2", "eps": 0.5}]
    cascade_records, cascade_outcomes = run_spec(small_spec(attacks, checks=False), tmp_path / "cascade")
    full_records, full_outcomes = run_spec(small_spec(attacks, checks=False, cascade=False), tmp_path / "full")

    def worst(records, outcomes):
        return {(c["norm"], c["eps"]): c["robust_accuracy"] for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case"}

    assert worst(cascade_records, cascade_outcomes) == worst(full_records, full_outcomes)
    pgd = next(r for r in cascade_records if r.attack == "pgd" and r.eps == 0.1)
    fgsm = next(r for r in cascade_records if r.attack == "fgsm" and r.eps == 0.1)
    assert pgd.provenance["attacked"] < pgd.n  # it ran only on what FGSM left
    assert pgd.provenance["attacked"] == round(fgsm.robust_accuracy * fgsm.n)


def test_sanity_flags_are_stored_on_every_row_of_the_model(tmp_path):
    spec = small_spec([{"name": "pgd", "eps": 0.2, "steps": 10}], models=("tests.helpers:quantized_cnn",))
    records, outcomes = run_spec(spec, tmp_path)
    (row,) = measured(records)
    assert {"masked-gradients", "large-eps-not-zero"} <= set(row.flags)
    with Store(tmp_path / "results.db", create=False) as store:  # data in the store, not only a rendering
        assert {"masked-gradients"} <= set(next(r for r in store.records() if r.key == row.key).flags)
    worst = next(c for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case")
    assert "masked-gradients" in worst["flags"]


def test_robust_accuracy_rising_with_eps_is_flagged():
    def rec(key, eps):
        return Record(key=key, position=0, track="adversarial", model="m", defense="none", attack="pgd", dataset="d", norm="linf", eps=eps, n=4, status="ok")

    records = [rec("small", 0.1), rec("large", 0.2)]
    outcomes = {
        "small": [Outcome(i, True, i < 1) for i in range(4)],  # 25 %
        "large": [Outcome(i, True, i < 3) for i in range(4)],  # 75 % at a larger eps
    }
    assert TRACK.derive(records, outcomes) == {"large": ["not-monotone-in-eps"]}


def test_each_job_keeps_a_few_gallery_examples_successful_attacks_first():
    from bench.runner import execute_with_examples

    spec = small_spec([{"name": "pgd", "eps": 0.2, "steps": 5}, {"name": "tests.helpers:LeakyAttack", "eps": 0.1}], checks=False, cascade=False)
    context = Context(spec, torch.device("cpu"))
    (record, outcomes, examples), (_, _, leaky_examples) = [execute_with_examples(TRACK, job, context, torch.device("cpu")) for job in TRACK.plan(spec)]
    assert leaky_examples == ()  # an invalid job shows nothing
    assert len(examples) == 4 and [e.example for e in examples] == sorted(e.example for e in examples)
    x, y = context.eval_set()
    fooled = [o.example for o in outcomes if o.clean_correct and not o.robust]
    assert len(fooled) >= 4 and {e.example for e in examples} == set(fooled[:4])
    for e in examples:
        assert e.label == int(y[e.example]) and e.clean_prediction == e.label and e.adversarial_prediction != e.label
        assert torch.equal(torch.from_numpy(e.clean), x[e.example])
        assert abs(e.adversarial - e.clean).max() <= 0.2 + 1e-6 and e.adversarial.shape == (1, 8, 8)
