"""On CUDA: the numbers equal the CPU's (no significant paired difference), bf16 does not weaken an attack, a real
out-of-memory error backs off, and an attack copies nothing from the host per step.

Every test here needs CUDA (marked ``gpu``; skipped without it); ``make gpu-check`` runs them on a GPU
machine. Their CPU counterparts (the same logic, simulated) are in ``test_accel.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attacks import ATTACKS
from bench import accel
from bench.stats import mcnemar
from bench.tracks.adversarial.evaluation import attack_step, evaluate

pytestmark = pytest.mark.gpu  # skipped without CUDA (tests/conftest.py)
ALPHA = 0.01  # one paired test: a false alarm in 1 of 100 checks of an equivalent device


@pytest.fixture
def on_cuda(trained_cnn):
    return copy.deepcopy(trained_cnn).cuda().eval()


def digits_points(digits, device="cuda", n=None):
    x, y = torch.cat([digits.x_train, digits.x_test]), torch.cat([digits.y_train, digits.y_test])
    return x[:n].to(device), y[:n].to(device)


def test_cuda_equals_cpu_on_the_same_points(trained_cnn, on_cuda, digits):
    """The default cascade (fgsm, pgd, apgd-ce, apgd-dlr, square) with its checks, on CPU and on CUDA: the same model on
    the same points, so per example (exact McNemar). Not within the gate's 0.02: float differences change the attacks'
    trajectories as another random start does, and that alone moves a 200-point cell by up to 0.04 on the CPU."""
    x, y = digits.x_test[:200], digits.y_test[:200]
    cpu = evaluate(trained_cnn, x, y, eps=0.1)
    cuda = evaluate(on_cuda, x.cuda(), y.cuda(), eps=0.1)
    assert cuda.robust.device.type == "cuda"
    assert cuda.clean_accuracy == pytest.approx(cpu.clean_accuracy, abs=1 / len(y))
    paired = mcnemar(cpu.robust.tolist(), cuda.robust.cpu().tolist())
    assert paired.p_value >= ALPHA, (paired, cpu.per_attack, cuda.per_attack)


def test_bf16_on_cuda_does_not_weaken_pgd(on_cuda, digits):
    x, y = digits_points(digits)
    accuracy = {}
    for precision in ("float32", "bf16"):
        torch.manual_seed(0)
        with accel.autocast(precision, "cuda"):
            x_adv = ATTACKS.create("pgd", eps=0.1, steps=20).run(on_cuda, x, y).x_adv
        with torch.no_grad():
            accuracy[precision] = (on_cuda(x_adv).argmax(dim=1) == y).float().mean().item()
    assert accuracy["bf16"] <= accuracy["float32"] + 0.005, accuracy


class Greedy(nn.Module):
    """Asks CUDA for a tenth of the free memory per example in every backward-carrying pass: a big batch really runs out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        free, _ = torch.cuda.mem_get_info()
        self.per_example = free // 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            hog = torch.empty(len(x) * self.per_example, dtype=torch.uint8, device=x.device)  # uninitialized: no time spent
            del hog
        return self.net(x)


def test_a_real_out_of_memory_error_backs_off(on_cuda, digits):
    x, y = digits_points(digits, n=64)
    sizes = accel.BatchSizes()
    with accel.policy(sizes=sizes, key="greedy"):
        attack, robust = ATTACKS.create("pgd", eps=0.1, steps=3), torch.ones(64, dtype=torch.bool, device="cuda")
        step = attack_step(Greedy(on_cuda), x, y, attack, robust=robust, batch_size=64, checks=False)
    torch.cuda.empty_cache()
    assert step.status == "ok"
    assert sizes.size(("greedy", "PGD"), 64) <= 8 and sizes.halvings


def host_to_device_copies(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(event.count for event in prof.key_averages() if "HtoD" in event.key)


def test_an_attack_copies_nothing_from_the_host_per_step(on_cuda, digits):
    """The data stay on the device: host-to-device copies do not grow with the number of steps."""
    x, y = digits_points(digits, n=512)
    robust = torch.ones(len(y), dtype=torch.bool, device="cuda")

    def run(steps: int) -> int:
        attack = ATTACKS.create("pgd", eps=0.1, steps=steps)
        return host_to_device_copies(lambda: attack_step(on_cuda, x, y, attack, robust=robust, batch_size=128, checks=False))

    run(2)  # warm-up: lazy initialization copies once
    assert run(40) <= run(10), "host-to-device copies grow with the steps"


def test_the_adversarial_track_runs_on_cuda(tmp_path):
    from bench.cli import main
    from bench.store import Store

    (tmp_path / "spec.toml").write_text(
        'n_examples = 100\nprecision = "bf16"\n[training]\nepochs = 2\n[[models]]\nname = "small-cnn"\n[[defenses]]\nname = "none"\n'
        '[[defenses]]\nname = "jpeg"\n[[attacks]]\nname = "pgd"\nsteps = 5\neps = [0.1]\n'
    )
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--device", "cuda", "--out", str(tmp_path / "run"), "-q"]) == 0
    records = Store(tmp_path / "run" / "results.db").records()
    assert records and all(r.status == "ok" for r in records), [(r.labels, r.error) for r in records if r.status != "ok"]
    assert all(r.provenance["device"].startswith("cuda") for r in records)
