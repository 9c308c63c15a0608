"""The adversarial track: cascades of verified attacks, invalid jobs flagged, worst case per example, sanity flags."""

from __future__ import annotations

import torch

from bench import runner
from bench import spec as specs
from bench.store import Outcome, Record, Store
from bench.tracks import TRACKS, Dependency, Task
from bench.tracks.adversarial import defended, gallery
from bench.worker import Cache, eval_set, execute

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


def rec(key, *, status="ok", n=4, **labels):
    """A stored adversarial record with these labels (model m, no defense, dataset d, Linf eps 0.1 unless given)."""
    labels = {"model": "m", "defense": "none", "attack": "pgd", "dataset": "d", "norm": "linf", "eps": 0.1, **labels}
    return Record(key=key, track="adversarial", position=0, labels=labels, status=status, metrics={"n": n})


def outcome(example, clean_correct, robust):
    return Outcome(example, {"clean_correct": clean_correct, "robust": robust})


def run_jobs(spec, cache):
    """Every planned job, round after round of planning, in this process, each given its dependencies' results as the driver would."""
    done, finished = {}, {}
    while todo := [job for job in TRACK.plan(spec, finished) if job.key not in done]:
        for job in todo:
            deps = {k: Dependency(k, done[k].status, done[k].metrics, tuple(done[k].outcomes)) for k in job.depends_on}
            done[job.key] = result = execute(Task("adversarial", job, spec, deps), cache)
            finished[job.key] = Record(job.key, "adversarial", job.position, dict(job.labels), result.status, result.metrics, result.flags)
    return list(done.values())


def finished_as(jobs, **flags):
    """The jobs as finished records, with ``flags[attack]`` on each job of that attack."""
    return {j.key: Record(j.key, "adversarial", j.position, dict(j.labels), flags=list(flags.get(j.labels["attack"].replace("-", "_"), []))) for j in jobs}


def test_plan_chains_attacks_per_norm_and_eps_after_one_sanity_job_per_norm():
    spec = small_spec([{"name": "fgsm", "eps": [0.1, 0.2]}, {"name": "pgd", "eps": 0.1, "steps": 3}, {"name": "pgd-l2", "eps": 1.0, "steps": 3}])
    checks = TRACK.plan(spec, {})
    assert [j.labels["attack"] for j in checks] == ["sanity-checks", "sanity-checks"]  # the cascades wait for what the checks detect
    jobs = TRACK.plan(spec, finished_as(checks))
    assert [(j.labels["attack"], j.labels["norm"], j.labels["eps"]) for j in jobs] == [
        ("sanity-checks", "linf", None),
        ("sanity-checks", "l2", None),
        ("fgsm", "linf", 0.1),
        ("fgsm", "linf", 0.2),
        ("pgd", "linf", 0.1),
        ("pgd-l2", "l2", 1.0),
    ]
    source = jobs[0].key  # the block's first job measures the clean predictions every other job reads
    assert jobs[0].depends_on == () and all(j.depends_on[0] == source for j in jobs[1:])
    assert jobs[4].depends_on == (source, jobs[2].key)  # pgd at 0.1 runs on what fgsm at 0.1 left
    assert jobs[3].depends_on == (source,) and jobs[5].depends_on == (source,)
    assert len({j.key for j in jobs}) == len(jobs)
    assert [j.key for j in TRACK.plan(spec, finished_as(checks))] == [j.key for j in jobs]
    other_seed = small_spec([{"name": "fgsm", "eps": [0.1, 0.2]}, {"name": "pgd", "eps": 0.1, "steps": 3}, {"name": "pgd-l2", "eps": 1.0, "steps": 3}], seed=1)
    assert not {j.key for j in TRACK.plan(other_seed, {})} & {j.key for j in jobs}


def test_what_the_checks_detect_adds_the_adaptive_attack_as_a_declaration_does():
    spec = small_spec([{"name": "fgsm", "eps": [0.1, 0.2]}, {"name": "pgd", "eps": [0.1, 0.2], "steps": 3}, {"name": "square", "eps": [0.1, 0.2]}])
    checks = TRACK.plan(spec, {})
    randomized = TRACK.plan(spec, finished_as(checks, sanity_checks=["randomized"]))
    assert [j.labels["attack"] for j in randomized if j.labels["eps"] == 0.1] == ["fgsm", "pgd", "eot", "square"]  # up front, before the black box
    masked = TRACK.plan(spec, finished_as(checks, sanity_checks=["masked-gradients", "randomized"]))
    assert [j.labels["attack"] for j in masked if j.labels["eps"] == 0.2] == ["fgsm", "pgd", "bpda+eot", "square"]
    healthy = TRACK.plan(spec, finished_as(checks))
    assert [j.labels["attack"] for j in healthy if j.labels["eps"] == 0.1] == ["fgsm", "pgd", "square"]
    # a sign of masking only the cascade shows: BPDA next round, at the end of every chain of that norm, on what survived
    shown = TRACK.plan(spec, finished_as(healthy, square=["black-box-beats-white-box"]))
    added = [j for j in shown if j.key not in {h.key for h in healthy}]
    assert [(j.labels["attack"], j.labels["eps"]) for j in added] == [("bpda", 0.1), ("bpda", 0.2)]
    assert added[0].depends_on[-1] == next(j.key for j in healthy if j.labels["attack"] == "square" and j.labels["eps"] == 0.1)
    off = small_spec([{"name": "pgd", "eps": 0.1, "steps": 3}], adaptive=False)
    assert [j.labels["attack"] for j in TRACK.plan(off, finished_as(TRACK.plan(off, {}), sanity_checks=["randomized"]))] == ["sanity-checks", "pgd"]
    independent = small_spec([{"name": "fgsm", "eps": 0.1}, {"name": "pgd", "eps": 0.1}], cascade=False, checks=False)
    first, second = TRACK.plan(independent, {})
    assert first.depends_on == () and second.depends_on == (first.key,) and second.payload["before"] == []  # clean predictions only


def test_an_attack_leaving_its_ball_is_invalid_never_robustness(tmp_path):
    records, outcomes = run_spec(small_spec([{"name": "tests.helpers:LeakyAttack", "eps": 0.1}, {"name": "fgsm", "eps": 0.1}], checks=False), tmp_path)
    leaky, honest = measured(records)
    assert leaky.status == "invalid" and leaky.robust_accuracy is None and "outside-threat-model" in leaky.flags
    assert all("robust" not in o.values for o in outcomes[leaky.key])  # its clean predictions only, never robustness
    assert honest.status == "ok" and honest.robust_accuracy is not None  # the cascade went on from the clean points
    worst = next(c for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case")
    assert worst["robust_accuracy"] == honest.robust_accuracy and "worst-case-incomplete" in worst["flags"]


def test_attacks_that_touch_the_model_are_flagged_and_the_mode_restored():
    attacks = [{"name": "tests.helpers:ModeSwitchingAttack", "eps": 0.1}, {"name": "tests.helpers:WeightEditingAttack", "eps": 0.1}]
    spec = small_spec(attacks, checks=False, cascade=False)
    cache = Cache()
    switching, editing = run_jobs(spec, cache)
    assert "changed-model-mode" in switching.flags and switching.status == "ok"
    model, _ = defended.defended(spec, spec.models[0], spec.defenses[0], cache)
    assert not any(m.training for m in model.modules())
    assert editing.status == "invalid" and "modified-model" in editing.flags


def test_worst_case_is_the_per_example_minimum_over_valid_attacks():
    records = [rec("a", attack="fgsm"), rec("b", attack="pgd"), rec("c", attack="leaky", status="invalid")]
    outcomes = {
        "a": [outcome(0, True, True), outcome(1, True, False), outcome(2, True, True), outcome(3, False, False)],
        "b": [outcome(0, True, False), outcome(1, True, True), outcome(2, True, True), outcome(3, False, False)],
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


def test_model_checks_stay_where_measured_and_the_verdict_names_what_ran(tmp_path):
    spec = small_spec([{"name": "pgd", "eps": [0.1, 0.2], "steps": 10}], models=("tests.helpers:quantized_cnn",))
    records, outcomes = run_spec(spec, tmp_path)
    (checks,) = [r for r in records if r.attack == "sanity-checks"]
    assert {"masked-gradients", "large-eps-not-zero"} <= set(checks.flags)
    assert [r.attack for r in measured(records) if r.eps == 0.1] == ["pgd", "bpda"]  # masked gradients detected: BPDA added
    assert not any("large-eps-not-zero" in r.flags for r in measured(records))  # once per model, not on every row
    cells = TRACK.cells(records, outcomes)
    worst = [c for c in cells if c["attack"] == "worst-case"]
    assert len(worst) == 2 and all({"masked-gradients", "large-eps-not-zero"} <= set(c["model_flags"]) for c in worst)
    for cell in worst:
        assert cell["verdict"].startswith("masked (")  # whether BPDA broke more than PGD here depends on the attacks' seeds
        assert "masked-gradients: BPDA ran, see the bpda column" in cell["verdict_details"]
        assert not any("use BPDA" in d or "add attack" in d for d in cell["verdict_details"])


def test_robust_accuracy_rising_with_eps_is_flagged():
    records = [rec("small", eps=0.1), rec("large", eps=0.2)]
    outcomes = {
        "small": [outcome(i, True, i < 1) for i in range(4)],  # 25 %
        "large": [outcome(i, True, i < 3) for i in range(4)],  # 75 % at a larger eps
    }
    assert TRACK.derive(records, outcomes) == {"large": ["not-monotone-in-eps"]}


def test_each_job_keeps_a_few_gallery_examples_successful_attacks_first():
    spec = small_spec([{"name": "pgd", "eps": 0.2, "steps": 5}, {"name": "tests.helpers:LeakyAttack", "eps": 0.1}], checks=False, cascade=False)
    cache = Cache()
    result, leaky = run_jobs(spec, cache)
    assert gallery.ARTIFACT not in leaky.artifacts  # an invalid job shows nothing
    examples = gallery.decode(result.artifacts[gallery.ARTIFACT])
    assert len(examples) == 4 and [e.example for e in examples] == sorted(e.example for e in examples)
    x, y = eval_set(spec, cache)
    fooled = [i for i, o in enumerate(result.outcomes) if o["clean_correct"] and not o["robust"]]
    assert len(fooled) >= 4 and {e.example for e in examples} == set(fooled[:4])
    for e in examples:
        assert e.label == int(y[e.example]) and e.clean_prediction == e.label and e.adversarial_prediction != e.label
        assert torch.equal(torch.from_numpy(e.clean), x[e.example])
        assert abs(e.adversarial - e.clean).max() <= 0.2 + 1e-6 and e.adversarial.shape == (1, 8, 8)


def test_evaluate_is_the_evaluation_bench_run_does(tmp_path):
    """A JPEG-wrapped model: bench.evaluate adds BPDA by itself, in the same place, and reports the worst case bench run does."""
    import bench
    from bench.stats import mcnemar
    from bench.tracks.adversarial.evaluation import DEFAULT_CASCADE
    from bench.tracks.adversarial.ranking import worst_case_vector

    spec = small_spec([{"name": name, **params, "eps": 0.1} for name, params in DEFAULT_CASCADE], defenses=[{"name": "jpeg"}], n_examples=100)
    records, outcomes = run_spec(spec, tmp_path)
    (worst,) = [c for c in TRACK.cells(records, outcomes) if c["attack"] == "worst-case"]
    cache = Cache()
    model, _ = defended.defended(spec, spec.models[0], spec.defenses[0], cache)
    x, y = eval_set(spec, cache)
    result = bench.evaluate(model, x, y, eps=0.1, surrogate=defended.undefended(spec, spec.models[0], cache))
    assert result.added == ("bpda",)
    assert list(result.per_attack) == worst["params"]["attacks"] == ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "bpda", "square"]
    # the same chain on the same points; only the attacks' random draws differ (a few points of 100, never a significant change)
    assert abs(result.robust_accuracy - worst["robust_accuracy"]) <= 0.03 + 1e-6
    ours = worst_case_vector([r for r in records if r.attack != "sanity-checks"], outcomes)
    assert not mcnemar([ours[i] for i in sorted(ours)], result.robust.tolist()).significant()
