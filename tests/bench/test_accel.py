"""The GPU path's logic, proven on the CPU: batch back-off on out-of-memory, bf16 that does not weaken an attack,
host syncs only at checks, channels_last, the spec's options, and one GPU per worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from attacks import ATTACKS
from attacks.base import misclassified
from bench import accel
from bench.cli import main
from bench.errors import UserError
from bench.spec import build, merge
from bench.store import Store
from bench.tracks import TRACKS
from bench.tracks.adversarial.evaluation import attack_step, evaluate


class OutOfMemoryAbove(nn.Module):
    """A model that raises CUDA's out-of-memory error for batches larger than ``limit`` (as a GPU would), counting them."""

    def __init__(self, net: nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.raised = net, limit, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} images")
        return self.net(x)


def test_batch_sizes_halve_on_out_of_memory_and_remember_it():
    sizes, seen = accel.BatchSizes(), []

    def fn(index: torch.Tensor) -> torch.Tensor:
        seen.append(len(index))
        if len(index) > 12:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return index * 2

    out = sizes.map("key", torch.arange(50), 64, fn)
    assert torch.equal(torch.cat(out), torch.arange(50) * 2)  # every item once, in order
    assert seen[:3] == [50, 32, 16] and set(seen[3:]) <= {8, 2}
    assert sizes.size("key", 64) == 8 and sizes.halvings == {"key": 3}
    seen.clear()
    sizes.map("key", torch.arange(20), 64, fn)
    assert max(seen) == 8  # remembered: no second out-of-memory for that key
    sizes.map("other", torch.arange(10), 64, fn)
    assert seen[-1] == 10  # per key


def test_other_errors_and_a_batch_of_one_are_not_retried():
    sizes = accel.BatchSizes()
    with pytest.raises(ValueError):
        sizes.map("k", torch.arange(8), 4, lambda index: (_ for _ in ()).throw(ValueError("a bug, not memory")))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sizes.map("k", torch.arange(8), 4, lambda index: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("CUDA out of memory")))
    assert accel.out_of_memory(RuntimeError("CUDA error: out of memory")) and not accel.out_of_memory(RuntimeError("shape mismatch"))


def test_an_attack_step_that_runs_out_of_memory_finishes_at_a_smaller_batch_with_the_same_numbers(trained_cnn, digits):
    x, y = digits.x_test[:80], digits.y_test[:80]
    robust = torch.ones(len(y), dtype=torch.bool)
    attack = ATTACKS.create("pgd", eps=0.1, steps=5)
    torch.manual_seed(0)
    plain = attack_step(trained_cnn, x, y, attack, robust=robust, batch_size=16, checks=False)
    limited = OutOfMemoryAbove(trained_cnn, limit=16)
    sizes = accel.BatchSizes()
    torch.manual_seed(0)
    with accel.policy(sizes=sizes, key="small-cnn"):
        step = attack_step(limited, x, y, attack, robust=robust, batch_size=64, checks=False)
    assert step.status == "ok" and torch.equal(step.robust, plain.robust) and torch.equal(step.x_adv, plain.x_adv)
    assert sizes.size(("small-cnn", attack.describe()), 64) == 16
    raised = limited.raised
    with accel.policy(sizes=sizes, key="small-cnn"):
        attack_step(limited, x, y, attack, robust=robust, batch_size=64, checks=False)
    assert limited.raised == raised  # the size that fits is remembered for the run


def test_a_run_whose_model_runs_out_of_memory_completes_and_says_at_which_batch(tmp_path: Path, capsys):
    (tmp_path / "limited.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))\n\n"
        "    def forward(self, x):\n"
        "        if x.requires_grad and len(x) > 8:  # backward passes need the memory\n"
        "            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "        return self.body(x)\n\n\n"
        "def make(num_classes=10):\n    return Net()\n"
    )
    (tmp_path / "spec.toml").write_text(
        'n_examples = 40\nbatch_size = 32\n[training]\nepochs = 2\n[[models]]\nname = "limited.py:make"\n[[attacks]]\nname = "pgd"\nsteps = 3\neps = [0.1]\n'
    )
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--out", str(out), "-q"]) == 0
    records = [r for r in Store(out / "results.db").records() if r.labels["attack"] == "pgd"]
    assert len(records) == 1 and records[0].status == "ok", records[0].error
    assert records[0].provenance["batch_size"]["PGD"] == 8  # the size that fit, stored with the job
    capsys.readouterr()


def test_bf16_does_not_weaken_pgd(trained_cnn, digits):
    """Gradients in bf16, decisions beyond bf16's rounding, verification in float32: robust accuracy within half a
    point of float32's on the same 1,797 points (the digits' training and test images)."""
    x, y = torch.cat([digits.x_train, digits.x_test]), torch.cat([digits.y_train, digits.y_test])
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        accuracy = {}
        for precision in ("float32", "bf16"):
            torch.manual_seed(0)
            with accel.autocast(precision, "cpu"):
                x_adv = ATTACKS.create("pgd", eps=eps, norm=norm, steps=20).run(trained_cnn, x, y).x_adv
            assert x_adv.dtype == torch.float32
            with torch.no_grad():
                accuracy[precision] = (trained_cnn(x_adv).argmax(dim=1) == y).float().mean().item()
        assert 0.05 < accuracy["float32"] < 0.95  # the attack neither fails nor wins everywhere: the comparison means something
        assert accuracy["bf16"] <= accuracy["float32"] + 0.005, (norm, accuracy)


def test_a_bf16_rounding_tie_is_not_a_fooled_example():
    logits = torch.tensor([[2.0, 2.0, 0.0], [2.0, 3.0, 0.0]])
    y = torch.tensor([1, 0])
    assert misclassified(logits, y).tolist() == [True, True]  # float32: the argmax decides, as a prediction does
    assert misclassified(logits.bfloat16(), y).tolist() == [False, True]  # bf16: a tie is no evidence


def test_evaluate_in_bf16_verifies_in_float32(trained_cnn, digits):
    x, y = digits.x_test[:100], digits.y_test[:100]
    f32 = evaluate(trained_cnn, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 10})], checks=False)
    bf16 = evaluate(trained_cnn, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 10})], checks=False, precision="bf16")
    assert bf16.clean_accuracy == f32.clean_accuracy  # predictions are float32's
    assert abs(bf16.robust_accuracy - f32.robust_accuracy) <= 0.02


class Syncs(TorchFunctionMode):
    """Counts the calls that make the host wait for the device on CUDA (reading a value, a data-dependent shape)."""

    WAITS = frozenset({"__bool__", "item", "tolist", "nonzero", "cpu", "numpy", "__int__", "__float__", "masked_select", "unique"})

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.WAITS:
            self.calls.append(name)
        elif name in ("__getitem__", "__setitem__"):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.calls.append(f"{name}[mask]")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("check_every,most", [(5, 3), (1, 19)])
def test_pgd_waits_for_the_device_only_at_its_checks(trained_cnn, digits, check_every, most):
    x, y = digits.x_test[:64], digits.y_test[:64]
    attack = ATTACKS.create("pgd", eps=0.05, steps=20, check_every=check_every)
    with Syncs() as syncs:
        attack.run(trained_cnn, x, y)
    checks = [call for call in syncs.calls if call == "nonzero"]
    assert len(checks) <= most, syncs.calls  # one nonzero per check
    assert len(syncs.calls) - len(checks) <= 2, syncs.calls  # besides, only the input check (x in [0, 1]); nothing per step


def test_pgd_numbers_do_not_depend_on_how_often_it_checks(trained_cnn, digits):
    x, y = digits.x_test[:120], digits.y_test[:120]
    results = []
    for every in (1, 5, 100):
        torch.manual_seed(3)
        results.append(ATTACKS.create("pgd", eps=0.1, steps=15, check_every=every).run(trained_cnn, x, y))
    for other in results[1:]:
        assert torch.equal(other.x_adv, results[0].x_adv) and torch.equal(other.found, results[0].found)
        assert torch.equal(other.loss_end, results[0].loss_end)


def test_eot_steps_without_waiting_for_the_device(trained_cnn, digits):
    x, y = digits.x_test[:16], digits.y_test[:16]
    with Syncs() as syncs:
        ATTACKS.create("eot", eps=0.1, steps=5, samples=2, distribution="none").perturb(trained_cnn, x, y)
    assert syncs.calls == []


def test_channels_last_only_where_asked_or_for_convolutions_on_cuda(trained_cnn, digits):
    assert not accel.wants_channels_last(trained_cnn, "cpu") and accel.wants_channels_last(trained_cnn, "cuda")
    assert not accel.wants_channels_last(nn.Linear(3, 3), "cuda")
    assert not accel.wants_channels_last(trained_cnn, "cuda", "contiguous")
    import copy

    model = accel.memory_format(copy.deepcopy(trained_cnn), "cpu", "channels_last")
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(model(digits.x_test[:32]), trained_cnn(digits.x_test[:32]), atol=1e-5)


def spec(**user):
    return build(merge(TRACKS.create("adversarial").default_spec(user), user, {}))


def test_spec_precision_and_memory_format():
    assert spec().precision == "float32" and spec().memory_format == "auto"
    assert "precision" not in json.loads(spec().canonical())  # float32 specs keep their job keys
    assert json.loads(spec(precision="bf16").canonical())["precision"] == "bf16"
    assert spec(memory_format="channels_last").canonical() == spec().canonical()  # moves numbers, never changes them
    for raw, message in (({"precision": "fp16"}, "spec.precision: must be one of 'float32', 'bf16'"), ({"memory_format": "nhwc"}, "spec.memory_format")):
        with pytest.raises(UserError, match=message):
            spec(**raw)


def test_bf16_training_is_another_recipe(digits):
    from bench.spec import ModelSpec, TrainingSpec
    from bench.training import recipe

    spec, training = ModelSpec("small-cnn"), TrainingSpec(epochs=1)
    assert "precision" not in recipe(spec, "d", training, 0)
    assert recipe(spec, "d", training, 0, precision="bf16")["precision"] == "bf16"


def test_bench_run_precision_flag(tmp_path: Path, capsys):
    (tmp_path / "spec.toml").write_text(
        'n_examples = 30\n[training]\nepochs = 1\n[[models]]\nname = "mlp"\n[[attacks]]\nname = "pgd"\nsteps = 3\neps = [0.1]\n'
    )
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "bf16"), "--precision", "bf16", "-q"]) == 0
    store = Store(tmp_path / "bf16" / "results.db")
    assert json.loads(store.get_meta("spec"))["precision"] == "bf16"
    assert all(r.status == "ok" for r in store.records())
    assert main(["run", "--precision", "fp16", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice" in capsys.readouterr().err
